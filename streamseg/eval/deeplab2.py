"""deeplab2's video panoptic predictions (STEP, VIPSeg): one PNG per frame, no JSON.

deeplab2 saves a panoptic label as `semantic * label_divisor + instance` and writes it to a PNG
with the semantic label in the red channel and the instance (for STEP and VIPSeg: the track)
id in green and blue (`instance // 256` and `instance % 256`), as its `your_own_dataset.md`
describes. Red 255 is deeplab2's ignore label: void here. Frames are read from
`DIR/<video>/<file_name>`, the ground truth's names, as VIPSeg's layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError

IGNORE_LABEL = 255  # deeplab2's default ignore label: void pixels
# Panoptic ids of this reader: semantic * 65536 + instance + 1 (0 = void). The same (semantic,
# instance) pair has the same id in every frame, so tracks stay tracks for VPQ and STQ.
_INSTANCE_SPAN = 65536


def decode_deeplab2_png(
    path: str | Path, categories: Mapping[int, Any], size: tuple[int, int] | None = None
) -> tuple[np.ndarray, dict[int, dict[str, Any]]]:
    """A deeplab2 panoptic PNG as (ids (H, W) int64, segments {id: {"category_id": c}}).

    Raises:
        UserError: unreadable, not RGB, another size than `size`, or a semantic label that is
            neither a category of the ground truth nor the ignore label.
    """
    from streamseg.panoptic_png import read_png

    array = read_png(path, size)
    if array.ndim != 3 or array.shape[2] < 3:
        raise UserError(
            f"{path}: a deeplab2 panoptic PNG is RGB (R = semantic, G * 256 + B = instance)"
        )
    semantic = array[..., 0].astype(np.int64)
    instance = array[..., 1].astype(np.int64) * 256 + array[..., 2].astype(np.int64)
    ids = np.where(semantic == IGNORE_LABEL, 0, semantic * _INSTANCE_SPAN + instance + 1)
    segments = {}
    for segment_id in np.unique(ids).tolist():
        if segment_id == 0:
            continue
        category = (segment_id - 1) // _INSTANCE_SPAN
        if category not in categories:
            raise UserError(
                f"{path}: semantic label {category} is not a category of the ground truth "
                f"(nor the ignore label {IGNORE_LABEL})"
            )
        segments[int(segment_id)] = {"category_id": category, "iscrowd": 0}
    return ids, segments


def evaluate_deeplab2_video(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_dir: str | Path,
    windows: Sequence[int],
) -> dict[str, Any]:
    """VPQ and STQ of deeplab2 PNG predictions against VIPSeg-format ground truth.

    Raises:
        UserError: a missing or unreadable prediction PNG, unknown semantic labels.
    """
    from streamseg.eval.formats import (
        iter_vipseg_videos,
        read_categories,
        read_json,
        segments_by_id,
    )
    from streamseg.eval.video import VideoEvaluation
    from streamseg.panoptic_png import read_panoptic_png

    gt_data = read_json(gt_json)
    categories = read_categories(gt_data, gt_json)
    evaluation = VideoEvaluation(categories, windows)
    for video in iter_vipseg_videos(gt_data, gt_json):
        evaluation.start_video(video.video_id)
        for frame in video.frames:
            gt_png = Path(gt_dir) / video.video_id / frame["file_name"]
            pred_png = Path(pred_dir) / video.video_id / frame["file_name"]
            gt_ids = read_panoptic_png(gt_png)
            pred_ids, pred_segments = decode_deeplab2_png(pred_png, categories, gt_ids.shape)
            evaluation.update(
                gt_ids,
                segments_by_id(frame, gt_json),
                pred_ids,
                pred_segments,
                gt_name=str(gt_png),
                pred_name=str(pred_png),
            )
    return evaluation.result()
