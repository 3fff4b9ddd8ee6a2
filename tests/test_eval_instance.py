"""COCO segm AP through pycocotools: perfect, a known partial case, empty, bad input, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamseg.cli import main
from streamseg.errors import UserError
from streamseg.eval.instance import STAT_NAMES, evaluate_instances
from streamseg.video.rle import encode_mask

pytest.importorskip("pycocotools")


def box_mask(y0, y1, x0, x1, size=(32, 32)):
    mask = np.zeros(size, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


GT_MASKS = [box_mask(0, 10, 0, 10), box_mask(16, 30, 16, 30)]


def write_gt(path):
    annotations = [
        {
            "id": i + 1,
            "image_id": 1,
            "category_id": 1,
            "segmentation": encode_mask(mask),
            "area": int(mask.sum()),
            "bbox": [0, 0, 1, 1],
            "iscrowd": 0,
        }
        for i, mask in enumerate(GT_MASKS)
    ]
    data = {
        "images": [{"id": 1, "height": 32, "width": 32, "file_name": "1.jpg"}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "dog"}],
    }
    path.write_text(json.dumps(data))
    return path


def write_pred(path, masks_scores, image_id=1, category_id=1):
    detections = [
        {"image_id": image_id, "category_id": category_id, "segmentation": encode_mask(m),
         "score": s}
        for m, s in masks_scores
    ]  # fmt: skip
    path.write_text(json.dumps(detections))
    return path


def test_perfect_and_partial(tmp_path):
    gt = write_gt(tmp_path / "gt.json")
    perfect = evaluate_instances(gt, write_pred(tmp_path / "p.json", [(m, 0.9) for m in GT_MASKS]))
    assert list(perfect) == list(STAT_NAMES)
    assert perfect["AP"] == pytest.approx(1.0) and perfect["AP50"] == pytest.approx(1.0)
    # one of the two objects found: recall 1/2 at every threshold -> AP ~ 0.5 (101-point)
    half = evaluate_instances(gt, write_pred(tmp_path / "h.json", [(GT_MASKS[0], 0.9)]))
    assert half["AP"] == pytest.approx(51 / 101)  # precision 1 at recalls 0..0.5
    assert half["AR100"] == pytest.approx(0.5)


def test_empty_prediction(tmp_path):
    gt = write_gt(tmp_path / "gt.json")
    result = evaluate_instances(gt, write_pred(tmp_path / "e.json", []))
    assert result["AP"] == 0.0


def test_bad_input(tmp_path, capsys):
    gt = write_gt(tmp_path / "gt.json")
    with pytest.raises(UserError, match=r"u\.json: detection 0 has image id 9"):
        evaluate_instances(gt, write_pred(tmp_path / "u.json", [(GT_MASKS[0], 1.0)], image_id=9))
    with pytest.raises(UserError, match=r"c\.json: detection 0 has unknown category id 4"):
        evaluate_instances(gt, write_pred(tmp_path / "c.json", [(GT_MASKS[0], 1.0)], category_id=4))
    code = main(["eval", "instance", "--gt-json", str(gt), "--pred-json", str(tmp_path / "no")])
    assert code == 2 and "no: no such file" in capsys.readouterr().err


def test_cli_json(tmp_path, capsys):
    gt = write_gt(tmp_path / "gt.json")
    pred = write_pred(tmp_path / "p.json", [(m, 0.9) for m in GT_MASKS])
    assert main(["eval", "instance", "--gt-json", str(gt), "--pred-json", str(pred), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == set(STAT_NAMES) and out["AP"] == pytest.approx(1.0)
