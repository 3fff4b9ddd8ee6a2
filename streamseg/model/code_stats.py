"""Pixel count and extent of every value of a small-integer map, per map of a batch.

Panoptic inference needs, for each slot code of its (B, H, W) code map, how many pixels hold
it and the rows and columns it spans (areas and COCO boxes come from those). Two ways, one
result:
- on accelerators, per-row and per-column counts from one scatter per axis: no host read;
- on the CPU, from the map's horizontal runs. A code map is a few hundred regions, so a frame
  has ~10^4 runs for ~2 * 10^6 pixels; finding the run starts is one byte compare and one
  `np.flatnonzero` (numpy counts set bytes a word at a time), and everything after works on
  the runs. Per-pixel scatters with int64 indices cost ~8x more here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class CodeStats:
    """Per map and code value (B maps, N values).

    Attributes:
        count: (B, N) long pixels holding the value.
        y0, y1: (B, N) long first and last row holding it (H and -1 where absent).
        x0, x1: (B, N) long first and last column holding it (W and -1 where absent).
    """

    count: Tensor
    y0: Tensor
    y1: Tensor
    x0: Tensor
    x1: Tensor

    def columns(self, start: int, stop: int) -> CodeStats:
        """The stats of values start..stop-1."""
        part = slice(start, stop)
        return CodeStats(
            count=self.count[:, part],
            y0=self.y0[:, part],
            y1=self.y1[:, part],
            x0=self.x0[:, part],
            x1=self.x1[:, part],
        )


def code_stats(code: Tensor, bins: int) -> CodeStats:
    """Count and extent of each value 0..bins-1 of each map.

    Args:
        code: (B, H, W) integer map (any integer dtype), values 0..bins-1.
        bins: N, the number of values.
    """
    if code.device.type == "cpu":
        return code_stats_from_runs(code, bins)
    return code_stats_from_lines(code, bins)


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


def code_stats_from_lines(code: Tensor, bins: int) -> CodeStats:
    """`code_stats` from per-row and per-column counts (no host synchronisation)."""
    rows, cols = line_counts(code.long(), bins)
    y0, y1 = _extent(rows > 0)
    x0, x1 = _extent(cols > 0)
    return CodeStats(count=rows.sum(1), y0=y0, y1=y1, x0=x0, x1=x1)


def code_stats_from_runs(code: Tensor, bins: int) -> CodeStats:
    """`code_stats` from the horizontal runs of each row (CPU tensors)."""
    batch, height, width = code.shape
    lines = np.ascontiguousarray(code.numpy()).reshape(batch * height, width)
    within = np.flatnonzero(lines[:, 1:] != lines[:, :-1]) if width > 1 else np.zeros(0, int)
    step = max(width - 1, 1)
    # Run starts as flat pixel positions: every row's first pixel, and each change of value.
    starts = np.concatenate(
        [
            np.arange(batch * height, dtype=np.int64) * width,
            (within // step) * width + within % step + 1,
        ]
    )
    starts.sort()
    lengths = np.diff(starts, append=batch * height * width)
    line = starts // width
    first = starts - line * width
    runs = {
        "key": (line // height) * bins + lines.reshape(-1)[starts].astype(np.int64),
        "length": lengths,
        "y": line % height,
        "x0": first,
        "x1": first + lengths - 1,
    }
    key, length, y, x0, x1 = (torch.from_numpy(runs[name]) for name in runs)
    size = batch * bins

    def reduce(values: Tensor, start: int, how: str) -> Tensor:
        out = torch.full((size,), start, dtype=torch.long)
        return out.scatter_reduce_(0, key, values, how).view(batch, bins)

    count = torch.zeros(size, dtype=torch.long).scatter_add_(0, key, length).view(batch, bins)
    return CodeStats(
        count=count,
        y0=reduce(y, height, "amin"),
        y1=reduce(y, -1, "amax"),
        x0=reduce(x0, width, "amin"),
        x1=reduce(x1, -1, "amax"),
    )


def _extent(present: Tensor) -> tuple[Tensor, Tensor]:
    """First and last index along dim 1 where `present`: (B, L, N) bool -> (B, N) x 2
    (L and -1 where never present)."""
    length = present.shape[1]
    position = torch.arange(length, device=present.device).view(1, length, 1)
    first = torch.where(present, position, length).amin(1)
    last = torch.where(present, position, -1).amax(1)
    return first, last


def merged_boxes(stats: CodeStats, owner: Tensor, num_ids: int) -> tuple[Tensor, Tensor]:
    """Areas and COCO boxes (x, y, w, h) of ids made of several codes.

    Args:
        stats: (B, K) stats of K codes.
        owner: (B, K) long id 1..N each code belongs to (0 = none).
        num_ids: N.

    Returns:
        areas (B, N) long and boxes (B, N, 4) long; 0 and (0, 0, 0, 0) for an absent id.
    """
    batch = owner.shape[0]
    big = torch.iinfo(torch.long).max

    def merge(values: Tensor, start: int, how: str) -> Tensor:
        out = torch.full((batch, num_ids + 1), start, dtype=torch.long, device=owner.device)
        return out.scatter_reduce_(1, owner, values, how)[:, 1:]

    areas = merge(stats.count, 0, "sum")
    x0, y0 = merge(stats.x0, big, "amin"), merge(stats.y0, big, "amin")
    x1, y1 = merge(stats.x1, -1, "amax"), merge(stats.y1, -1, "amax")
    boxes = torch.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], -1)
    return areas, torch.where(areas[..., None] > 0, boxes, 0)


def lookup(table: Tensor, code: Tensor) -> Tensor:
    """table[b, code[b]] for each map: (B, n) and (B, H, W) small integers -> (B, H, W).

    On the CPU through numpy, which indexes with uint8 directly; torch's gather needs an int64
    index, and making one costs more than the lookup itself.
    """
    if code.device.type == "cpu":
        return lookup_numpy(table, code)
    return lookup_gather(table, code)


def lookup_numpy(table: Tensor, code: Tensor) -> Tensor:
    """`lookup` for CPU tensors."""
    values, index = table.numpy(), code.numpy()
    return torch.from_numpy(np.stack([values[b][index[b]] for b in range(len(index))]))


def lookup_gather(table: Tensor, code: Tensor) -> Tensor:
    """`lookup` on any device, with no host read."""
    return table.gather(1, code.flatten(1).long()).view(code.shape)
