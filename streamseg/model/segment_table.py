"""Per-segment measurements of a batch of panoptic maps, as tensor work on the device.

Areas and COCO boxes of every segment from per-row and per-column pixel counts (one scatter per
axis, no per-segment mask, no `nonzero`), and each segment's embedding: the L2-normalized mean
of its queries' CLIP embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def line_counts(index: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    """Pixel counts of each bin per row and per column of each map.

    One scatter per axis (no per-bin mask, no `nonzero`); scatter_add_ rather than bincount,
    which reads its maximum back to the host on CUDA.

    Args:
        index: (B, H, W) long bins, 0..bins-1.

    Returns:
        rows (B, H, bins) and cols (B, W, bins) long.
    """
    batch, height, width = index.shape
    ones = torch.ones((), dtype=torch.long, device=index.device).expand_as(index)
    rows = torch.zeros((batch, height, bins), dtype=torch.long, device=index.device)
    rows.scatter_add_(2, index, ones)
    cols = torch.zeros((batch, width, bins), dtype=torch.long, device=index.device)
    cols.scatter_add_(2, index.transpose(1, 2), ones.transpose(1, 2))
    return rows, cols


def merge_lines(lines: Tensor, segment_of: Tensor, num_ids: int) -> Tensor:
    """Per-slot line counts summed into their segments.

    Args:
        lines: (B, L, K) counts per row (or column) and slot.
        segment_of: (B, K) long segment id of each slot (0 = none).
        num_ids: N, the largest segment id.

    Returns:
        (B, L, N) counts per line and segment id 1..N.
    """
    batch, length, slots = lines.shape
    merged = lines.new_zeros((batch, length, num_ids + 1))
    merged.scatter_add_(2, segment_of[:, None, :].expand(batch, length, slots), lines)
    return merged[:, :, 1:]


def areas_and_boxes(rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel counts and COCO boxes (x, y, w, h) from line counts.

    Args:
        rows: (B, H, N) pixels of each id per row; cols: (B, W, N) per column.

    Returns:
        areas (B, N) long and boxes (B, N, 4) long; (0, 0, 0, 0) and 0 for an absent id.
    """
    areas = rows.sum(1)
    y0, y1 = _extent(rows > 0)
    x0, x1 = _extent(cols > 0)
    boxes = torch.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], -1)
    return areas, torch.where(areas[..., None] > 0, boxes, 0)


def _extent(present: Tensor) -> tuple[Tensor, Tensor]:
    """First and last index along dim 1 where `present`: (B, L, N) bool -> (B, N) x 2."""
    length = present.shape[1]
    position = torch.arange(length, device=present.device).view(1, length, 1)
    first = torch.where(present, position, length).amin(1)
    last = torch.where(present, position, -1).amax(1)
    return first, last


def segment_embeddings(embeddings: Tensor, segment_of: Tensor, num_ids: int) -> Tensor:
    """Each segment's embedding: normalize(mean of its queries' embeddings).

    Args:
        embeddings: (B, K, D) embedding of each slot's query.
        segment_of: (B, K) long segment id of each slot (0 = none).
        num_ids: N, the largest segment id.

    Returns:
        (B, N, D) in the embeddings' dtype; rows of absent ids are zeros.
    """
    batch, slots, dim = embeddings.shape
    sums = embeddings.new_zeros((batch, num_ids + 1, dim))
    sums.scatter_add_(1, segment_of[..., None].expand(batch, slots, dim), embeddings)
    counts = embeddings.new_zeros((batch, num_ids + 1))
    counts.scatter_add_(1, segment_of, torch.ones_like(segment_of, dtype=embeddings.dtype))
    mean = sums[:, 1:] / counts[:, 1:, None].clamp(min=1)
    return F.normalize(mean, dim=-1)
