"""Panoptic quality PQ = SQ x RQ (Kirillov et al., CVPR 2019), as COCO panopticapi computes it.

Definitions follow cocodataset/panopticapi `panopticapi/evaluation.py` (`pq_compute`):
- a ground-truth and a predicted segment of the same category match when IoU > 0.5, where the
  union leaves out the prediction's pixels on VOID (id 0); crowd ground truth never matches;
- an unmatched non-crowd ground-truth segment is a false negative;
- an unmatched prediction is a false positive unless more than half of it lies on VOID plus
  the crowd region of its own category (the last crowd segment of that category in the
  ground truth's `segments_info`, as in the reference);
- ground-truth areas come from the JSON `area`, predicted areas from the PNG;
- per category PQ = sum IoU / (TP + FP/2 + FN/2), SQ = sum IoU / TP, RQ = TP / (TP + FP/2 +
  FN/2); All / Things / Stuff average over the categories with TP + FP + FN > 0.
Statistics accumulate one image at a time (`PanopticQuality.update`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError

OFFSET = 256 * 256 * 256  # panoptic ids are < 2^24 (3 PNG channels)
VOID = 0


@dataclass
class CategoryStat:
    """Running sums of one category: matched IoU, true/false positives, false negatives."""

    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0


@dataclass
class FrameSegments:
    """What the matching needs of one image (or one tube window of a video).

    Attributes:
        gt: ground-truth segment id -> {"category_id", "iscrowd", "area"} (file order).
        pred: predicted segment id -> {"category_id", "area"} (area = PNG pixel count).
        intersections: (gt id, pred id) -> pixel count, over every pixel pair present.
    """

    gt: dict[int, dict[str, Any]]
    pred: dict[int, dict[str, Any]]
    intersections: dict[tuple[int, int], int] = field(default_factory=dict)


def count_intersections(gt_ids: np.ndarray, pred_ids: np.ndarray) -> dict[tuple[int, int], int]:
    """Pixel counts of every (gt id, pred id) pair. gt_ids, pred_ids: (H, W) ints < 2^24."""
    joint = gt_ids.astype(np.uint64) * OFFSET + pred_ids.astype(np.uint64)
    labels, counts = np.unique(joint, return_counts=True)
    return {
        (int(label // OFFSET), int(label % OFFSET)): int(count)
        for label, count in zip(labels, counts, strict=True)
    }


def summarize_frame(
    gt_ids: np.ndarray,
    gt_segments: Mapping[int, Mapping[str, Any]],
    pred_ids: np.ndarray,
    pred_segments: Mapping[int, Mapping[str, Any]],
    categories: Mapping[int, Any],
    gt_name: str = "ground truth",
    pred_name: str = "prediction",
) -> FrameSegments:
    """Check one image's prediction against its JSON and collect areas and intersections.

    Args:
        gt_ids, pred_ids: (H, W) panoptic ids (0 = VOID).
        gt_segments, pred_segments: segment id -> segments_info entry.
        categories: the ground truth's categories (id -> entry).
        gt_name, pred_name: file names for error messages.

    Raises:
        UserError: sizes differ; a predicted id in the PNG but not the JSON or the reverse; an
            unknown category id.
    """
    if gt_ids.shape != pred_ids.shape:
        raise UserError(
            f"{pred_name}: size {pred_ids.shape[0]}x{pred_ids.shape[1]} differs from "
            f"{gt_name}'s {gt_ids.shape[0]}x{gt_ids.shape[1]}"
        )
    intersections = count_intersections(gt_ids, pred_ids)
    pred_area: dict[int, int] = {}
    gt_area: dict[int, int] = {}
    for (g, p), count in intersections.items():
        pred_area[p] = pred_area.get(p, 0) + count
        gt_area[g] = gt_area.get(g, 0) + count
    pred: dict[int, dict[str, Any]] = {}
    for label in sorted(pred_area):
        if label not in pred_segments:
            if label == VOID:
                continue
            raise UserError(f"{pred_name}: segment id {label} is in the PNG but not in the JSON")
        category = int(pred_segments[label]["category_id"])
        if category not in categories:
            raise UserError(f"{pred_name}: segment id {label} has unknown category id {category}")
        pred[label] = {"category_id": category, "area": pred_area[label]}
    missing = [s for s in pred_segments if s not in pred]
    if missing:
        raise UserError(f"{pred_name}: segment ids {missing} are in the JSON but not in the PNG")
    gt: dict[int, dict[str, Any]] = {}
    for label, entry in gt_segments.items():
        category = int(entry["category_id"])
        if category not in categories:
            raise UserError(f"{gt_name}: segment id {label} has unknown category id {category}")
        # The reference trusts the JSON area; a JSON without one gets the PNG's count.
        area = entry.get("area")
        gt[int(label)] = {
            "category_id": category,
            "iscrowd": int(entry.get("iscrowd", 0)),
            "area": int(area) if area is not None else gt_area.get(int(label), 0),
        }
    return FrameSegments(gt=gt, pred=pred, intersections=intersections)


def match_segments(frame: FrameSegments, stats: dict[int, CategoryStat]) -> None:
    """Add one image's (or tube window's) TP / FP / FN and matched IoU to `stats` in place."""
    gt, pred, inter = frame.gt, frame.pred, frame.intersections
    gt_matched: set[int] = set()
    pred_matched: set[int] = set()
    # Sorted pair order = the reference's np.unique order, so float sums agree bit for bit.
    for g, p in sorted(inter):
        if g not in gt or p not in pred:
            continue
        if gt[g]["iscrowd"] == 1 or gt[g]["category_id"] != pred[p]["category_id"]:
            continue
        intersection = inter[(g, p)]
        union = pred[p]["area"] + gt[g]["area"] - intersection - inter.get((VOID, p), 0)
        iou = intersection / union
        if iou > 0.5:
            stat = stats.setdefault(gt[g]["category_id"], CategoryStat())
            stat.tp += 1
            stat.iou += iou
            gt_matched.add(g)
            pred_matched.add(p)
    crowd_by_category: dict[int, int] = {}
    for g, info in gt.items():
        if g in gt_matched:
            continue
        if info["iscrowd"] == 1:
            crowd_by_category[info["category_id"]] = g  # the last one wins, as the reference
            continue
        stats.setdefault(info["category_id"], CategoryStat()).fn += 1
    for p, info in pred.items():
        if p in pred_matched:
            continue
        ignored = inter.get((VOID, p), 0)
        crowd = crowd_by_category.get(info["category_id"])
        if crowd is not None:
            ignored += inter.get((crowd, p), 0)
        if ignored / info["area"] > 0.5:
            continue
        stats.setdefault(info["category_id"], CategoryStat()).fp += 1


def average_pq(
    stats: Mapping[int, CategoryStat],
    categories: Mapping[int, Mapping[str, Any]],
    isthing: bool | None,
) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """Average PQ / SQ / RQ over categories that occur (TP + FP + FN > 0).

    Args:
        isthing: None = all categories, True = things, False = stuff.

    Returns:
        ({"pq", "sq", "rq", "n"}, {category id: {"pq", "sq", "rq"}}); with no category
        occurring the averages are 0 and n = 0 (the reference divides by zero there).
    """
    pq = sq = rq = 0.0
    n = 0
    per_class: dict[int, dict[str, float]] = {}
    for label, info in categories.items():
        if isthing is not None and (int(info.get("isthing", 0)) == 1) != isthing:
            continue
        stat = stats.get(label, CategoryStat())
        if stat.tp + stat.fp + stat.fn == 0:
            per_class[label] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
            continue
        n += 1
        denominator = stat.tp + 0.5 * stat.fp + 0.5 * stat.fn
        pq_class = stat.iou / denominator
        sq_class = stat.iou / stat.tp if stat.tp != 0 else 0.0
        rq_class = stat.tp / denominator
        per_class[label] = {"pq": pq_class, "sq": sq_class, "rq": rq_class}
        pq += pq_class
        sq += sq_class
        rq += rq_class
    if n == 0:
        return {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}, per_class
    return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}, per_class


def summarize_stats(
    stats: Mapping[int, CategoryStat], categories: Mapping[int, Mapping[str, Any]]
) -> dict[str, Any]:
    """The report: {"All", "Things", "Stuff": {"pq", "sq", "rq", "n"}, "per_class": {"<id>":
    {"pq", "sq", "rq"}}}, values as fractions (panopticapi's convention)."""
    result: dict[str, Any] = {}
    per_class_all: dict[int, dict[str, float]] = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        result[name], per_class = average_pq(stats, categories, isthing)
        if isthing is None:
            per_class_all = per_class
    result["per_class"] = {str(k): v for k, v in per_class_all.items()}
    return result


class PanopticQuality:
    """Streaming PQ: `update` once per image, `result` at any time.

    Args:
        categories: category id -> entry with `isthing` (the ground truth's `categories`).
    """

    def __init__(self, categories: Mapping[int, Mapping[str, Any]]) -> None:
        self.categories = dict(categories)
        self.stats: dict[int, CategoryStat] = {}
        self.images = 0

    def update(
        self,
        gt_ids: np.ndarray,
        gt_segments: Mapping[int, Mapping[str, Any]],
        pred_ids: np.ndarray,
        pred_segments: Mapping[int, Mapping[str, Any]],
        gt_name: str = "ground truth",
        pred_name: str = "prediction",
    ) -> None:
        """Add one image. ids: (H, W) panoptic ids; segments: id -> segments_info entry."""
        frame = summarize_frame(
            gt_ids, gt_segments, pred_ids, pred_segments, self.categories, gt_name, pred_name
        )
        match_segments(frame, self.stats)
        self.images += 1

    def result(self) -> dict[str, Any]:
        return summarize_stats(self.stats, self.categories)


def accumulate_coco_panoptic(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
) -> PanopticQuality:
    """The PQ statistics of a COCO-panoptic prediction (JSON + PNG folder) against the ground
    truth, images read and scored one at a time; `.result()` gives the report."""
    from streamseg.eval.formats import read_panoptic_images

    categories, images = read_panoptic_images(gt_json, gt_dir, pred_json, pred_dir)
    metric = PanopticQuality(categories)
    for image in images:
        metric.update(
            image.gt_ids,
            image.gt_segments,
            image.pred_ids,
            image.pred_segments,
            gt_name=image.gt_name,
            pred_name=image.pred_name,
        )
    return metric


def evaluate_coco_panoptic(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
) -> dict[str, Any]:
    """PQ of a COCO-panoptic prediction (JSON + PNG folder) against the ground truth.

    Returns `summarize_stats`' report.
    """
    return accumulate_coco_panoptic(gt_json, gt_dir, pred_json, pred_dir).result()
