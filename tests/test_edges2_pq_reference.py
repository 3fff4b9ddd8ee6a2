"""An independent PQ, written here from its definition (Kirillov et al., "Panoptic
Segmentation", CVPR 2019) with panopticapi's rules (`pq_compute_single_core`: VOID pixels,
crowd regions, the 0.5 void/crowd share of an unmatched prediction), cross-checking
`streamseg/eval/panoptic.py` on random images. Always runs: it needs no reference package."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from streamseg.eval.panoptic import PanopticQuality

VOID = 0


def reference_image(gt, gt_info, pred, pred_info, tp, fp, fn, iou_sum) -> None:  # noqa: ANN001
    """Add one image's TP / FP / FN counts and matched IoUs per category (dicts of lists)."""
    gt_area = {int(k): int(v) for k, v in zip(*np.unique(gt, return_counts=True), strict=True)}
    pred_area = {int(k): int(v) for k, v in zip(*np.unique(pred, return_counts=True), strict=True)}
    gt_segments = {s["id"]: s for s in gt_info}
    pred_segments = {s["id"]: s for s in pred_info}
    overlap: dict[tuple[int, int], int] = defaultdict(int)
    for g, p in zip(gt.ravel().tolist(), pred.ravel().tolist(), strict=True):
        overlap[g, p] += 1
    gt_matched, pred_matched = set(), set()
    for (g, p), inter in overlap.items():
        if g not in gt_segments or p not in pred_segments:
            continue
        if (
            gt_segments[g]["iscrowd"]
            or gt_segments[g]["category_id"] != pred_segments[p]["category_id"]
        ):
            continue
        # the prediction's pixels on VOID are not counted in the union
        union = pred_area[p] + gt_area[g] - inter - overlap.get((VOID, p), 0)
        iou = inter / union
        if iou > 0.5:
            category = gt_segments[g]["category_id"]
            tp[category] += 1
            iou_sum[category] += iou
            gt_matched.add(g)
            pred_matched.add(p)
    crowd_of_category = {}
    for g, segment in gt_segments.items():
        if g in gt_matched:
            continue
        if segment["iscrowd"]:
            crowd_of_category[segment["category_id"]] = g  # the last crowd region, as panopticapi
            continue
        fn[segment["category_id"]] += 1
    for p, segment in pred_segments.items():
        if p in pred_matched:
            continue
        ignored = overlap.get((VOID, p), 0)
        if segment["category_id"] in crowd_of_category:
            ignored += overlap.get((crowd_of_category[segment["category_id"]], p), 0)
        if ignored / pred_area[p] > 0.5:
            continue  # mostly on VOID or on a crowd region of its category: not a FP
        fp[segment["category_id"]] += 1


def reference_average(categories, tp, fp, fn, iou_sum, isthing) -> dict:  # noqa: ANN001
    """PQ = sum IoU / (TP + FP/2 + FN/2), averaged over the categories that occur."""
    totals = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    n = 0
    for category, entry in categories.items():
        if isthing is not None and bool(entry["isthing"]) != isthing:
            continue
        count = tp[category] + fp[category] + fn[category]
        if count == 0:
            continue
        n += 1
        denominator = tp[category] + 0.5 * fp[category] + 0.5 * fn[category]
        totals["pq"] += iou_sum[category] / denominator
        totals["sq"] += iou_sum[category] / tp[category] if tp[category] else 0.0
        totals["rq"] += tp[category] / denominator
    return {key: value / n if n else 0.0 for key, value in totals.items()} | {"n": n}


@pytest.mark.parametrize("seed", range(6))
def test_panoptic_quality_equals_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    categories = {c: {"id": c, "name": str(c), "isthing": int(c < 4)} for c in range(1, 7)}
    ours = PanopticQuality(categories)
    tp, fp, fn, iou_sum = (defaultdict(int), defaultdict(int), defaultdict(int),
                           defaultdict(float))  # fmt: skip
    for _ in range(4):
        # blocky ids (upsampled 3x) so that many segments match above IoU 0.5
        gt = np.kron(rng.integers(0, 8, (5, 6)), np.ones((3, 3), np.int64))
        pred = gt.copy()
        noise = rng.random(gt.shape) < 0.3
        pred[noise] = rng.integers(0, 9, int(noise.sum()))
        gt_info = [
            {"id": int(i), "category_id": int(rng.integers(1, 7)),
             "iscrowd": int(rng.random() < 0.2)}
            for i in np.unique(gt) if i != VOID
        ]  # fmt: skip
        # predictions mostly keep the ground truth's category (true positives occur)
        gt_category = {s["id"]: s["category_id"] for s in gt_info}
        pred_info = [
            {"id": int(i), "category_id": gt_category.get(int(i), int(rng.integers(1, 7)))
             if rng.random() < 0.8 else int(rng.integers(1, 7))}
            for i in np.unique(pred) if i != VOID
        ]  # fmt: skip
        ours.update(
            gt.astype(np.uint32),
            {s["id"]: s for s in gt_info},
            pred.astype(np.uint32),
            {s["id"]: s for s in pred_info},
        )
        reference_image(gt, gt_info, pred, pred_info, tp, fp, fn, iou_sum)
    result = ours.result()
    assert sum(tp.values()) > 0 and sum(fp.values()) + sum(fn.values()) > 0  # a real mix
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        expected = reference_average(categories, tp, fp, fn, iou_sum, isthing)
        assert result[name]["n"] == expected["n"]
        for key in ("pq", "sq", "rq"):
            assert result[name][key] == pytest.approx(expected[key], rel=1e-12, abs=1e-12)
