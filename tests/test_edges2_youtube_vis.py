"""Video instance AP / AR on YouTube-VIS files (streamseg/eval/video_instance.py), on hand-built
4 x 4 videos whose scores are counted by hand in each test's comments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamseg.errors import UserError
from streamseg.eval.video_instance import evaluate_video_instances, video_iou

mask_api = pytest.importorskip("pycocotools.mask")


def rle(mask: np.ndarray) -> dict:
    """A compressed RLE as YouTube-VIS results carry it (counts as a str)."""
    encoded = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode("ascii")}


def box(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((4, 4), bool)
    mask[rows, cols] = True
    return mask


LEFT_HALF = box(slice(0, 4), slice(0, 2))  # 8 px
RIGHT_HALF = box(slice(0, 4), slice(2, 4))  # 8 px
CORNER = box(slice(0, 2), slice(0, 2))  # 4 px


def write_files(tmp_path: Path, objects: list[list], predictions: list[tuple]) -> tuple[Path, Path]:
    """One 2-frame video; `objects`: per object its frames (mask or None, category 1);
    `predictions`: (score, frames)."""
    annotations = [
        {"id": index + 1, "video_id": 7, "category_id": 1, "iscrowd": 0,
         "segmentations": [None if m is None else rle(m) for m in frames],
         "areas": [None if m is None else int(m.sum()) for m in frames]}
        for index, frames in enumerate(objects)
    ]  # fmt: skip
    gt = {
        "videos": [{"id": 7, "width": 4, "height": 4, "length": 2}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}],
    }
    results = [
        {"video_id": 7, "category_id": 1, "score": score,
         "segmentations": [None if m is None else rle(m) for m in frames]}
        for score, frames in predictions
    ]  # fmt: skip
    gt_json, pred_json = tmp_path / "valid.json", tmp_path / "results.json"
    gt_json.write_text(json.dumps(gt))
    pred_json.write_text(json.dumps(results))
    return gt_json, pred_json


def test_video_iou_sums_intersections_and_unions_over_frames(tmp_path: Path) -> None:
    # frame 0: 3 columns (12 px) over the left half (8 px): I 8, U 12
    # frame 1: the corner plus 1 pixel (5 px) over the corner (4 px): I 4, U 5
    # video IoU (8 + 4) / (12 + 5) = 12 / 17 = 0.706 (the mean of the frame IoUs: 0.733)
    three_columns = box(slice(0, 4), slice(0, 3))
    corner_plus = CORNER.copy()
    corner_plus[2, 0] = True
    pred = [rle(three_columns), rle(corner_plus)]
    gt = [rle(LEFT_HALF), rle(CORNER)]
    assert video_iou([_compressed(r) for r in pred], [_compressed(r) for r in gt]) == (
        pytest.approx(12 / 17)
    )
    gt_json, pred_json = write_files(
        tmp_path, [[LEFT_HALF, CORNER]], [(0.9, [three_columns, corner_plus])]
    )
    scores = evaluate_video_instances(gt_json, pred_json)
    # 12/17 passes the thresholds 0.50 .. 0.70 (5 of 10), not 0.75: AP = 5 / 10
    # (the mean of frame IoUs, 0.733, would pass 6 and give 0.6)
    assert scores["AP"] == pytest.approx(0.5)
    assert scores["AP50"] == pytest.approx(1.0) and scores["AP75"] == 0.0


def _compressed(entry: dict) -> dict:
    return {"size": entry["size"], "counts": entry["counts"].encode("ascii")}


def test_a_frame_seen_by_one_side_only_adds_to_the_union(tmp_path: Path) -> None:
    # the object is in frame 0 only; the prediction also marks frame 1: I 8, U 8 + 8 = 0.5
    gt_json, pred_json = write_files(
        tmp_path, [[LEFT_HALF, None]], [(0.9, [LEFT_HALF, RIGHT_HALF])]
    )
    scores = evaluate_video_instances(gt_json, pred_json)
    assert scores["AP50"] == pytest.approx(1.0) and scores["AP"] == pytest.approx(0.1)


def test_a_false_positive_ranked_first_halves_the_precision(tmp_path: Path) -> None:
    # ranked by score: FP (0.9, on the wrong half), then TP (0.8, exact).
    # precision [0, 1/2] at recall [0, 1]; made non-increasing: [1/2, 1/2]; every one of the
    # 101 recall points reads 1/2, at every IoU threshold: AP = 0.5. Recall 1: AR100 = 1;
    # with one prediction per video (AR1) only the FP counts: 0.
    gt_json, pred_json = write_files(
        tmp_path,
        [[LEFT_HALF, LEFT_HALF]],
        [(0.9, [RIGHT_HALF, RIGHT_HALF]), (0.8, [LEFT_HALF, LEFT_HALF])],
    )
    scores = evaluate_video_instances(gt_json, pred_json)
    assert scores["AP"] == pytest.approx(0.5)
    assert (
        scores["AR100"] == pytest.approx(1.0)
        and scores["AR10"] == pytest.approx(1.0)
        and scores["AR1"] == 0.0
    )


def test_max_detections_one_finds_one_of_two_objects(tmp_path: Path) -> None:
    # two dogs, each found exactly: AP 1; AR1 (one prediction per video) recalls 1 of 2
    gt_json, pred_json = write_files(
        tmp_path,
        [[LEFT_HALF, LEFT_HALF], [RIGHT_HALF, RIGHT_HALF]],
        [(0.9, [LEFT_HALF, LEFT_HALF]), (0.7, [RIGHT_HALF, RIGHT_HALF])],
    )
    scores = evaluate_video_instances(gt_json, pred_json)
    assert scores["AP"] == pytest.approx(1.0) and scores["AR10"] == pytest.approx(1.0)
    assert scores["AR1"] == pytest.approx(0.5)
    # 8-pixel objects are small in ytvis's ranges (below 128^2): medium and large undefined
    assert scores["APs"] == pytest.approx(1.0) and scores["APm"] == -1.0 and scores["APl"] == -1.0


def test_bad_results_are_one_clear_line(tmp_path: Path) -> None:
    gt_json, pred_json = write_files(tmp_path, [[LEFT_HALF, LEFT_HALF]], [])
    assert evaluate_video_instances(gt_json, pred_json)["AP"] == 0.0  # nothing predicted
    pred_json.write_text(json.dumps([{"video_id": 8, "category_id": 1, "score": 1.0,
                                      "segmentations": [None, None]}]))  # fmt: skip
    with pytest.raises(UserError, match=r"results\.json: prediction 0 has video id 8, not in"):
        evaluate_video_instances(gt_json, pred_json)
    pred_json.write_text(json.dumps([{"video_id": 7, "category_id": 1, "score": 1.0,
                                      "segmentations": [None]}]))  # fmt: skip
    with pytest.raises(UserError, match=r"prediction 0: needs 'segmentations', one entry per"):
        evaluate_video_instances(gt_json, pred_json)
    small = {"size": [2, 2], "counts": [0, 4]}
    pred_json.write_text(json.dumps([{"video_id": 7, "category_id": 1, "score": 1.0,
                                      "segmentations": [small, None]}]))  # fmt: skip
    with pytest.raises(UserError, match=r"a mask of size \[2, 2\], the video is 4x4"):
        evaluate_video_instances(gt_json, pred_json)
