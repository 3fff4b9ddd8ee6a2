"""Official per-pixel assignment at a large output size, decided per cell of the mask grid.

The official panoptic inference resizes every kept query's mask logits to the output size
(bilinear, `postprocess.resize_mask_logits`), then per pixel takes the query with the largest
score * sigmoid(logit) and tests sigmoid >= 0.5. At 1080p that is ~10 full-size passes per
kept query, most of the post-processing time on a CPU.

A bilinear resize makes each output pixel a convex combination of the four source values at
the corners of its cell (the source rows h0, h1 = h0 + 1 and columns w0, w1 it reads). So in
a cell, a query's logit lies between the minimum and maximum of its four corners, and since
sigmoid is monotonic, so does its score * sigmoid. Where those bounds already decide the
winner and every query's side of 0.5 (with a margin far above float rounding), the whole cell
gets that answer; only the cells where they do not (along mask borders and between close
competitors) are computed pixel by pixel, with the official arithmetic.

That arithmetic is PyTorch's CPU bilinear kernel written out (`resized_in_cells`: the source index
`scale * (i + 0.5) - 0.5` rounded once, then `fma(a, w0, b * w1)` per axis, height outside
width). With two or more torch threads it gives `F.interpolate`'s floats bit for bit on this
project's machines (torch 2.14, AVX-512); with one thread PyTorch's own kernel rounds
differently (its result differs from its two-thread result in the last bit at about half of
the pixels), and so does sigmoid between its vectorized body and scalar remainder, whose
extent depends on shapes and threads. So decisions equal the full-size path's everywhere
except at knife-edge pixels, where that path's own answer depends on the last bit of a float.
tests/test_panoptic_cells.py compares the two paths away from such pixels, bounds the
difference of the resized logits in ulps, and checks the tie rule (earliest query).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Margins of the cell bounds: the computed logit of a pixel may leave its corners' range by a
# few ulps of their magnitude (two rounded products and sums per axis), and sigmoid of a logit
# within ~1e-7 of 0 rounds to exactly 0.5. Both margins are orders of magnitude above that.
ABSOLUTE_MARGIN = 1e-5
RELATIVE_MARGIN = 1e-5
# Above this share of undecided cells in some frame of a batch, the full-size path is
# cheaper: a computed pixel costs ~7x a full-size one (one-thread segment() at 1080p: 390 ms
# per frame by cells against 140 ms full-size on a moving gradient, where ~40% of the cells
# stay undecided; 9 ms against 50 ms on the shapes world at 0.5-2%).
MAX_UNDECIDED = 0.1


@dataclass(frozen=True)
class Axis:
    """PyTorch's bilinear table for one axis (align_corners=False, no scale factor).

    Attributes:
        first, second: (n_out,) long, the two source indices each output index reads.
        weight_first, weight_second: (n_out,) float32, their weights.
        count: (n_in,) long, output indices whose `first` is each source index (0 for a
            source index no output starts from).
        start: (n_in,) long, the first output index of each source index's cell.
    """

    first: Tensor
    second: Tensor
    weight_first: Tensor
    weight_second: Tensor
    count: Tensor
    start: Tensor


@functools.lru_cache(maxsize=32)
def axis_table(size_in: int, size_out: int) -> Axis:
    """The source indices and weights PyTorch's CPU kernel uses along one axis."""
    scale = torch.tensor(size_in, dtype=torch.float32) / torch.tensor(size_out, dtype=torch.float32)
    index = torch.arange(size_out, dtype=torch.float64)
    # scale * (i + 0.5) - 0.5 with one rounding (the kernel's contracted multiply-add): the
    # product of two floats is exact in double.
    source = (scale.double() * (index + 0.5) - 0.5).float().clamp(min=0)
    first = source.floor().long().clamp(max=size_in - 1)
    weight = (source - first.float()).clamp(0, 1)
    second = torch.where(first < size_in - 1, first + 1, first)
    if size_in == size_out:  # the kernel copies
        first = second = torch.arange(size_out)
        weight = torch.zeros(size_out)
    count = torch.bincount(first, minlength=size_in)
    return Axis(
        first=first,
        second=second,
        weight_first=1 - weight,
        weight_second=weight,
        count=count,
        start=torch.cumsum(count, 0) - count,
    )


def _fma(a: Tensor, weight_a: Tensor, b: Tensor, weight_b: Tensor) -> Tensor:
    """fma(a, weight_a, b * weight_b) in float32: b * weight_b rounded, then a * weight_a
    added with a single rounding (exact product and sum in double, one cast)."""
    return ((b * weight_b).double() + a.double() * weight_a.double()).float()


def _corners(values: Tensor, reduce: str) -> Tensor:
    """Per cell (r, c), the min or max of values[:, r|r+1, c|c+1] (the last row / column is
    its own neighbour). (k, h, w) -> (k, h, w)."""
    op = torch.minimum if reduce == "min" else torch.maximum
    down = torch.cat([values[:, 1:], values[:, -1:]], 1)
    rows = op(values, down)
    right = torch.cat([rows[:, :, 1:], rows[:, :, -1:]], 2)
    return op(rows, right)


@dataclass(frozen=True)
class CellDecision:
    """What the cell bounds decide for one frame's kept queries.

    Attributes:
        known: (h, w) bool, cells whose every pixel's code is decided.
        code: (h, w) long, that code (winning slot, + K where its sigmoid >= 0.5).
        inside: (k, h, w) bool, the query's sigmoid >= 0.5 in the whole cell (read where
            `known`).
    """

    known: Tensor
    code: Tensor
    inside: Tensor


def decide_cells(logits: Tensor, scores: Tensor, slots: int) -> CellDecision:
    """Cell bounds of (k, h, w) float32 logits at the source size and (k,) scores."""
    low, high = _corners(logits, "min"), _corners(logits, "max")
    margin = ABSOLUTE_MARGIN + RELATIVE_MARGIN * torch.maximum(low.abs(), high.abs())
    inside = low > margin
    sign_known = inside | (high < -margin)
    weight = scores[:, None, None]
    floor = (low - margin).sigmoid() * weight * (1 - RELATIVE_MARGIN)
    ceiling = (high + margin).sigmoid() * weight * (1 + RELATIVE_MARGIN)
    best_floor, best = floor.max(0)
    others = ceiling.scatter(0, best[None], -1.0).amax(0)
    winner_known = best_floor > others
    known = winner_known & sign_known.all(0)
    code = best + slots * inside.gather(0, best[None])[0].long()
    return CellDecision(known=known, code=code, inside=inside)


@dataclass(frozen=True)
class CellCode:
    """One frame's code map (winning slot, + K where its sigmoid >= 0.5) without its pixels:
    decided cells, and the pixels of the others.

    Attributes:
        blocks: (h, w) long, the code of each decided cell.
        known: (h, w) bool, decided cells.
        rows, cols: the resize's `Axis` tables (a cell's output rows and columns).
        y, x: (n,) long, the pixels of the undecided cells.
        codes: (n,) long, their codes.
    """

    blocks: Tensor
    known: Tensor
    rows: Axis
    cols: Axis
    y: Tensor
    x: Tensor
    codes: Tensor

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the map."""
        return len(self.rows.first), len(self.cols.first)


def empty_cell_code(source_size: tuple[int, int], output_size: tuple[int, int]) -> CellCode:
    """The code map of a frame without kept queries: every cell decided, code 0."""
    (h, w), (height, width) = source_size, output_size
    none = torch.zeros(0, dtype=torch.long)
    return CellCode(
        blocks=torch.zeros((h, w), dtype=torch.long),
        known=torch.ones((h, w), dtype=torch.bool),
        rows=axis_table(h, height),
        cols=axis_table(w, width),
        y=none,
        x=none,
        codes=none,
    )


def cell_code(
    source: Tensor,
    scores: Tensor,
    output_size: tuple[int, int],
    slots: int,
    cells: CellDecision | None = None,
) -> tuple[CellCode, Tensor]:
    """`panoptic_batch.winning_slots` for one frame, from logits at the source size.

    Args:
        source: (k, h, w) float32 mask logits of the kept slots, cropped to the model input
            (the official resize's first step done).
        scores: (k,) their class scores.
        output_size: (H, W).
        slots: K (codes are slot + K where inside).
        cells: `decide_cells(source, scores, slots)` when the caller has it already.

    Returns:
        the `CellCode` and original_area (k,) long (pixels with sigmoid >= 0.5 per slot), as
        the full-size path gives them.
    """
    k, h, w = source.shape
    rows, cols = axis_table(h, output_size[0]), axis_table(w, output_size[1])
    cells = cells if cells is not None else decide_cells(source, scores, slots)
    pixels = rows.count[:, None] * cols.count[None, :]
    original_area = ((cells.inside & cells.known) * pixels).reshape(k, -1).sum(1)
    pixels = cell_pixels(~cells.known, rows, cols)
    y, x = pixels.y, pixels.x
    codes = torch.zeros(0, dtype=torch.long)
    if y.numel():
        probs = resized_in_cells(source, rows, cols, pixels).sigmoid()
        over_half = probs >= 0.5
        original_area += over_half.sum(1)
        # max over dim 0 returns the first maximum: the earliest slot keeps a tie, as argmax.
        _, winner = (probs * scores[:, None]).max(0)
        codes = winner + slots * over_half.gather(0, winner[None])[0].long()
    return CellCode(cells.code, cells.known, rows, cols, y, x, codes), original_area


def paint(cells: CellCode, table: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(H, W) map of table[code]: decided cells as blocks (each source column repeated over
    its output columns, then the source rows taken for the output rows: numpy, ~20x faster
    than torch's repeat_interleave here), then the other pixels.

    Args:
        table: (2K,) value per code.
        out: (H, W) array of table's dtype to paint into (None: a new one).
    """
    columns = np.repeat(table[cells.blocks.numpy()], cells.cols.count.numpy(), 1)
    # mode='clip' (the indices are in range): with the default, numpy buffers `out`
    painted = np.take(columns, cells.rows.first.numpy(), axis=0, out=out, mode="clip")
    if cells.y.numel():
        width = painted.shape[1]
        painted.reshape(-1)[(cells.y * width + cells.x).numpy()] = table[cells.codes.numpy()]
    return painted


def cell_stats(cells: CellCode, bins: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Pixel count, first / last row and first / last column of each code 0..bins-1, each
    (bins,) long (H / W and -1 where absent), from the cells and the computed pixels."""
    height, width = cells.size
    rows, cols = cells.rows, cells.cols
    r, c = (cells.known & (rows.count[:, None] > 0) & (cols.count[None, :] > 0)).nonzero(
        as_tuple=True
    )
    key = torch.cat([cells.blocks[r, c], cells.codes])
    count = torch.cat([rows.count[r] * cols.count[c], torch.ones_like(cells.codes)])
    top = torch.cat([rows.start[r], cells.y])
    bottom = torch.cat([rows.start[r] + rows.count[r] - 1, cells.y])
    left = torch.cat([cols.start[c], cells.x])
    right = torch.cat([cols.start[c] + cols.count[c] - 1, cells.x])

    def reduce(values: Tensor, start: int, how: str) -> Tensor:
        out = torch.full((bins,), start, dtype=torch.long)
        return out.scatter_reduce_(0, key, values, how)

    return (
        torch.zeros(bins, dtype=torch.long).scatter_add_(0, key, count),
        reduce(top, height, "amin"),
        reduce(bottom, -1, "amax"),
        reduce(left, width, "amin"),
        reduce(right, -1, "amax"),
    )


@dataclass(frozen=True)
class CellPixels:
    """The output pixels of some cells.

    Attributes:
        rows, cols: (m,) long, each cell's source row and column.
        y, x: (n,) long, output coordinates of every pixel of those cells.
        cell: (n,) long, the cell (0..m-1) of each pixel.
        dx: (n,) long, its column within the cell.
    """

    rows: Tensor
    cols: Tensor
    y: Tensor
    x: Tensor
    cell: Tensor
    dx: Tensor


def cell_pixels(cells: Tensor, rows: Axis, cols: Axis) -> CellPixels:
    """Every output pixel of the marked (h, w) cells."""
    r, c = cells.nonzero(as_tuple=True)
    heights, widths = rows.count[r], cols.count[c]
    sizes = heights * widths
    total = int(sizes.sum())
    cell = torch.repeat_interleave(torch.arange(len(r)), sizes)
    offset = torch.arange(total) - (torch.cumsum(sizes, 0) - sizes)[cell]
    cell_width = widths[cell]
    dx = offset % cell_width
    y = rows.start[r][cell] + offset // cell_width
    return CellPixels(r, c, y, cols.start[c][cell] + dx, cell, dx)


def resized_in_cells(source: Tensor, rows: Axis, cols: Axis, pixels: CellPixels) -> Tensor:
    """`F.interpolate(source, size, mode="bilinear")` at the pixels of some cells only:
    (k, h, w) float32 -> (k, n) float32, bit-equal to the full resize with two or more torch
    threads on this build (within a few ulps otherwise). Per axis `fma(a, w0, b * w1)`,
    height outside width; the horizontal step is done once per cell and column (a cell's
    output rows share their two source rows)."""
    k, _, width = source.shape
    flat = source.reshape(k, -1)
    span = int(cols.count.max())
    # (m, span) output columns of each cell (padding repeats the last; never read)
    x = (cols.start[pixels.cols][:, None] + torch.arange(span)).clamp(max=len(cols.first) - 1)
    x0, x1 = cols.first[x], cols.second[x]
    wx0, wx1 = cols.weight_first[x], cols.weight_second[x]

    def along_row(r: Tensor) -> Tensor:  # (m,) source rows -> (k, m, span)
        base = (r * width)[:, None]
        return _fma(flat[:, base + x0], wx0, flat[:, base + x1], wx1)

    top = along_row(pixels.rows)[:, pixels.cell, pixels.dx]
    # a cell's second source row, read at its first output row (every cell here has one)
    first_row = rows.start[pixels.rows].clamp(max=len(rows.first) - 1)
    bottom = along_row(rows.second[first_row])[:, pixels.cell, pixels.dx]
    return _fma(top, rows.weight_first[pixels.y], bottom, rows.weight_second[pixels.y])
