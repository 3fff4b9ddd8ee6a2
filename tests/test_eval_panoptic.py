"""PQ as COCO panopticapi: hand-computed cases, VOID / crowd rules, id permutation invariance,
file inputs and their errors, and the `streamseg eval panoptic` JSON shape."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamseg.cli import main
from streamseg.errors import UserError
from streamseg.eval.panoptic import PanopticQuality, evaluate_coco_panoptic
from streamseg.panoptic_png import id_to_rgb

# category 1 = a thing, 2 = stuff, 3 = another thing
CATEGORIES = {
    1: {"id": 1, "name": "dog", "isthing": 1},
    2: {"id": 2, "name": "grass", "isthing": 0},
    3: {"id": 3, "name": "cat", "isthing": 1},
}

# 4x4 ground truth: dog (id 7) on the left half, grass (id 9) on the right half
GT = np.array([[7, 7, 9, 9]] * 4, dtype=np.uint32)
GT_SEGMENTS = {
    7: {"category_id": 1, "iscrowd": 0, "area": 8},
    9: {"category_id": 2, "iscrowd": 0, "area": 8},
}


def score(gt, gt_segments, pred, pred_segments):
    metric = PanopticQuality(CATEGORIES)
    metric.update(gt, gt_segments, pred, pred_segments)
    return metric.result()


def test_perfect_prediction_is_one():
    pred = np.where(GT == 7, 100, 200).astype(np.uint32)
    result = score(GT, GT_SEGMENTS, pred, {100: {"category_id": 1}, 200: {"category_id": 2}})
    for group in ("All", "Things", "Stuff"):
        assert result[group]["pq"] == 1.0 and result[group]["sq"] == 1.0
        assert result[group]["rq"] == 1.0
    assert result["All"]["n"] == 2 and result["Things"]["n"] == 1 and result["Stuff"]["n"] == 1
    # a category that never occurs is reported as 0 and not averaged
    assert result["per_class"]["3"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}


def test_known_partial_case():
    # the predicted dog also takes the 2 top pixels of the grass: dog IoU 8/10, grass IoU 6/8
    pred = np.where(GT == 7, 100, 200).astype(np.uint32)
    pred[0, 2:] = 100
    result = score(GT, GT_SEGMENTS, pred, {100: {"category_id": 1}, 200: {"category_id": 2}})
    assert result["per_class"]["1"]["pq"] == pytest.approx(0.8)
    assert result["per_class"]["2"]["pq"] == pytest.approx(0.75)
    assert result["All"]["pq"] == pytest.approx(0.775)
    assert result["All"]["rq"] == 1.0
    # wrong class on the grass: grass FN + cat FP; dog still a TP
    result = score(GT, GT_SEGMENTS, pred, {100: {"category_id": 1}, 200: {"category_id": 3}})
    assert result["per_class"]["2"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}  # 0 TP, 1 FN
    assert result["per_class"]["3"]["rq"] == 0.0
    assert result["Things"]["n"] == 2 and result["Things"]["pq"] == pytest.approx(0.4)
    # IoU exactly 0.5 does not match (strictly greater than 0.5)
    half = GT.copy()
    half[:, 1] = 9
    result = score(
        GT,
        GT_SEGMENTS,
        np.where(half == 7, 1, 2).astype(np.uint32),
        {1: {"category_id": 1}, 2: {"category_id": 2}},
    )
    # dog: 4/8 = 0.5 -> FN + FP (pq 0); grass: 8/12 -> TP
    assert result["per_class"]["1"]["rq"] == 0.0
    assert result["per_class"]["2"]["pq"] == pytest.approx(8 / 12)


def test_empty_prediction():
    pred = np.zeros_like(GT)
    result = score(GT, GT_SEGMENTS, pred, {})
    assert result["All"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 2}


def test_void_pixels_are_not_counted():
    gt = GT.copy()
    gt[3, :] = 0  # bottom row unlabelled
    gt_segments = {
        7: {"category_id": 1, "iscrowd": 0, "area": 6},
        9: {"category_id": 2, "iscrowd": 0, "area": 6},
    }
    # the dog prediction spills over the void row: union leaves the void pixels out -> IoU 1
    pred = np.where(GT == 7, 100, 200).astype(np.uint32)
    pred[3, :] = 100
    result = score(gt, gt_segments, pred, {100: {"category_id": 1}, 200: {"category_id": 2}})
    assert result["per_class"]["1"]["sq"] == 1.0
    assert result["All"]["pq"] == 1.0
    # a prediction lying more than half on void is ignored, not a false positive
    gt2 = np.zeros((4, 4), dtype=np.uint32)
    gt2[0, :] = 9
    pred2 = np.full((4, 4), 50, dtype=np.uint32)
    pred2[0, :] = 60
    result = score(
        gt2,
        {9: {"category_id": 2, "iscrowd": 0, "area": 4}},
        pred2,
        {50: {"category_id": 3}, 60: {"category_id": 2}},
    )
    assert result["per_class"]["3"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}  # no FP
    assert result["All"]["n"] == 1 and result["All"]["pq"] == 1.0


def test_crowd_regions():
    # left half is a crowd of dogs; right half grass
    gt_segments = {
        7: {"category_id": 1, "iscrowd": 1, "area": 8},
        9: {"category_id": 2, "iscrowd": 0, "area": 8},
    }
    grass = {200: {"category_id": 2}}
    # a dog predicted on the crowd: neither TP (crowd never matches) nor FP; no FN for a crowd
    pred = np.where(GT == 7, 100, 200).astype(np.uint32)
    result = score(GT, gt_segments, pred, {100: {"category_id": 1}, **grass})
    assert result["per_class"]["1"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert result["Things"]["n"] == 0
    # a cat predicted there is a false positive (the crowd is of another category)
    result = score(GT, gt_segments, pred, {100: {"category_id": 3}, **grass})
    assert result["Things"]["n"] == 1 and result["per_class"]["3"]["rq"] == 0.0


def test_id_permutation_invariance():
    rng = np.random.default_rng(3)
    gt = rng.integers(1, 6, size=(16, 16)).astype(np.uint32)
    gt[:4] = 0
    gt_segments = {
        int(i): {
            "category_id": int(1 + i % 3),
            "iscrowd": int(i == 5),
            "area": int((gt == i).sum()),
        }
        for i in np.unique(gt)
        if i
    }
    pred = gt.copy()
    pred[rng.random(gt.shape) < 0.2] = 4
    pred_segments = {int(i): {"category_id": int(1 + i % 3)} for i in np.unique(pred) if i}
    expected = score(gt, gt_segments, pred, pred_segments)

    def relabel(ids, segments, table):
        out = np.zeros_like(ids)
        for old, new in table.items():
            out[ids == old] = new
        return out, {table[k]: v for k, v in segments.items()}

    gt_table = {int(i): int(1000 + 17 * i) for i in np.unique(gt) if i}
    pred_table = {int(i): int(2**23 + 31 * (6 - i)) for i in np.unique(pred) if i}
    gt2, gs2 = relabel(gt, gt_segments, gt_table)
    pred2, ps2 = relabel(pred, pred_segments, pred_table)
    assert score(gt2, gs2, pred2, ps2) == expected


def test_streaming_equals_sum_of_images():
    pred = np.where(GT == 7, 100, 200).astype(np.uint32)
    pred[0, 2:] = 100
    segments = {100: {"category_id": 1}, 200: {"category_id": 2}}
    metric = PanopticQuality(CATEGORIES)
    metric.update(GT, GT_SEGMENTS, pred, segments)
    metric.update(GT, GT_SEGMENTS, np.zeros_like(GT), {})
    result = metric.result()
    # dog: 1 TP (IoU 0.8) + 1 FN -> 0.8 / 1.5; grass: 0.75 / 1.5
    assert result["per_class"]["1"]["pq"] == pytest.approx(0.8 / 1.5)
    assert result["per_class"]["2"]["pq"] == pytest.approx(0.75 / 1.5)


# ---------------------------------------------------------------- files and CLI


def write_dataset(
    folder: Path, name: str, images: list[tuple[int, np.ndarray, list]], categories=CATEGORIES
) -> Path:
    (folder / name).mkdir(parents=True, exist_ok=True)
    annotations = []
    for image_id, ids, segments in images:
        Image.fromarray(id_to_rgb(ids)).save(folder / name / f"{image_id}.png")
        annotations.append(
            {"image_id": image_id, "file_name": f"{image_id}.png", "segments_info": segments}
        )
    path = folder / f"{name}.json"
    path.write_text(
        json.dumps({"annotations": annotations, "categories": list(categories.values())})
    )
    return path


def gt_entries():
    return [
        {"id": 7, "category_id": 1, "iscrowd": 0, "area": 8},
        {"id": 9, "category_id": 2, "iscrowd": 0, "area": 8},
    ]


@pytest.fixture
def files(tmp_path):
    pred = np.where(GT == 7, 100, 200).astype(np.uint32)
    pred[0, 2:] = 100
    pred_segments = [{"id": 100, "category_id": 1}, {"id": 200, "category_id": 2}]
    gt_json = write_dataset(tmp_path, "gt", [(1, GT, gt_entries()), (2, GT, gt_entries())])
    pred_json = write_dataset(
        tmp_path, "pred", [(1, pred, pred_segments), (2, pred, pred_segments)]
    )
    return tmp_path, gt_json, pred_json


def test_files_and_cli_json(files, capsys):
    folder, gt_json, pred_json = files
    result = evaluate_coco_panoptic(gt_json, folder / "gt", pred_json, folder / "pred")
    assert result["All"]["pq"] == pytest.approx(0.775)
    code = main(
        ["eval", "panoptic", "--gt-json", str(gt_json), "--gt-dir", str(folder / "gt"),
         "--pred-json", str(pred_json), "--pred-dir", str(folder / "pred"), "--json"]
    )  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"All", "Things", "Stuff", "per_class"}
    assert set(out["All"]) == {"pq", "sq", "rq", "n"}
    assert set(out["per_class"]) == {"1", "2", "3"}
    assert out["Things"]["pq"] == pytest.approx(0.8)
    main(
        ["eval", "panoptic", "--gt-json", str(gt_json), "--gt-dir", str(folder / "gt"),
         "--pred-json", str(pred_json), "--pred-dir", str(folder / "pred")]
    )  # fmt: skip
    table = capsys.readouterr().out
    assert "All" in table and "77.5" in table


def test_image_ids_must_match(files):
    folder, gt_json, _ = files
    pred_json = write_dataset(folder, "other", [(5, GT, [])])
    with pytest.raises(UserError, match=r"other\.json: no prediction for image id 1"):
        evaluate_coco_panoptic(gt_json, folder / "gt", pred_json, folder / "other")


def test_unknown_category_id(files):
    folder, gt_json, _ = files
    segments = [{"id": 7, "category_id": 42}, {"id": 9, "category_id": 2}]
    pred_json = write_dataset(folder, "bad", [(1, GT, segments), (2, GT, segments)])
    with pytest.raises(UserError, match=r"bad/1\.png: segment id 7 has unknown category id 42"):
        evaluate_coco_panoptic(gt_json, folder / "gt", pred_json, folder / "bad")


def test_png_size_mismatch(files):
    folder, gt_json, pred_json = files
    Image.fromarray(id_to_rgb(np.full((5, 4), 100))).save(folder / "pred" / "2.png")
    with pytest.raises(UserError, match=r"pred/2\.png: size 5x4 differs"):
        evaluate_coco_panoptic(gt_json, folder / "gt", pred_json, folder / "pred")


def test_missing_png(files, capsys):
    folder, gt_json, pred_json = files
    (folder / "pred" / "2.png").unlink()
    with pytest.raises(UserError, match=r"pred/2\.png: no such file"):
        evaluate_coco_panoptic(gt_json, folder / "gt", pred_json, folder / "pred")
    code = main(
        ["eval", "panoptic", "--gt-json", str(gt_json), "--gt-dir", str(folder / "gt"),
         "--pred-json", str(pred_json), "--pred-dir", str(folder / "pred")]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "2.png: no such file" in err[0]


def test_png_and_json_segments_must_agree(files):
    folder, gt_json, _ = files
    pred_json = write_dataset(
        folder, "extra", [(1, GT, [{"id": 7, "category_id": 1}]), (2, GT, gt_entries())]
    )
    with pytest.raises(UserError, match=r"extra/1\.png: segment id 9 is in the PNG but not"):
        evaluate_coco_panoptic(gt_json, folder / "gt", pred_json, folder / "extra")


@pytest.mark.slow
def test_matches_panopticapi_when_installed(tmp_path):
    """On random data our PQ equals panopticapi's exactly. `.ci/run` installs the reference
    (`pip install --no-deps panopticapi-lite==0.2.0`: the original pq_compute; --no-deps keeps
    its numpy<2 pin out) before the slow tests, and there a missing one is a failure."""
    if os.environ.get("CI") == "true":
        import panopticapi.evaluation as evaluation
    else:
        evaluation = pytest.importorskip("panopticapi.evaluation")
    rng = np.random.default_rng(11)
    categories = {c: {"id": c, "name": str(c), "isthing": int(c < 4)} for c in range(1, 7)}
    for trial in range(5):
        pairs = []
        for image_id in range(3):
            gt = rng.integers(0, 7, (12, 10))
            pred = gt.copy()
            noise = rng.random(gt.shape) < 0.25
            pred[noise] = rng.integers(0, 7, int(noise.sum()))
            gt_info = [
                {"id": int(i), "category_id": int(rng.integers(1, 7)),
                 "iscrowd": int(rng.random() < 0.15), "area": int((gt == i).sum())}
                for i in np.unique(gt) if i
            ]  # fmt: skip
            pred_info = [
                {"id": int(i), "category_id": int(rng.integers(1, 7))} for i in np.unique(pred) if i
            ]
            pairs.append((image_id, gt, gt_info, pred, pred_info))
        folder = tmp_path / str(trial)
        gt_json = write_dataset(folder, "gt", [(i, g, gi) for i, g, gi, _, _ in pairs], categories)
        pred_json = write_dataset(
            folder, "pred", [(i, p, pi) for i, _, _, p, pi in pairs], categories
        )
        ours = evaluate_coco_panoptic(gt_json, folder / "gt", pred_json, folder / "pred")
        gt_data = json.loads(gt_json.read_text())
        pred_data = json.loads(pred_json.read_text())
        matched = list(zip(gt_data["annotations"], pred_data["annotations"], strict=True))
        stat = evaluation.pq_compute_single_core(
            0, matched, str(folder / "gt"), str(folder / "pred"), categories
        )
        for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
            reference, per_class = stat.pq_average(categories, isthing)
            assert {k: ours[name][k] for k in reference} == reference
            for cid, values in per_class.items():
                assert ours["per_class"][str(cid)] == values
