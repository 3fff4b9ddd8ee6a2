"""Video instance AP / AR (YouTube-VIS), as the youtube-vis API (`ytvoseval.py`) computes them.

Ground truth: a YouTube-VIS JSON (`videos` with `length`, `height`, `width`; `annotations`
with one `segmentations` entry per frame, None where the object is absent, and `areas`;
`categories`). Predictions: the YouTube-VIS results list, {"video_id", "category_id",
"score", "segmentations": [RLE or None per frame]} (`streamseg export --format youtube-vis`).

The score of a prediction against an object is the video IoU: the sum over frames of the
intersections over the sum over frames of the unions (a frame where only one of the two has a
mask adds its area to the union). Everything else is COCO's: greedy matching by score at IoU
0.50:0.05:0.95, 101-point interpolated precision, maxDets 1 / 10 / 100, and object sizes from
the mean area of the frames where the object is present, in ytvis's ranges (small below 128^2
pixels, large above 256^2). pycocotools' `COCOeval` does the matching and accumulation (the
youtube-vis API is a copy of it); this module gives it video IoUs and video areas.
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError
from streamseg.eval.coco_summary import STAT_NAMES

# ytvoseval's Params.areaRng: all, small, medium, large (COCO's are 32^2 / 96^2).
AREA_RANGES = [[0.0, 1e5**2], [0.0, 128.0**2], [128.0**2, 256.0**2], [256.0**2, 1e5**2]]


def _frame_rle(segmentation: Any, height: int, width: int, where: str) -> Any:
    """One frame's mask as a pycocotools RLE (compressed or list counts, or polygons)."""
    from pycocotools import mask as mask_api

    if isinstance(segmentation, list):  # polygons
        return mask_api.merge(mask_api.frPyObjects(segmentation, height, width))
    if not isinstance(segmentation, dict) or "counts" not in segmentation:
        raise UserError(f"{where}: a segmentation is an RLE, polygons or null")
    if list(segmentation.get("size", [])) != [height, width]:
        raise UserError(
            f"{where}: a mask of size {segmentation.get('size')}, the video is {height}x{width}"
        )
    if isinstance(segmentation["counts"], list):
        return mask_api.frPyObjects(segmentation, height, width)
    counts = segmentation["counts"]
    return {
        "size": [height, width],
        "counts": counts.encode() if isinstance(counts, str) else counts,
    }


def _tube(entry: dict[str, Any], video: dict[str, Any], where: str) -> dict[str, Any]:
    """An annotation or prediction with its frames as RLEs and `area` = the mean of its
    non-zero frame areas (ytvoseval's `avg_area`; 0 when it has none)."""
    from pycocotools import mask as mask_api

    segmentations = entry.get("segmentations")
    length = int(video.get("length", len(segmentations or [])))
    if not isinstance(segmentations, list) or len(segmentations) != length:
        raise UserError(f"{where}: needs 'segmentations', one entry per frame ({length})")
    height, width = int(video["height"]), int(video["width"])
    rles = [None if s is None else _frame_rle(s, height, width, where) for s in segmentations]
    areas = entry.get("areas")
    if not isinstance(areas, list) or len(areas) != length:
        areas = [None if r is None else float(mask_api.area(r)) for r in rles]
    present = [float(a) for a in areas if a]
    return {
        **entry,
        "segmentations": rles,
        "area": float(np.mean(present)) if present else 0.0,
        "iscrowd": int(entry.get("iscrowd", 0)),
    }


def video_iou(pred: list[Any], gt: list[Any]) -> float:
    """Sum over frames of intersections / sum over frames of unions (0 when both are empty)."""
    from pycocotools import mask as mask_api

    inter = union = 0.0
    for d, g in zip(pred, gt, strict=True):
        if d is not None and g is not None:
            inter += float(mask_api.area(mask_api.merge([d, g], intersect=True)))
            union += float(mask_api.area(mask_api.merge([d, g], intersect=False)))
        elif d is not None:
            union += float(mask_api.area(d))
        elif g is not None:
            union += float(mask_api.area(g))
    return inter / union if union > 0 else 0.0


def _read(gt_json: str | Path, pred_json: str | Path) -> tuple[list, list, list, list]:
    """(video ids, category ids, ground-truth tubes, predicted tubes), checked."""
    from streamseg.eval.formats import read_json

    gt_data = read_json(gt_json)
    preds = read_json(pred_json)
    if not isinstance(gt_data, dict) or not all(
        isinstance(gt_data.get(key), list) for key in ("videos", "annotations", "categories")
    ):
        raise UserError(f"{gt_json}: needs 'videos', 'annotations' and 'categories' lists")
    videos = {}
    for index, video in enumerate(gt_data["videos"]):
        missing = [k for k in ("id", "height", "width") if k not in video]
        if missing:
            raise UserError(f"{gt_json}: video {index} has no '{missing[0]}'")
        videos[video["id"]] = video
    categories = [c["id"] for c in gt_data["categories"]]
    gts = []
    for index, ann in enumerate(gt_data["annotations"]):
        if ann.get("video_id") not in videos:
            raise UserError(f"{gt_json}: annotation {index} names no video of the file")
        tube = _tube(ann, videos[ann["video_id"]], f"{gt_json}: annotation {index}")
        tube["ignore"] = int(bool(tube["iscrowd"]))
        tube.setdefault("id", index + 1)
        gts.append(tube)
    if isinstance(preds, dict) and isinstance(preds.get("annotations"), list):
        preds = preds["annotations"]
    if not isinstance(preds, list):
        raise UserError(f"{pred_json}: YouTube-VIS results are a list of predictions")
    dts = []
    for index, pred in enumerate(preds):
        where = f"{pred_json}: prediction {index}"
        for key in ("video_id", "category_id", "score", "segmentations"):
            if not isinstance(pred, dict) or key not in pred:
                raise UserError(f"{where} has no '{key}'")
        if pred["video_id"] not in videos:
            raise UserError(f"{where} has video id {pred['video_id']!r}, not in {gt_json}")
        if pred["category_id"] not in categories:
            raise UserError(f"{where} has unknown category id {pred['category_id']!r}")
        tube = _tube(pred, videos[pred["video_id"]], where)
        tube.update(id=index + 1, iscrowd=0)
        dts.append(tube)
    return list(videos), categories, gts, dts


def evaluate_video_instances(gt_json: str | Path, pred_json: str | Path) -> dict[str, float]:
    """YouTube-VIS AP / AR of `pred_json` against `gt_json`: the 12 numbers of ytvoseval's
    summary (`STAT_NAMES`, fractions; -1 where undefined).

    Raises:
        UserError: unreadable files, predictions for unknown videos or categories, masks of
            another size than their video, a frame count other than the video's.
    """
    try:
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise UserError(
            "video instance AP needs pycocotools: pip install 'streamseg[eval]'"
        ) from None
    video_ids, category_ids, gts, dts = _read(gt_json, pred_json)
    if not dts:
        return {name: -1.0 if not gts else 0.0 for name in STAT_NAMES}

    class _VideoEval(COCOeval):
        # COCOeval over videos: its images are the videos, its IoU the video IoU.
        def _prepare(self) -> None:
            self._gts, self._dts = defaultdict(list), defaultdict(list)
            for tube in gts:
                self._gts[tube["video_id"], tube["category_id"]].append(tube)
            for tube in dts:
                self._dts[tube["video_id"], tube["category_id"]].append(tube)
            self.evalImgs, self.eval = defaultdict(list), {}

        def computeIoU(self, imgId: Any, catId: Any) -> Any:  # noqa: N802, N803 - COCOeval's
            gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
            if not gt and not dt:
                return []
            order = np.argsort([-d["score"] for d in dt], kind="mergesort")
            dt = [dt[i] for i in order][: self.params.maxDets[-1]]
            ious = np.zeros((len(dt), len(gt)))
            for i, j in np.ndindex(ious.shape):
                ious[i, j] = video_iou(dt[i]["segmentations"], gt[j]["segmentations"])
            return ious

    evaluator = _VideoEval(iouType="segm")
    evaluator.params.imgIds = video_ids
    evaluator.params.catIds = category_ids
    evaluator.params.areaRng = AREA_RANGES
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats, strict=True)}
