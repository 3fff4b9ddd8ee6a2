"""VPQ (VIPSeg's rules) and STQ (deeplab2's): hand-computed cases, a track switch, files, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamseg.cli import main
from streamseg.errors import UserError
from streamseg.eval.video import (
    SegmentationTrackingQuality,
    VideoEvaluation,
    VideoPanopticQuality,
    evaluate_vipseg,
)
from streamseg.panoptic_png import id_to_rgb

CATEGORIES = {
    1: {"id": 1, "name": "dog", "isthing": 1},
    2: {"id": 2, "name": "grass", "isthing": 0},
}


# ---------------------------------------------------------------- STQ (deeplab2 semantics)


def stq_of(gt_rows, pred_rows, things=(0,), classes=2):
    """One frame of 1 x N labels, encoded (semantic << 16) + instance."""
    metric = SegmentationTrackingQuality(classes, list(things), 255, 16, 2**24)
    metric.update(np.array([gt_rows]), np.array([pred_rows]), sequence_id=1)
    result = metric.result()
    return result["stq"], result["aq"], result["iou"]


SKY = 1 << 16  # class 1 ("sky", stuff), instance 0


@pytest.mark.parametrize(
    "gt, pred, expected",
    [
        # a single car track (class 0, instance 1) of 5 pixels
        ([1, 1, 1, 1, 1], [1, 1, 1, 1, 1], (1.0, 1.0, 1.0)),
        # split 2 + 3: AQ = (2 * 2/5 + 3 * 3/5) / 5 = 0.52
        ([1, 1, 1, 1, 1], [1, 1, 2, 2, 2], (math.sqrt(0.52), 0.52, 1.0)),
        ([1, 1, 1, 1, 1], [1, 2, 2, 2, 2], (math.sqrt(0.68), 0.68, 1.0)),
        ([1, 1, 1, 1, 1], [1, 2, 3, 4, 5], (math.sqrt(0.2), 0.2, 1.0)),
        # the first pixel predicted as sky: AQ 4 * 4/5 / 5 = 0.64; IoU car 4/5, sky 0 -> 0.4
        ([1, 1, 1, 1, 1], [SKY, 1, 1, 1, 1], (math.sqrt(0.64 * 0.4), 0.64, 0.4)),
        # crowd (instance 0) pixels neither count for nor against association
        ([0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], (1.0, 1.0, 1.0)),
        ([0, 1, 1, 1, 1, 1], [2, 2, 2, 2, 1, 1], (math.sqrt(0.52), 0.52, 1.0)),
        # ground-truth sky predicted as car: AQ 4 * 4/5 / 4 = 0.8; IoU car 4/5, sky 0
        ([SKY, 1, 1, 1, 1], [1, 1, 1, 1, 1], (math.sqrt(0.8 * 0.4), 0.8, 0.4)),
    ],
)
def test_stq_basic_cases(gt, pred, expected):
    # the same cases and numbers as deeplab2's numpy STQ unit test
    assert stq_of(gt, pred) == pytest.approx(expected)


def test_stq_ignore_and_void_predictions():
    # ground truth ignore (255) pixels are not scored at all
    ignore = 255 << 16
    assert stq_of([ignore, 1, 1, 1, 1], [SKY, 1, 1, 1, 1]) == pytest.approx((1.0, 1.0, 1.0))
    # predicting "ignore" on a labelled pixel: a class of its own with IoU 0 (deeplab2's rule)
    stq, aq, iou = stq_of([1, 1, 1, 1], [ignore, 1, 1, 1])
    assert iou == pytest.approx((3 / 4 + 0) / 2)
    assert aq == pytest.approx(3 * 3 / 4 / 4)


# ---------------------------------------------------------------- a 4-frame video

# 4 x 4 frames: a dog (gt id 1) on the left half, grass (gt id 2) on the right half
GT_IDS = np.array([[1, 1, 2, 2]] * 4, dtype=np.uint32)
GT_SEGMENTS = {
    1: {"category_id": 1, "iscrowd": 0, "area": 8},
    2: {"category_id": 2, "iscrowd": 0, "area": 8},
}


def run_video(pred_frames, windows=(1, 2, 4)):
    evaluation = VideoEvaluation(CATEGORIES, windows)
    evaluation.start_video("v")
    for pred_ids, pred_segments in pred_frames:
        evaluation.update(GT_IDS, GT_SEGMENTS, pred_ids, pred_segments)
    return evaluation.result()


def frame(dog_id):
    ids = np.where(GT_IDS == 1, dog_id, 20).astype(np.uint32)
    return ids, {dog_id: {"category_id": 1}, 20: {"category_id": 2}}


def test_perfect_video_is_one():
    result = run_video([frame(10)] * 4)
    for window in ("1", "2", "4", "mean"):
        for group in ("All", "Things", "Stuff"):
            assert result["vpq"][window][group]["pq"] == 1.0
    assert result["stq"]["stq"] == 1.0 and result["stq"]["aq"] == 1.0
    assert result["stq"]["sq"] == 1.0


def test_track_switch_penalised_by_vpq_and_aq_not_by_pq():
    # the dog's predicted id switches from 10 to 11 after frame 1
    result = run_video([frame(10), frame(10), frame(11), frame(11)])
    vpq = result["vpq"]
    assert vpq["1"]["All"]["pq"] == 1.0  # per-frame PQ does not see the switch
    # 2-frame windows: (0,1) and (2,3) match; (1,2) has tube IoU 8/16 = 0.5 -> 1 FN + 2 FP
    assert vpq["2"]["Things"]["pq"] == pytest.approx(2.0 / (2 + 0.5 * 2 + 0.5 * 1))
    assert vpq["2"]["Stuff"]["pq"] == 1.0
    # the 4-frame window: no match at all
    assert vpq["4"]["Things"]["pq"] == 0.0
    things_mean = (1.0 + 2.0 / 3.5 + 0.0) / 3
    assert vpq["mean"]["Things"]["pq"] == pytest.approx(things_mean)
    # STQ: the gt tube (32 px) splits 16 + 16: AQ = (16 * 0.5 + 16 * 0.5) / 32 = 0.5
    assert result["stq"]["aq"] == pytest.approx(0.5)
    assert result["stq"]["sq"] == 1.0
    assert result["stq"]["stq"] == pytest.approx(math.sqrt(0.5))


def test_tube_takes_the_class_of_its_first_frame():
    # the prediction calls the dog "grass" in frame 0 only (stuff id 30 for that frame)
    wrong = np.where(GT_IDS == 1, 10, 20).astype(np.uint32)
    frames = [
        (wrong, {10: {"category_id": 2}, 20: {"category_id": 2}}),
        frame(10),
    ]
    evaluation = VideoPanopticQuality(CATEGORIES, windows=(2,))
    for pred_ids, pred_segments in frames:
        evaluation.update(GT_IDS, GT_SEGMENTS, pred_ids, pred_segments)
    result = evaluation.result()["2"]
    # the tube of id 10 is "grass" (frame 0 decides): the dog is a FN, tube 10 a grass FP
    assert result["per_class"]["1"]["rq"] == 0.0
    assert result["per_class"]["2"]["rq"] == pytest.approx(1 / 1.5)


def test_empty_prediction_and_void():
    empty = (np.zeros_like(GT_IDS), {})
    result = run_video([empty] * 2, windows=(1, 2))
    assert result["vpq"]["2"]["All"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 2}
    assert result["stq"]["aq"] == 0.0 and result["stq"]["stq"] == 0.0
    # a short video adds nothing at longer windows
    assert result["vpq"]["2"]["All"]["n"] == 2
    short = run_video([frame(10)], windows=(1, 4))
    assert short["vpq"]["4"]["All"]["n"] == 0 and short["vpq"]["1"]["All"]["pq"] == 1.0


def test_windows_do_not_span_videos():
    evaluation = VideoPanopticQuality(CATEGORIES, windows=(2,))
    for dog_id in (10, 11):  # two one-... two-frame videos with different ids
        evaluation.start_video()
        for _ in range(2):
            ids, segments = frame(dog_id)
            evaluation.update(GT_IDS, GT_SEGMENTS, ids, segments)
    assert evaluation.result()["2"]["All"]["pq"] == 1.0


# ---------------------------------------------------------------- files and CLI


def write_vipseg(folder: Path, name: str, videos: dict[str, list], layout: str = "streamseg"):
    entries, top = [], []
    for video_id, frames in videos.items():
        (folder / name / video_id).mkdir(parents=True, exist_ok=True)
        annotations = []
        for index, (ids, segments) in enumerate(frames):
            file_name = f"{index:04d}.png"
            Image.fromarray(id_to_rgb(ids)).save(folder / name / video_id / file_name)
            info = [{"id": k, **v} for k, v in segments.items()]
            annotations.append({"image_id": f"{video_id}_{index}", "file_name": file_name,
                                "segments_info": info})  # fmt: skip
        if layout == "streamseg":
            entries.append({"video_id": video_id, "annotations": annotations})
        else:  # the official VIPSeg layout
            images = [{"id": a["image_id"], "file_name": a["file_name"]} for a in annotations]
            entries.append({"video_id": video_id, "images": images})
            top.append({"video_id": video_id, "annotations": annotations})
    data = {"videos": entries, "categories": list(CATEGORIES.values())}
    if top:
        data["annotations"] = top
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def dataset(tmp_path):
    gt = [(GT_IDS, GT_SEGMENTS)] * 4
    pred = [frame(10), frame(10), frame(11), frame(11)]
    gt_json = write_vipseg(tmp_path, "gt", {"a": gt, "b": gt[:2]}, layout="official")
    pred_json = write_vipseg(tmp_path, "pred", {"a": pred, "b": pred[:2]})
    return tmp_path, gt_json, pred_json


def test_vipseg_files_and_cli(dataset, capsys):
    folder, gt_json, pred_json = dataset
    result = evaluate_vipseg(gt_json, folder / "gt", pred_json, folder / "pred", (1, 2))
    # video a: 3 windows of 2 (one switch); video b: 1 window, perfect
    assert result["vpq"]["2"]["Things"]["pq"] == pytest.approx(3.0 / (3 + 1 + 0.5))
    assert set(result["stq"]["per_video"]) == {"a", "b"}
    code = main(
        ["eval", "video", "--gt-json", str(gt_json), "--gt-dir", str(folder / "gt"),
         "--pred-json", str(pred_json), "--pred-dir", str(folder / "pred"), "--json"]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"vpq", "stq"}
    assert set(out["vpq"]) == {"1", "2", "4", "6", "8", "mean"}
    assert set(out["vpq"]["2"]) >= {"All", "Things", "Stuff"}
    assert set(out["vpq"]["mean"]["All"]) == {"pq", "sq", "rq"}
    assert {"stq", "aq", "sq"} <= set(out["stq"])
    # AQ over both videos: video a 0.5 x 1 tube, video b 1.0 x 1 tube
    assert out["stq"]["aq"] == pytest.approx(0.75)
    main(
        ["eval", "video", "--gt-json", str(gt_json), "--gt-dir", str(folder / "gt"),
         "--pred-json", str(pred_json), "--pred-dir", str(folder / "pred"), "--windows", "1,2"]
    )  # fmt: skip
    assert "VPQ window 2 frames" in capsys.readouterr().out


def test_vipseg_errors(dataset, capsys):
    folder, gt_json, pred_json = dataset
    data = json.loads(pred_json.read_text())
    data["videos"][0]["annotations"][1]["image_id"] = "zzz"
    bad = folder / "bad_ids.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"bad_ids\.json: video 'a' frame 1 has image id 'zzz'"):
        evaluate_vipseg(gt_json, folder / "gt", bad, folder / "pred")
    (folder / "pred" / "b" / "0001.png").unlink()
    with pytest.raises(UserError, match=r"pred/b/0001\.png: no such file"):
        evaluate_vipseg(gt_json, folder / "gt", pred_json, folder / "pred")
    code = main(
        ["eval", "video", "--gt-json", str(gt_json), "--gt-dir", str(folder / "gt"),
         "--pred-json", str(pred_json), "--pred-dir", str(folder / "pred"), "--windows", "0"]
    )  # fmt: skip
    assert code == 2 and "--windows" in capsys.readouterr().err


def test_vpq_window_equals_pq_of_concatenated_frames():
    """A k-frame tube is a segment of the k frames laid side by side (first appearance gives
    the category, areas add up): VPQ at k = PQ over those concatenated images."""
    from streamseg.eval.panoptic import PanopticQuality

    rng = np.random.default_rng(7)
    categories = {c: {"id": c, "isthing": int(c < 4)} for c in range(1, 7)}
    for _ in range(5):
        frames = []
        for _ in range(5):
            gt = rng.integers(0, 6, (6, 7))
            pred = gt.copy()
            noise = rng.random(gt.shape) < 0.3
            pred[noise] = rng.integers(0, 6, int(noise.sum()))
            gt_segments = {
                int(i): {"category_id": int(rng.integers(1, 7)), "iscrowd": int(rng.random() < 0.1),
                         "area": int((gt == i).sum())}
                for i in np.unique(gt) if i
            }  # fmt: skip
            pred_segments = {
                int(i): {"category_id": int(rng.integers(1, 7))} for i in np.unique(pred) if i
            }
            frames.append((gt, gt_segments, pred, pred_segments))
        vpq = VideoPanopticQuality(categories, windows=(1, 2, 3))
        for frame_args in frames:
            vpq.update(*frame_args)
        result = vpq.result()
        for k in (1, 2, 3):
            pq = PanopticQuality(categories)
            for start in range(len(frames) - k + 1):
                window = frames[start : start + k]
                gt_segments, pred_segments = {}, {}
                for _, gs, _, ps in window:
                    for sid, entry in gs.items():
                        if sid in gt_segments:
                            gt_segments[sid]["area"] += entry["area"]
                        else:
                            gt_segments[sid] = dict(entry)
                    for sid, entry in ps.items():
                        pred_segments.setdefault(sid, dict(entry))
                pq.update(
                    np.concatenate([f[0] for f in window], axis=1),
                    gt_segments,
                    np.concatenate([f[2] for f in window], axis=1),
                    pred_segments,
                )
            assert result[str(k)] == pq.result()
