"""`streamseg eval` reads the files the reference tools read, laid out as those tools expect:
panopticapi (COCO panoptic JSON + PNG folder), VIPSeg's `eval_vpq_vspw.py` (ground truth with
`videos` + `annotations`; prediction `pred.json` with `annotations` only, PNGs in
`pan_pred/<video>/`) and pycocotools (COCO instances + results list). Each is scored once
perfect and once with a hand-computed error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamseg.cli import main
from streamseg.errors import UserError
from streamseg.eval.instance import evaluate_instances
from streamseg.eval.panoptic import evaluate_coco_panoptic
from streamseg.eval.video import evaluate_vipseg
from streamseg.panoptic_png import id_to_rgb

# panopticapi / VIPSeg category entries carry these fields
CATEGORIES = [
    {"id": 1, "name": "dog", "supercategory": "animal", "isthing": 1, "color": [220, 20, 60]},
    {"id": 2, "name": "grass", "supercategory": "plant", "isthing": 0, "color": [0, 128, 0]},
]

# 4 x 4 frames: a dog (segment 1) in columns 0-1, grass (segment 2) in columns 2-3
GT_IDS = np.array([[1, 1, 2, 2]] * 4, dtype=np.uint32)


def save_png(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(id_to_rgb(ids)).save(path)


def segments_info(ids: np.ndarray, categories: dict[int, int], gt: bool) -> list[dict]:
    """panopticapi's `segments_info`: ground truth with area, bbox and iscrowd."""
    info = []
    for sid, category_id in categories.items():
        entry = {"id": sid, "category_id": category_id}
        if gt:
            entry.update(area=int((ids == sid).sum()), bbox=[0, 0, 4, 4], iscrowd=0)
        info.append(entry)
    return info


# ---------------------------------------------------------------- panopticapi


def write_coco_panoptic(tmp_path: Path, pred_frames: list[np.ndarray]) -> tuple[Path, ...]:
    """panopticapi's layout: the ground-truth JSON has images, annotations and categories;
    the prediction JSON only annotations (pq_compute reads categories from the ground truth)."""
    images, gt_annotations, pred_annotations = [], [], []
    for index, pred_ids in enumerate(pred_frames):
        name = f"{index:012d}"
        images.append({"id": index, "file_name": f"{name}.jpg", "height": 4, "width": 4})
        save_png(tmp_path / "gt" / f"{name}.png", GT_IDS)
        gt_info = segments_info(GT_IDS, {1: 1, 2: 2}, gt=True)
        gt_annotations.append(
            {"image_id": index, "file_name": f"{name}.png", "segments_info": gt_info}
        )
        save_png(tmp_path / "pred" / f"{name}.png", pred_ids)
        pred_info = segments_info(pred_ids, {7: 1, 9: 2}, gt=False)
        pred_annotations.append(
            {"image_id": index, "file_name": f"{name}.png", "segments_info": pred_info}
        )
    gt_json = tmp_path / "panoptic_val.json"
    gt_json.write_text(
        json.dumps({"images": images, "annotations": gt_annotations, "categories": CATEGORIES})
    )
    pred_json = tmp_path / "panoptic_pred.json"
    pred_json.write_text(json.dumps({"annotations": pred_annotations}))
    return gt_json, tmp_path / "gt", pred_json, tmp_path / "pred"


def relabel(ids: np.ndarray) -> np.ndarray:
    """The ground truth with the prediction's own segment ids (dog 7, grass 9)."""
    return np.where(ids == 1, 7, 9).astype(np.uint32)


def test_panopticapi_layout_perfect_and_imperfect(tmp_path):
    perfect = relabel(GT_IDS)
    result = evaluate_coco_panoptic(*write_coco_panoptic(tmp_path / "a", [perfect, perfect]))
    assert result["All"]["pq"] == 1.0 and result["All"]["n"] == 2
    # image 0: the dog also takes one grass pixel: dog IoU 8/9, grass IoU 7/8; image 1 perfect
    grown = perfect.copy()
    grown[0, 2] = 7
    result = evaluate_coco_panoptic(*write_coco_panoptic(tmp_path / "b", [grown, perfect]))
    dog, grass = (8 / 9 + 1) / 2, (7 / 8 + 1) / 2
    assert result["Things"]["pq"] == pytest.approx(dog)
    assert result["Stuff"]["pq"] == pytest.approx(grass)
    assert result["All"]["pq"] == pytest.approx((dog + grass) / 2)


# ---------------------------------------------------------------- VIPSeg's eval script


def write_vipseg_gt(folder: Path, videos: dict[str, int]) -> Path:
    """`panoptic_gt_VIPSeg_val.json`: `videos` (with `images`), per-video `annotations`,
    `categories`; PNGs at <truth_dir>/<video_id>/<file_name>."""
    entries, annotations = [], []
    for video_id, length in videos.items():
        frames = []
        for index in range(length):
            file_name = f"{index:08d}.png"
            save_png(folder / "panomasksRGB" / video_id / file_name, GT_IDS)
            info = segments_info(GT_IDS, {1: 1, 2: 2}, gt=True)
            frames.append(
                {
                    "image_id": f"{video_id}/{index:08d}",
                    "file_name": file_name,
                    "segments_info": info,
                }
            )
        images = [{"id": f["image_id"], "file_name": f["file_name"], "height": 4, "width": 4}
                  for f in frames]  # fmt: skip
        entries.append({"video_id": video_id, "images": images})
        annotations.append({"video_id": video_id, "annotations": frames})
    path = folder / "panoptic_gt_VIPSeg_val.json"
    path.write_text(
        json.dumps({"videos": entries, "annotations": annotations, "categories": CATEGORIES})
    )
    return path


def write_vipseg_pred(folder: Path, videos: dict[str, list[int]], with_names: bool) -> Path:
    """The submission: <submit_dir>/pred.json with only `annotations`, PNGs in
    <submit_dir>/pan_pred/<video_id>/. Each frame gives the predicted dog's segment id."""
    annotations = []
    for video_id, dog_ids in videos.items():
        frames = []
        for index, dog_id in enumerate(dog_ids):
            file_name = f"{index:08d}.png"
            ids = np.where(GT_IDS == 1, dog_id, 20).astype(np.uint32)
            save_png(folder / "submit" / "pan_pred" / video_id / file_name, ids)
            frame = {"image_id": f"{video_id}/{index:08d}",
                     "segments_info": segments_info(ids, {dog_id: 1, 20: 2}, gt=False)}  # fmt: skip
            if with_names:
                frame["file_name"] = file_name
            frames.append(frame)
        annotations.append({"video_id": video_id, "annotations": frames})
    path = folder / "submit" / "pred.json"
    path.write_text(json.dumps({"annotations": annotations}))
    return path


@pytest.mark.parametrize("with_names", [True, False])
def test_vipseg_layout_perfect(tmp_path, with_names):
    gt_json = write_vipseg_gt(tmp_path, {"v1": 3, "v2": 2})
    pred_json = write_vipseg_pred(tmp_path, {"v1": [5, 5, 5], "v2": [6, 6]}, with_names)
    result = evaluate_vipseg(
        gt_json, tmp_path / "panomasksRGB", pred_json, tmp_path / "submit" / "pan_pred", (1, 2)
    )  # windows no longer than the shortest video: a longer one would score 0 (as the script)
    for group in ("All", "Things", "Stuff"):
        assert result["vpq"]["mean"][group]["pq"] == 1.0
    assert result["stq"]["stq"] == 1.0 and set(result["stq"]["per_video"]) == {"v1", "v2"}


def test_vipseg_layout_track_switch_and_cli(tmp_path, capsys):
    gt_json = write_vipseg_gt(tmp_path, {"v1": 4})
    # the dog's id switches from 10 to 11 after frame 1
    pred_json = write_vipseg_pred(tmp_path, {"v1": [10, 10, 11, 11]}, with_names=False)
    code = main(
        ["eval", "video", "--gt-json", str(gt_json), "--gt-dir", str(tmp_path / "panomasksRGB"),
         "--pred-json", str(pred_json), "--pred-dir", str(tmp_path / "submit" / "pan_pred"),
         "--windows", "1,2", "--json"]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    # windows of 2: (0,1) and (2,3) match, (1,2) has tube IoU 8/16 -> 1 FN + 2 FP
    assert out["vpq"]["1"]["Things"]["pq"] == 1.0
    assert out["vpq"]["2"]["Things"]["pq"] == pytest.approx(2 / 3.5)
    # the 32-pixel dog tube splits 16 + 16: AQ = (16 x 0.5 + 16 x 0.5) / 32
    assert out["stq"]["aq"] == pytest.approx(0.5)
    assert out["stq"]["stq"] == pytest.approx(math.sqrt(0.5))


def test_vipseg_prediction_layout_errors(tmp_path):
    gt_json = write_vipseg_gt(tmp_path, {"v1": 2})
    pred_dir = tmp_path / "submit" / "pan_pred"
    bad = tmp_path / "no_video_id.json"
    bad.write_text(json.dumps({"annotations": [{"annotations": []}]}))
    with pytest.raises(UserError, match=r"no_video_id\.json: an 'annotations' entry without"):
        evaluate_vipseg(gt_json, tmp_path / "panomasksRGB", bad, pred_dir)
    missing = tmp_path / "other_video.json"
    missing.write_text(json.dumps({"annotations": [{"video_id": "v9", "annotations": []}]}))
    with pytest.raises(UserError, match=r"other_video\.json: no prediction for video 'v1'"):
        evaluate_vipseg(gt_json, tmp_path / "panomasksRGB", missing, pred_dir)
    neither = tmp_path / "neither.json"
    neither.write_text(json.dumps({"predictions": []}))
    with pytest.raises(UserError, match=r"neither\.json: no 'videos' or 'annotations' list"):
        evaluate_vipseg(gt_json, tmp_path / "panomasksRGB", neither, pred_dir)


# ---------------------------------------------------------------- pycocotools


def test_pycocotools_layout_polygons_and_compressed_rle(tmp_path):
    """COCO instances ground truth with polygons; a results list whose masks are compressed
    RLE with `counts` as a string (what `pycocotools.mask.encode` gives, decoded to text)."""
    mask_api = pytest.importorskip("pycocotools.mask")
    polygons = [[0, 0, 10, 0, 10, 10, 0, 10], [16, 16, 30, 16, 30, 30, 16, 30]]
    annotations = [
        {"id": i + 1, "image_id": 42, "category_id": 1, "segmentation": [polygon],
         "area": 100.0, "bbox": [polygon[0], polygon[1], 10, 10], "iscrowd": 0}
        for i, polygon in enumerate(polygons)
    ]  # fmt: skip
    gt_json = tmp_path / "instances_val.json"
    gt_json.write_text(
        json.dumps(
            {
                "info": {},
                "licenses": [],
                "images": [{"id": 42, "file_name": "42.jpg", "height": 32, "width": 32}],
                "annotations": annotations,
                "categories": [{"id": 1, "name": "dog", "supercategory": "animal"}],
            }
        )
    )

    def detection(polygon: list[int], score: float) -> dict:
        rle = mask_api.merge(mask_api.frPyObjects([polygon], 32, 32))  # the polygon's pixels
        rle["counts"] = rle["counts"].decode("ascii")
        return {"image_id": 42, "category_id": 1, "segmentation": rle, "score": score}

    perfect = tmp_path / "segm_results.json"
    perfect.write_text(json.dumps([detection(p, 0.9) for p in polygons]))
    assert evaluate_instances(gt_json, perfect)["AP"] == pytest.approx(1.0)
    # one object found: precision 1 at recalls 0 .. 0.5, i.e. 51 of the 101 recall points
    half = tmp_path / "half_results.json"
    half.write_text(json.dumps([detection(polygons[0], 0.9)]))
    assert evaluate_instances(gt_json, half)["AP"] == pytest.approx(51 / 101)


# ---------------------------------------------------------------- YouTube-VIS


def test_youtube_vis_layout_is_scored_as_video_instances(tmp_path, capsys):
    """A YouTube-VIS ground truth (list-count RLEs, `areas`) and results list: the prediction
    covers the dog in frame 0 and misses frame 1, video IoU 8 / (8 + 8) = 0.5."""
    pytest.importorskip("pycocotools")
    rle = {"size": [4, 4], "counts": [0, 8, 8]}  # the dog's 8 pixels (column-major runs)
    gt_json = tmp_path / "ytvis_valid.json"
    gt_json.write_text(
        json.dumps(
            {
                "videos": [{"id": 1, "width": 4, "height": 4, "length": 2,
                            "file_names": ["v/0.jpg", "v/1.jpg"]}],
                "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                                 "segmentations": [rle, rle], "areas": [8, 8],
                                 "bboxes": [[0, 0, 2, 4]] * 2}],
                "categories": [{"id": 1, "name": "dog", "supercategory": "animal"}],
            }
        )
    )  # fmt: skip
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps([{"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [rle, None]}])
    )
    scores = evaluate_instances(gt_json, results)
    # matched at IoU threshold 0.50 only (1 of 10): AP 0.1; AP50 1; a small object (8 px)
    assert scores["AP"] == pytest.approx(0.1) and scores["AP50"] == pytest.approx(1.0)
    assert scores["AP75"] == 0.0 and scores["APs"] == pytest.approx(0.1)
    assert scores["APm"] == -1.0 and scores["AR1"] == pytest.approx(0.1)
    code = main(["eval", "instance", "--gt-json", str(gt_json), "--pred-json", str(results),
                 "--json"])  # fmt: skip
    assert code == 0 and json.loads(capsys.readouterr().out) == scores
