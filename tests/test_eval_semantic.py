"""mIoU / pixel accuracy with an ignore label: hand-computed cases, PNG folders, panoptic
inputs, errors, and the `streamseg eval semantic` JSON shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from streamseg.cli import main
from streamseg.errors import UserError
from streamseg.eval.semantic import SemanticConfusion, evaluate_label_pngs
from streamseg.panoptic_png import id_to_rgb

GT = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255]])


def test_perfect_is_one():
    metric = SemanticConfusion(3)
    metric.update(GT, np.where(GT == 255, 0, GT))  # anything on ignored pixels is free
    result = metric.result()
    assert result == {
        "miou": 1.0,
        "pixel_acc": 1.0,
        "per_class_iou": {"0": 1.0, "1": 1.0, "2": 1.0},
    }


def test_known_partial_case():
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [2, 0, 7, 7]])
    metric = SemanticConfusion(3)
    metric.update(GT, pred)
    result = metric.result()
    # class 0: TP 3, FN 1, FP 1 -> 3/5; class 1: TP 4, FP 1 -> 4/5; class 2: TP 1, FN 1 -> 1/2
    assert result["per_class_iou"] == {"0": 0.6, "1": 0.8, "2": 0.5}
    assert result["miou"] == pytest.approx((0.6 + 0.8 + 0.5) / 3)
    assert result["pixel_acc"] == pytest.approx(8 / 10)


def test_empty_prediction_and_absent_class():
    metric = SemanticConfusion(4)
    metric.update(GT, np.full(GT.shape, 255))  # out-of-range prediction counts as wrong
    result = metric.result()
    assert result["miou"] == 0.0 and result["pixel_acc"] == 0.0
    assert result["per_class_iou"]["3"] is None  # never in gt nor prediction: not averaged


def test_ground_truth_out_of_range_is_an_error():
    metric = SemanticConfusion(2)
    with pytest.raises(UserError, match="ground-truth label 2 outside 0..1"):
        metric.update(GT, GT, name="x.png")


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8), mode).save(path)


def test_png_folders_and_cli(tmp_path, capsys):
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [2, 0, 7, 7]])
    for name in ("a", "sub/b"):
        save(tmp_path / "gt" / f"{name}.png", GT)
        save(tmp_path / "pred" / f"{name}.png", pred)
    result = evaluate_label_pngs(tmp_path / "gt", tmp_path / "pred")
    assert result["miou"] == pytest.approx((0.6 + 0.8 + 0.5) / 3)
    code = main(
        ["eval", "semantic", "--gt-dir", str(tmp_path / "gt"), "--pred-dir",
         str(tmp_path / "pred"), "--num-classes", "3", "--json"]
    )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and set(out) == {"miou", "pixel_acc", "per_class_iou"}
    assert out["pixel_acc"] == pytest.approx(0.8)
    # size mismatch and missing file name the prediction file
    save(tmp_path / "pred" / "a.png", np.zeros((2, 2)))
    with pytest.raises(UserError, match=r"pred/a\.png: size 2x2 differs"):
        evaluate_label_pngs(tmp_path / "gt", tmp_path / "pred")
    (tmp_path / "pred" / "a.png").unlink()
    with pytest.raises(UserError, match=r"pred/a\.png: no such file"):
        evaluate_label_pngs(tmp_path / "gt", tmp_path / "pred")


def test_from_panoptic_inputs(tmp_path, capsys):
    categories = [{"id": 5, "name": "dog", "isthing": 1}, {"id": 8, "name": "sky", "isthing": 0}]
    gt_ids = np.array([[1, 1, 2, 2], [0, 0, 2, 2]])
    pred_ids = np.array([[3, 4, 4, 4], [3, 3, 4, 4]])
    for name, ids, segments in (
        ("gt", gt_ids, [{"id": 1, "category_id": 5}, {"id": 2, "category_id": 8}]),
        ("pred", pred_ids, [{"id": 3, "category_id": 5}, {"id": 4, "category_id": 8}]),
    ):
        (tmp_path / name).mkdir()
        Image.fromarray(id_to_rgb(ids)).save(tmp_path / name / "0.png")
        data = {
            "annotations": [{"image_id": 0, "file_name": "0.png", "segments_info": segments}],
            "categories": categories,
        }
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    main(
        ["eval", "semantic", "--gt-dir", str(tmp_path / "gt"), "--pred-dir",
         str(tmp_path / "pred"), "--gt-json", str(tmp_path / "gt.json"), "--pred-json",
         str(tmp_path / "pred.json"), "--json"]
    )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    # void pixels (row 2, cols 0-1) are ignored; dog: TP 1, FP 0, FN 1 -> 1/2; sky: 4/5
    assert out["per_class_iou"] == {"5": 0.5, "8": 0.8}
    assert out["pixel_acc"] == pytest.approx(5 / 6)
