"""Readers for the evaluation formats, with one clear `UserError` per bad input.

COCO panoptic (https://cocodataset.org/#format-data): a JSON with `annotations` (one per image:
`image_id`, `file_name`, `segments_info`) and `categories`, plus a folder of PNGs whose pixel id
is R + 256 G + 256^2 B (0 = void).

VIPSeg (Miao et al., CVPR 2022, `panoptic_gt_VIPSeg.json`): a JSON with `videos` and
`categories`; the frames of a video are either `videos[i].images` paired by position with the
top-level `annotations[j].annotations` of the same `video_id` (the official layout), or
`videos[i].annotations` directly (streamseg's shapes-world writer). A frame's PNG is
DIR/<video_id>/<file_name>.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic colours to ids. rgb: (H, W, 3) uint8 -> (H, W) uint32."""
    rgb = rgb.astype(np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_id`. ids: (H, W) int -> (H, W, 3) uint8 (ids must be < 2^24)."""
    ids = np.asarray(ids).astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing or malformed file is a UserError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a readable JSON file ({error})") from None


def read_png(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A PNG as an array ((H, W) or (H, W, C)), checked against `size` = (H, W) if given."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as error:
        raise UserError(f"{path}: not a readable image ({error})") from None
    if size is not None and tuple(array.shape[:2]) != tuple(size):
        raise UserError(
            f"{path}: size {array.shape[0]}x{array.shape[1]} differs from the ground truth's "
            f"{size[0]}x{size[1]} (height x width)"
        )
    return array


def read_panoptic_png(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A COCO/VIPSeg panoptic PNG as ids. Returns: (H, W) uint32."""
    array = read_png(path, size)
    if array.ndim != 3 or array.shape[2] < 3:
        raise UserError(f"{path}: a panoptic PNG must be RGB (id = R + 256 G + 256^2 B)")
    return rgb_to_id(array[..., :3])


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
class VideoFrames:
    """One video: its id and its per-frame annotations (`file_name`, `segments_info`)."""

    video_id: str
    frames: list[dict[str, Any]]


def iter_vipseg_videos(data: Any, path: str | Path) -> Iterator[VideoFrames]:
    """The videos of a VIPSeg JSON (either layout, see the module docstring), in file order."""
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise UserError(f"{path}: no 'videos' list (VIPSeg format)")
    top = {}
    for entry in data.get("annotations") or []:
        if isinstance(entry, dict) and "video_id" in entry:
            top[str(entry["video_id"])] = entry.get("annotations") or []
    for video in data["videos"]:
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
            if not frame.get("file_name"):
                raise UserError(f"{path}: a frame of video {video_id!r} has no 'file_name'")
        yield VideoFrames(video_id=video_id, frames=frames)


def pair_vipseg(
    gt_data: Any, gt_path: str | Path, pred_data: Any, pred_path: str | Path
) -> list[tuple[VideoFrames, VideoFrames]]:
    """Pair each ground-truth video with the prediction of the same `video_id`; frames pair by
    position (as VIPSeg's eval_vpq_vspw.py) and, where both give an `image_id`, must agree."""
    predictions = {v.video_id: v for v in iter_vipseg_videos(pred_data, pred_path)}
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
        pairs.append((gt, pred))
    return pairs
