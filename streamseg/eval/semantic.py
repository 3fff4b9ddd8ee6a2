"""Semantic segmentation metrics: mIoU, per-class IoU, pixel accuracy, with an ignore label.

Definitions as detectron2's `SemSegEvaluator` (facebookresearch/detectron2,
`evaluation/sem_seg_evaluation.py`): a (C+1) x (C+1) confusion matrix whose extra row/column
collects ignored ground truth and out-of-range predictions; ground-truth pixels equal to the
ignore label are not scored. A predicted value outside [0, C) (e.g. an "ignore" prediction)
on a scored pixel counts as a false negative of the true class (detectron2's predictions come
from an argmax and never are out of range; files can be). IoU_c =
TP / (TP + FP + FN) over pixels with a scored label; mIoU averages over classes whose union
(ground truth + prediction) is non-empty; pixel accuracy = TP summed / scored pixels.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError


class SemanticConfusion:
    """Streaming confusion matrix. `update` once per image, `result` at any time.

    Args:
        num_classes: C; labels 0..C-1 are scored.
        ignore_label: ground-truth value that is not scored (e.g. 255).
    """

    def __init__(self, num_classes: int, ignore_label: int = 255) -> None:
        if num_classes < 1:
            raise UserError(f"--num-classes: must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)

    def update(self, gt: np.ndarray, pred: np.ndarray, name: str = "prediction") -> None:
        """Add one image. gt, pred: (H, W) integer labels of the same shape."""
        if gt.shape != pred.shape:
            raise UserError(
                f"{name}: size {pred.shape[0]}x{pred.shape[1]} differs from the ground truth's "
                f"{gt.shape[0]}x{gt.shape[1]}"
            )
        c = self.num_classes
        gt = gt.astype(np.int64)
        pred = pred.astype(np.int64)
        # ground truth: ignore -> row C (dropped below); anything else out of range is an error
        bad = (gt != self.ignore_label) & ((gt < 0) | (gt >= c))
        if bad.any():
            value = int(gt[bad][0])
            raise UserError(f"{name}: ground-truth label {value} outside 0..{c - 1}")
        gt = np.where(gt == self.ignore_label, c, gt)
        pred = np.where((pred < 0) | (pred >= c), c, pred)
        self.matrix += np.bincount((gt * (c + 1) + pred).ravel(), minlength=(c + 1) ** 2).reshape(
            c + 1, c + 1
        )

    def result(self) -> dict[str, Any]:
        """{"miou", "pixel_acc", "per_class_iou": {"<class>": IoU or None if absent}}."""
        c = self.num_classes
        scored = self.matrix[:c]  # rows of scored ground truth
        tp = np.diag(self.matrix)[:c].astype(np.float64)
        pos_gt = scored.sum(axis=1).astype(np.float64)
        pos_pred = scored[:, :c].sum(axis=0).astype(np.float64)
        union = pos_gt + pos_pred - tp
        valid = union > 0
        iou = np.divide(tp, union, out=np.zeros_like(tp), where=valid)
        total = pos_gt.sum()
        return {
            "miou": float(iou[valid].mean()) if valid.any() else 0.0,
            "pixel_acc": float(tp.sum() / total) if total > 0 else 0.0,
            "per_class_iou": {str(k): (float(iou[k]) if valid[k] else None) for k in range(c)},
        }


def iter_label_pairs(gt_dir: str | Path, pred_dir: str | Path) -> Iterator[tuple[Path, Path]]:
    """(gt PNG, pred PNG) for every PNG in `gt_dir` (recursively), same relative path."""
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for folder in (gt_dir, pred_dir):
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder")
    files = sorted(gt_dir.rglob("*.png"))
    if not files:
        raise UserError(f"{gt_dir}: no PNG label files")
    for gt_png in files:
        yield gt_png, pred_dir / gt_png.relative_to(gt_dir)


def read_label_png(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A single-channel label PNG (8 or 16 bit, or palette indices). Returns (H, W) int64."""
    from streamseg.panoptic_png import read_png

    array = read_png(path, size)
    if array.ndim != 2:
        raise UserError(f"{path}: a label PNG must have one channel, this one has {array.shape[2]}")
    return array.astype(np.int64)


def evaluate_label_pngs(
    gt_dir: str | Path,
    pred_dir: str | Path,
    num_classes: int | None = None,
    ignore_label: int = 255,
) -> dict[str, Any]:
    """mIoU of label PNG folders (class index per pixel). Without `num_classes`, C = the largest
    non-ignored ground-truth label + 1 (one extra pass over the ground truth)."""
    pairs = list(iter_label_pairs(gt_dir, pred_dir))
    if num_classes is None:
        largest = -1
        for gt_png, _ in pairs:
            gt = read_label_png(gt_png)
            kept = gt[gt != ignore_label]
            if kept.size:
                largest = max(largest, int(kept.max()))
        num_classes = largest + 1
        if num_classes < 1:
            raise UserError(f"{gt_dir}: every pixel is the ignore label; give --num-classes")
    metric = SemanticConfusion(num_classes, ignore_label)
    for gt_png, pred_png in pairs:
        gt = read_label_png(gt_png)
        metric.update(gt, read_label_png(pred_png, size=gt.shape), name=str(pred_png))
    return metric.result()


def panoptic_to_semantic(
    ids: np.ndarray,
    segments: Mapping[int, Mapping[str, Any]],
    class_index: Mapping[int, int],
    ignore_label: int,
) -> np.ndarray:
    """Panoptic ids -> class indices; VOID, unknown ids and crowd-free unknown classes -> ignore.

    ids: (H, W) panoptic ids; class_index: category id -> 0..C-1. Returns (H, W) int64.
    """
    out = np.full(ids.shape, ignore_label, dtype=np.int64)
    for sid, info in segments.items():
        category = int(info["category_id"])
        if category in class_index:
            out[ids == sid] = class_index[category]
    return out


def evaluate_panoptic_as_semantic(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
    ignore_label: int = 255,
) -> dict[str, Any]:
    """mIoU from COCO-panoptic inputs: classes = the ground truth's categories in file order
    (per_class_iou keyed by category id)."""
    from streamseg.eval.formats import read_panoptic_images

    categories, images = read_panoptic_images(gt_json, gt_dir, pred_json, pred_dir)
    class_index = {cid: i for i, cid in enumerate(categories)}
    if ignore_label < len(class_index):
        raise UserError(f"--ignore: {ignore_label} is a class index (use >= {len(class_index)})")
    metric = SemanticConfusion(len(class_index), ignore_label)
    for image in images:
        for sid, info in image.pred_segments.items():
            if int(info["category_id"]) not in class_index:
                raise UserError(
                    f"{image.pred_name}: segment id {sid} has unknown category id "
                    f"{info['category_id']}"
                )
        gt = panoptic_to_semantic(image.gt_ids, image.gt_segments, class_index, ignore_label)
        pred = panoptic_to_semantic(image.pred_ids, image.pred_segments, class_index, ignore_label)
        metric.update(gt, pred, name=image.pred_name)
    result = metric.result()
    ids = list(categories)
    result["per_class_iou"] = {str(ids[int(k)]): v for k, v in result["per_class_iou"].items()}
    return result
