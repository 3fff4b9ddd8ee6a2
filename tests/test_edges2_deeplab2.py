"""deeplab2's video panoptic prediction layout (R = semantic, G * 256 + B = instance/track, no
JSON) accepted by `streamseg eval video --pred-format deeplab2`, scored against VIPSeg-format
ground truth written as in tests/test_eval_layouts.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_eval_layouts import write_vipseg_gt

from streamseg.cli import main
from streamseg.errors import UserError
from streamseg.eval.deeplab2 import evaluate_deeplab2_video


def write_deeplab2_pred(folder: Path, video_id: str, dog_tracks: list[int]) -> Path:
    """One PNG per frame: the dog (category 1) in columns 0-1 with instance id
    `dog_tracks[frame]`, grass (category 2, stuff: instance 0) in columns 2-3."""
    out = folder / "raw_panoptic"
    for index, track in enumerate(dog_tracks):
        rgb = np.zeros((4, 4, 3), np.uint8)
        rgb[:, :2] = (1, track // 256, track % 256)
        rgb[:, 2:] = (2, 0, 0)
        path = out / video_id / f"{index:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(path)
    return out


def test_deeplab2_layout_perfect(tmp_path: Path) -> None:
    gt_json = write_vipseg_gt(tmp_path, {"v1": 3})
    # a track id above 255 uses the green channel too
    pred_dir = write_deeplab2_pred(tmp_path, "v1", [300, 300, 300])
    result = evaluate_deeplab2_video(gt_json, tmp_path / "panomasksRGB", pred_dir, (1, 2))
    for group in ("All", "Things", "Stuff"):
        assert result["vpq"]["mean"][group]["pq"] == 1.0
    assert result["stq"]["stq"] == 1.0


def test_deeplab2_layout_track_switch_through_the_cli(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    gt_json = write_vipseg_gt(tmp_path, {"v1": 4})
    pred_dir = write_deeplab2_pred(tmp_path, "v1", [7, 7, 8, 8])  # the track switches at frame 2
    code = main(
        ["eval", "video", "--gt-json", str(gt_json), "--gt-dir", str(tmp_path / "panomasksRGB"),
         "--pred-dir", str(pred_dir), "--pred-format", "deeplab2", "--windows", "1,2", "--json"]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    # the same hand count as the VIPSeg layout's track switch (tests/test_eval_layouts.py):
    # windows (0,1) and (2,3) match, (1,2) has tube IoU 8/16 -> 1 FN + 2 FP
    assert out["vpq"]["1"]["Things"]["pq"] == 1.0
    assert out["vpq"]["2"]["Things"]["pq"] == pytest.approx(2 / 3.5)
    assert out["stq"]["aq"] == pytest.approx(0.5)
    assert out["stq"]["stq"] == pytest.approx(math.sqrt(0.5))


def test_deeplab2_ignore_label_is_void_and_unknown_labels_are_refused(tmp_path: Path) -> None:
    gt_json = write_vipseg_gt(tmp_path, {"v1": 1})
    pred_dir = write_deeplab2_pred(tmp_path, "v1", [5])
    png = pred_dir / "v1" / "00000000.png"
    rgb = np.asarray(Image.open(png)).copy()
    rgb[:, 2:] = (255, 0, 0)  # grass predicted as ignore: void, a missed stuff segment
    Image.fromarray(rgb).save(png)
    result = evaluate_deeplab2_video(gt_json, tmp_path / "panomasksRGB", pred_dir, (1,))
    assert result["vpq"]["1"]["Things"]["pq"] == 1.0
    assert result["vpq"]["1"]["Stuff"]["pq"] == 0.0  # 1 FN, no TP
    rgb[:, 2:] = (9, 0, 0)  # category 9 is not in the ground truth
    Image.fromarray(rgb).save(png)
    with pytest.raises(UserError, match=r"00000000\.png: semantic label 9 is not a category"):
        evaluate_deeplab2_video(gt_json, tmp_path / "panomasksRGB", pred_dir, (1,))
    with pytest.raises(SystemExit):
        main(["eval", "video", "--gt-json", str(gt_json), "--gt-dir", "x", "--pred-dir", "y",
              "--pred-format", "other"])  # fmt: skip
