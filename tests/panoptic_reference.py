"""The frame-by-frame panoptic post-processing that `Segmenter.segment` ran before the batched
path (streamseg/model/panoptic_frames.py), kept verbatim as the reference the batched path
must equal: kept queries upsampled 16 at a time, per-frame `nonzero` / `.tolist()` reads,
per-segment boxes and areas, a full-resolution int32 map copied to the host per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from streamseg.model.outputs import FrameSegmentation, Segment
from streamseg.model.postprocess import (
    PanopticSegment,
    assign_segments,
    class_logits_from_probs,
    resize_mask_logits,
)


def panoptic_inference_streamed(
    mask_cls: Tensor,
    mask_logits_for: Callable[[Tensor], Tensor],
    output_size: tuple[int, int],
    is_thing: Tensor,
    object_mask_threshold: float,
    overlap_threshold: float,
    chunk: int = 16,
) -> tuple[Tensor, list[PanopticSegment]]:
    """`panoptic_inference` with the kept queries' full-size masks made `chunk` at a time; the
    running per-pixel maximum keeps the earliest query on ties, as argmax does.

    Args:
        mask_cls: (Q, C+1) class logits.
        mask_logits_for: query indices (k,) long -> their (k, H, W) mask logits at output size.
        output_size: (H, W).
    """
    height, width = output_size
    scores, labels = mask_cls.softmax(-1).max(-1)
    keep = (labels != mask_cls.shape[-1] - 1) & (scores > object_mask_threshold)
    kept = torch.nonzero(keep).flatten()
    device = mask_cls.device
    panoptic = torch.zeros((height, width), dtype=torch.int32, device=device)
    if kept.numel() == 0:
        return panoptic, []
    best = torch.full((height, width), float("-inf"), device=device)
    winner = torch.zeros((height, width), dtype=torch.long, device=device)
    winner_prob = torch.zeros((height, width), device=device)
    original_area: list[int] = []
    for start in range(0, kept.numel(), chunk):
        index = kept[start : start + chunk]
        probs = mask_logits_for(index).float().sigmoid()  # (k, H, W)
        values, arg = (scores[index].view(-1, 1, 1) * probs).max(0)
        better = values > best  # strict: earlier queries win ties
        best = torch.where(better, values, best)
        winner = torch.where(better, arg + start, winner)
        winner_prob = torch.where(better, probs.gather(0, arg[None])[0], winner_prob)
        original_area.extend((probs >= 0.5).flatten(1).sum(1).tolist())
    count = kept.numel()
    won_area = torch.bincount(winner.flatten(), minlength=count).tolist()
    inside = winner_prob >= 0.5
    mask_area = torch.bincount(winner[inside], minlength=count).tolist()
    segment_of, segments = assign_segments(
        kept.tolist(),
        labels[kept].tolist(),
        scores[kept].tolist(),
        won_area,
        original_area,
        mask_area,
        is_thing.tolist(),
        overlap_threshold,
    )
    lookup = torch.tensor(segment_of, dtype=torch.int32, device=device)
    return torch.where(inside, lookup[winner], panoptic), segments


def boxes_and_areas(
    panoptic: Tensor, ids: list[int]
) -> tuple[list[tuple[int, int, int, int]], list[int]]:
    """COCO boxes (x, y, w, h) and pixel counts of the given ids, one id at a time."""
    boxes, areas = [], []
    for segment_id in ids:
        mask = panoptic == segment_id
        rows = torch.nonzero(mask.any(1)).flatten()
        cols = torch.nonzero(mask.any(0)).flatten()
        if rows.numel() == 0:
            boxes.append((0, 0, 0, 0))
            areas.append(0)
            continue
        y0, y1 = int(rows[0]), int(rows[-1])
        x0, x1 = int(cols[0]), int(cols[-1])
        boxes.append((x0, y0, x1 - x0 + 1, y1 - y0 + 1))
        areas.append(int(mask.sum()))
    return boxes, areas


def reference_frame_segmentation(
    raw: dict[str, Any],
    output_size: tuple[int, int],
    is_thing: Tensor,
    object_mask_threshold: float = 0.0,
    overlap_threshold: float = 0.8,
) -> FrameSegmentation:
    """The former `Segmenter._panoptic` of one frame.

    Args:
        raw: "class_probs" (Q, C+1), "mask_logits" (Q, h, w), "embeddings" (Q, D),
            "image_size" and "padded_size"; optional "valid" (Q,) bool: an invalid query's
            embedding counts as a zero row (a segment of invalid queries only: zeros).
    """
    mask_cls = class_logits_from_probs(raw["class_probs"])
    low = raw["mask_logits"]

    def masks_for(index: Tensor) -> Tensor:
        return resize_mask_logits(low[index], raw["padded_size"], raw["image_size"], output_size)

    panoptic, segments = panoptic_inference_streamed(
        mask_cls, masks_for, output_size, is_thing, object_mask_threshold, overlap_threshold
    )
    boxes, areas = boxes_and_areas(panoptic, [s.id for s in segments])
    embeddings = raw["embeddings"]
    if raw.get("valid") is not None:
        embeddings = torch.where(raw["valid"][:, None], embeddings, torch.zeros_like(embeddings))
    rows, out_segments = [], []
    for segment, box, area in zip(segments, boxes, areas, strict=True):
        rows.append(F.normalize(embeddings[list(segment.queries)].mean(0), dim=-1))
        out_segments.append(
            Segment(
                id=segment.id,
                class_id=segment.class_id,
                score=segment.score,
                area=area,
                bbox=box,
                is_thing=segment.is_thing,
            )
        )
    dim = embeddings.shape[-1]
    matrix = torch.stack(rows).float().cpu().numpy() if rows else np.zeros((0, dim), np.float32)
    return FrameSegmentation(
        panoptic=panoptic.cpu().numpy().astype(np.int32),
        segments=out_segments,
        embeddings=matrix,
    )


def raw_frames(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """`Segmenter.segment_raw` output -> one dict per frame, as `reference_frame_segmentation`
    reads it."""
    return [
        {
            "class_probs": raw["class_probs"][i],
            "mask_logits": raw["mask_logits"][i],
            "embeddings": raw["embeddings"][i],
            "valid": raw["valid"][i] if "valid" in raw else None,
            "image_size": raw["image_sizes"][i],
            "padded_size": raw["padded_sizes"][i],
        }
        for i in range(len(raw["mask_logits"]))
    ]
