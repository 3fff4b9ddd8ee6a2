"""Panoptic inference for a batch of frames as tensor work on the model's device.

The official MaskFormer / Mask2Former `panoptic_inference` (as FC-CLIP runs it) for B frames
that share their padded, input and output sizes. Between `keep_queries` (whose kept count the
caller reads once, to size the work) and the result there is no host synchronisation: no
`nonzero`, no `.tolist()`, no per-segment scalar read. Each frame's kept queries sit in
"slots" 0..K-1 in query order (the rest of the K slots are padding, never kept), so the
per-query decisions of `postprocess.assign_segments` become (B, K) tensor operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass

import numpy as np
import torch
from torch import Tensor

from streamseg.model.code_stats import CodeStats, code_stats, lookup, merged_boxes
from streamseg.model.panoptic_cells import (
    MAX_UNDECIDED,
    CellCode,
    CellDecision,
    cell_code,
    cell_stats,
    decide_cells,
    empty_cell_code,
    paint,
)
from streamseg.model.postprocess import resize_mask_logits


@dataclass(frozen=True)
class MaskSizes:
    """The three sizes of the official mask resize (`postprocess.resize_mask_logits`).

    Attributes:
        padded: (Hp, Wp) padded model input.
        image: (h, w) model input before padding.
        output: (H, W) of the panoptic maps.
    """

    padded: tuple[int, int]
    image: tuple[int, int]
    output: tuple[int, int]


@dataclass(frozen=True)
class KeptQueries:
    """The class side of panoptic inference for a batch.

    Attributes:
        scores: (B, Q) float, softmax maximum over the C+1 classes.
        labels: (B, Q) long, its class (C = void).
        keep: (B, Q) bool, label not void and score above the object threshold.
        count: (B,) long, kept queries per frame.
    """

    scores: Tensor
    labels: Tensor
    keep: Tensor
    count: Tensor


@dataclass(frozen=True)
class PanopticBatch:
    """Panoptic maps and segments of B frames, on the device (K = slots, S = segments).

    Attributes:
        labels: (B, H, W) segment id per pixel (0 = none), dtype `label_dtype(K)` (int32
            from the CPU's cell path: those maps stay on the host, where frames are int32).
        slot_queries: (B, K) long, the query in each slot (kept ones first, in query order).
        segment_of: (B, K) long, the segment id of each slot's query (0 = dropped, padding).
        count: (B,) long, segments per frame (S <= K).
        classes: (B, K) long, class of segment s + 1 at column s (columns from `count` on
            are padding).
        scores: (B, K) float, score of its first query (the official segment score).
        is_thing: (B, K) bool.
        areas: (B, K) long, pixels of segment s + 1 at column s.
        boxes: (B, K, 4) long, its COCO box (x, y, w, h).
    """

    labels: Tensor
    slot_queries: Tensor
    segment_of: Tensor
    count: Tensor
    classes: Tensor
    scores: Tensor
    is_thing: Tensor
    areas: Tensor
    boxes: Tensor


def keep_queries(mask_cls: Tensor, object_mask_threshold: float) -> KeptQueries:
    """The official keep test: score, label = softmax(mask_cls).max(-1); keep label != void
    and score > threshold. (B, Q, C+1) class logits (last = void) -> `KeptQueries`."""
    scores, labels = mask_cls.softmax(-1).max(-1)
    keep = (labels != mask_cls.shape[-1] - 1) & (scores > object_mask_threshold)
    return KeptQueries(scores=scores, labels=labels, keep=keep, count=keep.sum(1))


def label_dtype(slots: int) -> torch.dtype:
    """Smallest integer dtype that holds segment ids 0..slots (a frame has at most one
    segment per kept query)."""
    if slots < 256:
        return torch.uint8
    if slots < 2**15:
        return torch.int16
    return torch.int32


def true_first(mask: Tensor) -> Tensor:
    """Per row, the indices of the True entries in order, then those of the False ones.

    (B, N) bool -> (B, N) long. A stable sort, so no `nonzero` (a host sync on accelerators).
    """
    return torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices


def kept_slots(kept: KeptQueries, slots: int) -> tuple[Tensor, Tensor]:
    """The query in each slot and whether it is a kept one.

    Returns:
        queries (B, K) long (kept queries first, in query order) and valid (B, K) bool.
    """
    queries = true_first(kept.keep)[:, :slots]
    index = torch.arange(slots, device=queries.device)
    return queries, index[None] < kept.count[:, None]


def count_true(mask: Tensor, block: int = 255) -> Tensor:
    """True entries per row: (k, ...) bool -> (k,) long.

    Summed in uint8 over blocks of at most 255 entries (no overflow), then the few block sums
    in int64: a plain bool sum first copies every entry to int64, which costs more than the
    rest of the count.
    """
    flat = mask.reshape(mask.shape[0], -1).view(torch.uint8)
    whole = flat.shape[1] - flat.shape[1] % block
    blocks = flat[:, :whole].reshape(flat.shape[0], -1, block).sum(2, dtype=torch.uint8)
    return blocks.sum(1) + flat[:, whole:].sum(1)


def winning_slots(
    mask_logits: Sequence[Tensor] | Tensor,
    queries: Tensor,
    slot_scores: Tensor,
    counts: Sequence[int],
    sizes: MaskSizes,
    chunk: int,
) -> tuple[Tensor, Tensor]:
    """Official per-pixel assignment: each pixel goes to the kept query with the largest
    score * sigmoid(mask logit), the earliest on ties (argmax); masks made at the output size
    in the official resize order (`postprocess.resize_mask_logits`).

    Per frame, `chunk` kept queries at a time: memory O(chunk * H * W), and every kernel sees
    the same shapes as a frame-by-frame run, because CPU kernels round by shape (sigmoid's
    vector body and scalar tail differ in the last bit, and so do the bilinear paths), and a
    last-bit change can flip an exact tie between two queries. The running maximum is strict,
    so an earlier chunk keeps a tie, as argmax over all kept queries would.

    Args:
        mask_logits: per frame (Q, h, w) mask logits at stride 4 of the padded input.
        queries: (B, K) long, the query of each slot (kept ones first, in query order).
        slot_scores: (B, K) class score per slot.
        counts: kept queries per frame, on the host.
        sizes: the official resize's sizes.
        chunk: queries per step.

    Returns:
        code (B, H, W) in `label_dtype(2K - 1)`: the winning slot, plus K where the winner's
        sigmoid >= 0.5 (the pixels it paints if it survives); and original_area (B, K) long
        (pixels with sigmoid >= 0.5 per slot; 0 for padding).
    """
    height, width = sizes.output
    device = slot_scores.device
    batch, slots = slot_scores.shape
    dtype = label_dtype(2 * slots - 1)
    code = torch.zeros((batch, height, width), dtype=dtype, device=device)
    original_area = torch.zeros((batch, slots), dtype=torch.long, device=device)
    for b, count in enumerate(counts):
        best = winner = inside = None
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            rows = queries[b, start:stop]
            logits = resize_mask_logits(mask_logits[b][rows], *astuple(sizes))
            probs = logits.float().sigmoid_()  # float32 even where autocast resized in bf16
            over_half = probs >= 0.5  # (k, H, W)
            original_area[b, start:stop] = count_true(over_half)
            values, arg = probs.mul_(slot_scores[b, start:stop, None, None]).max(0)
            won_inside = over_half.gather(0, arg[None])[0]
            arg = arg.to(dtype)
            if best is None or winner is None or inside is None:
                # The first chunk wins everywhere: no comparison, no fill.
                best, winner, inside = values, arg, won_inside
                continue
            arg += start
            better = values > best  # strict: earlier queries keep ties
            torch.where(better, values, best, out=best)
            torch.where(better, arg, winner, out=winner)
            torch.where(better, won_inside, inside, out=inside)
        if winner is not None and inside is not None:
            torch.add(winner, inside.to(dtype), alpha=slots, out=code[b])
    return code, original_area


def by_cells(device: torch.device, sizes: MaskSizes) -> bool:
    """Whether `winning_slots` decides the output per cell of the model-input grid
    (panoptic_cells.py) instead of resizing every kept mask to the output size: on the CPU, in
    float32 (no autocast), when the second resize enlarges (the case of label maps larger
    than the model input, e.g. 1080p). Accelerators keep the full-size kernels (no host
    synchronisation; elementwise work is cheap there)."""
    return (
        device.type == "cpu"
        and sizes.output != sizes.image
        and all(out >= image for out, image in zip(sizes.output, sizes.image, strict=True))
        and not torch.is_autocast_enabled("cpu")
    )


def cell_codes(
    mask_logits: Sequence[Tensor] | Tensor,
    queries: Tensor,
    slot_scores: Tensor,
    counts: Sequence[int],
    sizes: MaskSizes,
) -> tuple[list[CellCode], Tensor] | None:
    """`winning_slots` per cell of the model-input grid (panoptic_cells.py): each frame's
    `CellCode` and original_area (B, K) long; None when some frame leaves more than
    `MAX_UNDECIDED` of its cells undecided (the full-size path is cheaper then)."""
    batch, slots = slot_scores.shape
    original_area = torch.zeros((batch, slots), dtype=torch.long)
    decided: list[tuple[Tensor, CellDecision] | None] = []
    for b, count in enumerate(counts):
        if count == 0:
            decided.append(None)
            continue
        rows = queries[b, :count]
        # The official resize's first step (to the padded input, then cropped); the second
        # is decided per cell of this map.
        source = resize_mask_logits(mask_logits[b][rows], sizes.padded, sizes.image, sizes.image)
        source = source.contiguous()
        decision = decide_cells(source, slot_scores[b, :count], slots)
        if (~decision.known).float().mean() > MAX_UNDECIDED:
            return None
        decided.append((source, decision))
    cells = []
    for b, item in enumerate(decided):
        if item is None:
            cells.append(empty_cell_code(sizes.image, sizes.output))
            continue
        source, decision = item
        count = source.shape[0]
        code, original_area[b, :count] = cell_code(
            source, slot_scores[b, :count], sizes.output, slots, decision
        )
        cells.append(code)
    return cells, original_area


def cells_stats(cells: Sequence[CellCode], bins: int) -> CodeStats:
    """`code_stats` of the frames' cell codes."""
    per_frame = [cell_stats(code, bins) for code in cells]
    count, y0, y1, x0, x1 = (torch.stack(field) for field in zip(*per_frame, strict=True))
    return CodeStats(count=count, y0=y0, y1=y1, x0=x0, x1=x1)


def paint_cells(ids: Tensor, cells: Sequence[CellCode], size: tuple[int, int]) -> Tensor:
    """(B, H, W) int32 label maps: ids[b, code] painted from each frame's cell code."""
    # int32, the dtype frames hand out (`FrameSegmentation.panoptic`): painted once, no cast.
    table = ids.numpy().astype(np.int32)
    maps = np.empty((len(cells), *size), dtype=np.int32)
    for b, code in enumerate(cells):
        paint(code, table[b], out=maps[b])
    return torch.from_numpy(maps)


def exact_ratio_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it: `won / original < threshold` is then decided exactly
    as the official Python (double) division; MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def assign_slots(
    classes: Tensor,
    valid: Tensor,
    won: Tensor,
    original_area: Tensor,
    mask_area: Tensor,
    is_thing: Tensor,
    overlap_threshold: float,
) -> tuple[Tensor, Tensor]:
    """`postprocess.assign_segments` for a batch, as tensor operations.

    Official per query, in query order: skip unless it won pixels, has pixels with sigmoid
    >= 0.5 and won some of those; skip when won / original area < overlap threshold; a stuff
    class reuses the id of its first surviving query; otherwise a new id len(segments) + 1.

    Args:
        classes, valid, won, original_area, mask_area: (B, K) per slot.
        is_thing: (C,) bool.

    Returns:
        segment_of (B, K) long (0 = dropped) and opens (B, K) bool (the slot opened a segment).
    """
    slots = classes.shape[1]
    dtype = exact_ratio_dtype(won.device)
    ratio = won.to(dtype) / original_area.clamp(min=1).to(dtype)
    survives = valid & (won > 0) & (original_area > 0) & (mask_area > 0)
    survives &= ~(ratio < overlap_threshold)
    thing = is_thing[torch.where(valid, classes, 0)]
    stuff = survives & ~thing
    index = torch.arange(slots, device=classes.device)
    # owner: the first surviving stuff slot of the same class (itself at the latest); K x K
    # per frame is small (K <= queries).
    same = (classes[:, :, None] == classes[:, None, :]) & stuff[:, None, :]
    same &= index[None, None, :] <= index[None, :, None]
    owner = torch.where(same, index, slots).amin(2)
    owner = torch.where(stuff, owner, index)
    opens = survives & (owner == index)
    ids = opens.long().cumsum(1)
    return torch.where(survives, ids.gather(1, owner), 0), opens


def panoptic_batch(
    kept: KeptQueries,
    counts: Sequence[int],
    mask_logits: Sequence[Tensor] | Tensor,
    sizes: MaskSizes,
    is_thing: Tensor,
    overlap_threshold: float,
    chunk: int = 16,
) -> PanopticBatch:
    """Panoptic maps and segment table of B frames, with no host synchronisation.

    Args:
        kept: `keep_queries` of the batch.
        counts: `kept.count` read on the host (the one read before the result); K = its max.
        mask_logits: per frame (Q, h, w) mask logits at stride 4 of the padded input.
        sizes: padded, input and output sizes shared by the B frames.
        is_thing: (C,) bool on the device.
        overlap_threshold: the official 0.8 by default.
        chunk: full-size masks made per step (memory O(chunk * H * W)).
    """
    slots = max(counts)
    queries, valid = kept_slots(kept, slots)
    classes = kept.labels.gather(1, queries)
    scores = kept.scores.gather(1, queries)
    by_cell = None
    if slots > 0 and by_cells(scores.device, sizes):
        by_cell = cell_codes(mask_logits, queries, scores, counts, sizes)
    if by_cell is not None:
        cells, original_area = by_cell
        stats = cells_stats(cells, 2 * slots)
    else:
        code, original_area = winning_slots(mask_logits, queries, scores, counts, sizes, chunk)
        stats = code_stats(code, 2 * slots)
    # Counts of each code give every slot's won and inside area; the extents of the inside
    # codes give the segments' boxes, with no per-segment pass.
    mask_area = stats.count[:, slots:]
    won = stats.count[:, :slots] + mask_area
    segment_of, opens = assign_slots(
        classes, valid, won, original_area, mask_area, is_thing, overlap_threshold
    )
    areas, boxes = merged_boxes(stats.columns(slots, 2 * slots), segment_of, slots)
    # The same code paints the map in one lookup: 0 below K, the slot's segment id above.
    ids = torch.cat([torch.zeros_like(segment_of), segment_of], 1).to(label_dtype(slots))
    labels = paint_cells(ids, cells, sizes.output) if by_cell is not None else lookup(ids, code)
    first = true_first(opens)
    first_classes = classes.gather(1, first)
    return PanopticBatch(
        labels=labels,
        slot_queries=queries,
        segment_of=segment_of,
        count=opens.sum(1),
        classes=first_classes,
        scores=scores.gather(1, first),
        is_thing=is_thing[torch.where(valid.gather(1, first), first_classes, 0)],
        areas=areas,
        boxes=boxes,
    )
