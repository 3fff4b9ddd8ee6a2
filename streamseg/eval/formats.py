"""Readers for the evaluation formats, with one clear `UserError` per bad input.

COCO panoptic (https://cocodataset.org/#format-data): a JSON with `annotations` (one per image:
`image_id`, `file_name`, `segments_info`) and `categories`, plus a folder of PNGs whose pixel id
is R + 256 G + 256^2 B (0 = void; read by streamseg/panoptic_png.py).

VIPSeg (Miao et al., CVPR 2022, `panoptic_gt_VIPSeg.json`): a JSON with `videos` and
`categories`; the frames of a video are either `videos[i].images` paired by position with the
top-level `annotations[j].annotations` of the same `video_id` (the official layout), or
`videos[i].annotations` directly (streamseg's shapes-world writer). A prediction may also be
just the top-level `annotations` (no `videos`, no `categories`): the `pred.json` that VIPSeg's
`eval_vpq_vspw.py` reads, which takes videos and categories from the ground truth; there a
frame without a `file_name` uses the ground-truth frame's at the same position. A frame's PNG
is DIR/<video_id>/<file_name>.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamseg.errors import UserError


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing or malformed file is a UserError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a readable JSON file ({error})") from None


def read_categories(data: Any, path: str | Path) -> dict[int, dict[str, Any]]:
    """`categories` of a COCO/VIPSeg JSON as {id: entry}, in file order."""
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise UserError(f"{path}: no 'categories' list")
    categories: dict[int, dict[str, Any]] = {}
    for entry in data["categories"]:
        if not isinstance(entry, dict) or "id" not in entry:
            raise UserError(f"{path}: a category without an 'id': {entry!r}")
        categories[int(entry["id"])] = entry
    return categories


def segments_by_id(annotation: dict[str, Any], path: str | Path) -> dict[int, dict[str, Any]]:
    """`segments_info` as {id: copy of the entry}; repeated ids sum their `area` (VIPSeg rule)."""
    segments: dict[int, dict[str, Any]] = {}
    info = annotation.get("segments_info")
    if not isinstance(info, list):
        raise UserError(f"{path}: annotation {_name(annotation)} has no 'segments_info' list")
    for entry in info:
        if "id" not in entry or "category_id" not in entry:
            raise UserError(
                f"{path}: a segment without 'id' or 'category_id' in {_name(annotation)}"
            )
        sid = int(entry["id"])
        if sid in segments:
            segments[sid]["area"] = segments[sid].get("area", 0) + entry.get("area", 0)
        else:
            segments[sid] = dict(entry)
    return segments


def _name(annotation: dict[str, Any]) -> str:
    return str(annotation.get("file_name", annotation.get("image_id", "?")))


@dataclass(frozen=True)
class ImagePair:
    """One image's ground truth and prediction annotations (COCO panoptic)."""

    gt: dict[str, Any]
    pred: dict[str, Any]


def pair_coco_panoptic(
    gt_data: Any, gt_path: str | Path, pred_data: Any, pred_path: str | Path
) -> list[ImagePair]:
    """Pair every ground-truth annotation with the prediction of the same `image_id`
    (as panopticapi `pq_compute`: a ground-truth image without a prediction is an error)."""
    for data, path in ((gt_data, gt_path), (pred_data, pred_path)):
        if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
            raise UserError(f"{path}: no 'annotations' list (COCO panoptic format)")
    predictions: dict[Any, dict[str, Any]] = {}
    for annotation in pred_data["annotations"]:
        if "image_id" not in annotation or "file_name" not in annotation:
            raise UserError(f"{pred_path}: an annotation without 'image_id' or 'file_name'")
        predictions[annotation["image_id"]] = annotation
    pairs = []
    for annotation in gt_data["annotations"]:
        if "image_id" not in annotation or "file_name" not in annotation:
            raise UserError(f"{gt_path}: an annotation without 'image_id' or 'file_name'")
        image_id = annotation["image_id"]
        if image_id not in predictions:
            raise UserError(
                f"{pred_path}: no prediction for image id {image_id!r} of {gt_path} "
                "(image ids must match)"
            )
        pairs.append(ImagePair(gt=annotation, pred=predictions[image_id]))
    return pairs


@dataclass(frozen=True)
class PanopticImage:
    """One image of a COCO-panoptic prediction and its ground truth, read from the PNGs."""

    gt_ids: Any  # (H, W) uint32 segment ids
    gt_segments: dict[int, dict[str, Any]]  # segment id -> segments_info entry
    pred_ids: Any  # (H, W) uint32, resized to the ground truth's size if needed
    pred_segments: dict[int, dict[str, Any]]
    gt_name: str  # the PNG files, for messages
    pred_name: str


def read_panoptic_images(
    gt_json: str | Path, gt_dir: str | Path, pred_json: str | Path, pred_dir: str | Path
) -> tuple[dict[int, dict[str, Any]], Iterator[PanopticImage]]:
    """The ground truth's categories, and its images paired with the predictions, read one
    at a time (the loop every COCO-panoptic metric runs: PQ, mIoU, seen/unseen PQ).

    Both JSON files are read and paired before the first image is yielded, so a missing
    prediction fails before any PNG is decoded.
    """
    from streamseg.panoptic_png import read_panoptic_png

    gt_data = read_json(gt_json)
    pred_data = read_json(pred_json)
    categories = read_categories(gt_data, gt_json)
    pairs = pair_coco_panoptic(gt_data, gt_json, pred_data, pred_json)

    def images() -> Iterator[PanopticImage]:
        for pair in pairs:
            gt_png = Path(gt_dir) / pair.gt["file_name"]
            pred_png = Path(pred_dir) / pair.pred["file_name"]
            gt_ids = read_panoptic_png(gt_png)
            yield PanopticImage(
                gt_ids=gt_ids,
                gt_segments=segments_by_id(pair.gt, gt_json),
                pred_ids=read_panoptic_png(pred_png, size=gt_ids.shape),
                pred_segments=segments_by_id(pair.pred, pred_json),
                gt_name=str(gt_png),
                pred_name=str(pred_png),
            )

    return categories, images()


@dataclass(frozen=True)
class VideoFrames:
    """One video: its id and its per-frame annotations (`file_name`, `segments_info`)."""

    video_id: str
    frames: list[dict[str, Any]]


def _top_annotations(data: dict[str, Any], path: str | Path, strict: bool) -> dict[str, list]:
    """Top-level `annotations` as {video_id: frames}, in file order. `strict` (no `videos` to
    fall back on): every entry must name its video and list its frames."""
    top: dict[str, list] = {}
    for entry in data.get("annotations") or []:
        if isinstance(entry, dict) and "video_id" in entry:
            frames = entry.get("annotations")
            if strict and not isinstance(frames, list):
                raise UserError(f"{path}: video {entry['video_id']!r} has no 'annotations' list")
            top[str(entry["video_id"])] = frames or []
        elif strict:
            raise UserError(f"{path}: an 'annotations' entry without 'video_id'")
    return top


def _video_entries(data: Any, path: str | Path) -> tuple[list[Any], dict[str, list]]:
    """The `videos` list and the top-level frames by video; without `videos`, the videos are
    those of `annotations` (VIPSeg's prediction layout)."""
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a JSON object with 'videos' or 'annotations' (VIPSeg format)")
    if isinstance(data.get("videos"), list):
        return data["videos"], _top_annotations(data, path, strict=False)
    if isinstance(data.get("annotations"), list):
        top = _top_annotations(data, path, strict=True)
        return [{"video_id": video_id} for video_id in top], top
    raise UserError(f"{path}: no 'videos' or 'annotations' list (VIPSeg format)")


def iter_vipseg_videos(
    data: Any, path: str | Path, need_file_names: bool = True
) -> Iterator[VideoFrames]:
    """The videos of a VIPSeg JSON (any layout, see the module docstring), in file order.
    `need_file_names=False` lets frames go without `file_name` (a prediction borrows the
    ground truth's)."""
    videos, top = _video_entries(data, path)
    for video in videos:
        if not isinstance(video, dict) or "video_id" not in video:
            raise UserError(f"{path}: a video without 'video_id'")
        video_id = str(video["video_id"])
        if isinstance(video.get("annotations"), list):
            frames = [dict(a) for a in video["annotations"]]
        elif video_id in top:
            frames = [dict(a) for a in top[video_id]]
            images = video.get("images") or []
            for frame, image in zip(frames, images, strict=False):
                frame.setdefault("file_name", image.get("file_name"))
        else:
            raise UserError(f"{path}: video {video_id!r} has no annotations")
        for frame in frames:
            if need_file_names and not frame.get("file_name"):
                raise UserError(f"{path}: a frame of video {video_id!r} has no 'file_name'")
        yield VideoFrames(video_id=video_id, frames=frames)


def pair_vipseg(
    gt_data: Any, gt_path: str | Path, pred_data: Any, pred_path: str | Path
) -> list[tuple[VideoFrames, VideoFrames]]:
    """Pair each ground-truth video with the prediction of the same `video_id`; frames pair by
    position (as VIPSeg's eval_vpq_vspw.py) and, where both give an `image_id`, must agree."""
    predictions = {
        v.video_id: v for v in iter_vipseg_videos(pred_data, pred_path, need_file_names=False)
    }
    pairs = []
    for gt in iter_vipseg_videos(gt_data, gt_path):
        pred = predictions.get(gt.video_id)
        if pred is None:
            raise UserError(f"{pred_path}: no prediction for video {gt.video_id!r} of {gt_path}")
        if len(pred.frames) != len(gt.frames):
            raise UserError(
                f"{pred_path}: video {gt.video_id!r} has {len(pred.frames)} frames, the ground "
                f"truth {len(gt.frames)}"
            )
        for index, (g, p) in enumerate(zip(gt.frames, pred.frames, strict=True)):
            if "image_id" in g and "image_id" in p and g["image_id"] != p["image_id"]:
                raise UserError(
                    f"{pred_path}: video {gt.video_id!r} frame {index} has image id "
                    f"{p['image_id']!r}, the ground truth {g['image_id']!r} (image ids must match)"
                )
            if not p.get("file_name"):
                # as VIPSeg's script, which names both PNGs after the ground truth's frame
                p["file_name"] = g["file_name"]
        pairs.append((gt, pred))
    return pairs
