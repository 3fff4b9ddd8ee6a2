"""A minimal panoptic quality (Kirillov et al., CVPR 2019) for periodic evaluation in training.

Follows COCO panopticapi `pq_compute` for the matching rule (same class, IoU > 0.5, IoU with
the ignore/crowd region removed from the union) and for false positives (a prediction counts as
FP unless more than half of it lies in the ignore region). The project's evaluation module
(streamseg/eval/panoptic.py) is the reference; this one keeps training independent of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class PQAccumulator:
    """Per-class TP / FP / FN counts and summed IoU of matched pairs."""

    num_classes: int
    tp: list[int] = field(default_factory=list)
    fp: list[int] = field(default_factory=list)
    fn: list[int] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = self.num_classes
        self.tp, self.fp, self.fn, self.iou = [0] * n, [0] * n, [0] * n, [0.0] * n

    def add(
        self,
        pred_masks: Tensor,
        pred_classes: list[int],
        gt_masks: Tensor,
        gt_classes: list[int],
        ignore: Tensor | None = None,
    ) -> None:
        """One image. pred_masks: (P, H, W) bool, non-overlapping; gt_masks: (G, H, W) bool;
        ignore: (H, W) bool pixels that are neither counted nor penalized."""
        if ignore is None:
            ignore = torch.zeros(gt_masks.shape[-2:], dtype=torch.bool, device=gt_masks.device)
        pred = pred_masks.flatten(1).float()
        gt = gt_masks.flatten(1).float()
        inter = pred @ gt.T  # (P, G)
        pred_area = pred.sum(1)
        pred_in_ignore = pred @ ignore.flatten().float()
        union = pred_area[:, None] + gt.sum(1)[None] - inter - pred_in_ignore[:, None]
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
        matched_pred, matched_gt = set(), set()
        for p in range(len(pred_classes)):
            for g in range(len(gt_classes)):
                if pred_classes[p] == gt_classes[g] and float(iou[p, g]) > 0.5:
                    matched_pred.add(p)
                    matched_gt.add(g)
                    self.tp[gt_classes[g]] += 1
                    self.iou[gt_classes[g]] += float(iou[p, g])
        for g, cls in enumerate(gt_classes):
            if g not in matched_gt:
                self.fn[cls] += 1
        for p, cls in enumerate(pred_classes):
            if p in matched_pred or pred_area[p] == 0:
                continue
            if float(pred_in_ignore[p]) / float(pred_area[p]) > 0.5:
                continue
            self.fp[cls] += 1

    def merge(self, other: PQAccumulator) -> None:
        for name in ("tp", "fp", "fn", "iou"):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, [a + b for a, b in zip(mine, theirs, strict=True)])

    def summary(self, is_thing: list[bool] | None = None) -> dict[str, float]:
        """PQ, SQ, RQ (x100) averaged over classes that occur (TP + FP + FN > 0); with
        `is_thing`, also PQ_th and PQ_st."""

        def average(keep: list[int]) -> tuple[float, float, float]:
            keep = [c for c in keep if self.tp[c] + self.fp[c] + self.fn[c] > 0]
            if not keep:
                return 0.0, 0.0, 0.0
            pq = sq = rq = 0.0
            for c in keep:
                tp, fp, fn = self.tp[c], self.fp[c], self.fn[c]
                denom = tp + 0.5 * fp + 0.5 * fn
                sq_c = self.iou[c] / tp if tp else 0.0
                rq_c = tp / denom
                pq += sq_c * rq_c
                sq += sq_c
                rq += rq_c
            n = len(keep)
            return 100 * pq / n, 100 * sq / n, 100 * rq / n

        pq, sq, rq = average(list(range(self.num_classes)))
        out = {"PQ": pq, "SQ": sq, "RQ": rq}
        if is_thing is not None:
            out["PQ_th"] = average([c for c in range(self.num_classes) if is_thing[c]])[0]
            out["PQ_st"] = average([c for c in range(self.num_classes) if not is_thing[c]])[0]
        return out
