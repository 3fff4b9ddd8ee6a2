"""Instance segmentation AP (COCO `segm`) through pycocotools; YouTube-VIS ground truth
goes to video instance AP (eval/video_instance.py).

Ground truth: a COCO instances JSON (`images`, `annotations` with RLE or polygon
`segmentation`, `categories`). Predictions: a COCO results JSON, a list of
{"image_id", "category_id", "segmentation": RLE, "score"}. pycocotools is imported inside the
function (optional dependency `streamseg[eval]`).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from streamseg.errors import UserError
from streamseg.eval.coco_summary import STAT_NAMES


def evaluate_instances(gt_json: str | Path, pred_json: str | Path) -> dict[str, float]:
    """COCO segm AP / AR of `pred_json` against `gt_json` (fractions; -1 where undefined).

    Raises:
        UserError: unreadable files, predictions for unknown images or categories.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise UserError("instance AP needs pycocotools: pip install 'streamseg[eval]'") from None
    from streamseg.eval.formats import read_json

    gt_data = read_json(gt_json)
    if isinstance(gt_data, dict) and isinstance(gt_data.get("videos"), list):
        from streamseg.eval.video_instance import evaluate_video_instances

        return evaluate_video_instances(gt_json, pred_json)
    pred_data = read_json(pred_json)
    _refuse_youtube_vis(pred_data, pred_json)
    if not isinstance(gt_data, dict) or not all(
        isinstance(gt_data.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise UserError(f"{gt_json}: needs 'images', 'annotations' and 'categories' lists")
    for kind, entries, keys in (
        ("image", gt_data["images"], ("id",)),
        ("category", gt_data["categories"], ("id",)),
        ("annotation", gt_data["annotations"], ("id", "image_id", "category_id", "segmentation")),
    ):
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and "segments_info" in entry:
                raise UserError(
                    f"{gt_json}: a COCO panoptic file, not COCO instances; instance AP needs "
                    "instances ground truth (for panoptic files: streamseg eval panoptic)"
                )
            missing = [key for key in keys if not isinstance(entry, dict) or key not in entry]
            if missing:
                raise UserError(f"{gt_json}: {kind} {index} has no '{missing[0]}'")
    if isinstance(pred_data, dict) and isinstance(pred_data.get("annotations"), list):
        pred_data = pred_data["annotations"]
    if not isinstance(pred_data, list):
        raise UserError(f"{pred_json}: a COCO results file is a list of detections")
    image_ids = {image["id"] for image in gt_data["images"]}
    category_ids = {category["id"] for category in gt_data["categories"]}
    for index, det in enumerate(pred_data):
        for key in ("image_id", "category_id", "segmentation", "score"):
            if key not in det:
                raise UserError(f"{pred_json}: detection {index} has no '{key}'")
        if det["image_id"] not in image_ids:
            raise UserError(
                f"{pred_json}: detection {index} has image id {det['image_id']!r}, not in {gt_json}"
            )
        if det["category_id"] not in category_ids:
            raise UserError(
                f"{pred_json}: detection {index} has unknown category id {det['category_id']!r}"
            )
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = gt_data
        coco_gt.createIndex()
        if not pred_data:
            return {name: -1.0 if not gt_data["annotations"] else 0.0 for name in STAT_NAMES}
        coco_dt = coco_gt.loadRes([dict(det) for det in pred_data])
        evaluator = COCOeval(coco_gt, coco_dt, iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats, strict=True)}


def _refuse_youtube_vis(pred_data: Any, pred_json: str | Path) -> None:
    """YouTube-VIS results scored against COCO images: say so rather than report a missing
    key (YouTube-VIS ground truth is scored by eval/video_instance.py)."""
    if isinstance(pred_data, list) and any(
        isinstance(det, dict) and "video_id" in det and "segmentations" in det for det in pred_data
    ):
        raise UserError(
            f"{pred_json}: YouTube-VIS results ('video_id', 'segmentations') against COCO "
            "images; video instance AP needs YouTube-VIS ground truth ('videos')"
        )
