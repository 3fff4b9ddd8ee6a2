"""Label maps as runs: the pixels of a flattened map grouped into maximal runs of one label.

A panoptic map is piecewise constant, so a 1080p map of a few dozen segments has tens of
thousands of runs for two million pixels. Once a map is in runs (one pass over its pixels),
areas, joint (map A, map B) histograms, the expanded map and a label's COCO RLE cost time in
runs, not pixels. A map whose runs are too short for that (noise-like labels) is kept as its
pixels instead, and the same functions count pixels. All functions are pure; a `LabelRuns` is
never modified after it is made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamseg.video.rle import mask_to_counts

# Below this many pixels per run on average, a map is kept as its pixels, and `joint_counts`
# counts pixels instead of merging runs.
DENSE_RUN_PIXELS = 8
# Pixels are counted in a histogram indexed by label (pair) when it has at most this many
# bins; larger labels are searched for among the asked ones instead.
LOOKUP_LIMIT = 1 << 16


@dataclass(frozen=True)
class LabelRuns:
    """An (H, W) label map as runs of its pixels in one flat order.

    Attributes:
        shape: (H, W) of the map.
        starts: (R,) int64 flat index of each run's first pixel; increasing, starts[0] == 0
            (R == 0 only for a map without pixels). None for a map kept as its pixels
            (fewer than DENSE_RUN_PIXELS pixels per run): each pixel is then a run.
        values: (R,) the label of each run; neighbouring runs have different labels
            (with `starts` None: (H*W,) the flat map, in the map's order).
        column_major: the flat order runs down the columns (Fortran order, COCO RLE's)
            instead of along the rows.
    """

    shape: tuple[int, ...]
    starts: np.ndarray | None
    values: np.ndarray
    column_major: bool = False

    @property
    def size(self) -> int:
        """Number of pixels."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def dense(self) -> bool:
        """Kept as pixels, not runs."""
        return self.starts is None


def label_runs(labels: np.ndarray, *, column_major: bool = False) -> LabelRuns:
    """Runs of a label map.

    Args:
        labels: (H, W) integer labels.
        column_major: runs down the columns (Fortran order, the order of COCO RLE) instead
            of along the rows.
    Returns:
        `LabelRuns` of `labels`; its values keep the dtype of `labels`.
    """
    labels = np.asarray(labels)
    flat = labels.T.ravel() if column_major else labels.ravel()
    if flat.size == 0:
        return LabelRuns(labels.shape, np.zeros(0, np.int64), flat[:0].copy(), column_major)
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if len(starts) + 1 > flat.size // DENSE_RUN_PIXELS:
        pixels = flat.copy() if np.may_share_memory(flat, labels) else flat
        return LabelRuns(labels.shape, None, pixels, column_major)
    starts = np.concatenate([np.zeros(1, np.int64), starts.astype(np.int64)])
    return LabelRuns(labels.shape, starts, flat[starts], column_major)


def run_lengths(runs: LabelRuns) -> np.ndarray:
    """(R,) int64 pixels in each run."""
    if runs.starts is None:
        return np.ones(runs.size, np.int64)
    return np.diff(runs.starts, append=np.int64(runs.size))


def flat_labels(runs: LabelRuns, lut: np.ndarray | None = None) -> np.ndarray:
    """(H*W,) the map's labels in its flat order; with `lut`, `lut[labels]` (one lookup per
    run, not per pixel)."""
    values = runs.values if lut is None else lut[runs.values]
    if runs.starts is None:
        return values
    return np.repeat(values, run_lengths(runs))


def expand_runs(runs: LabelRuns, lut: np.ndarray | None = None) -> np.ndarray:
    """The (H, W) map back; with `lut`, `lut[map]` (one lookup per run, not per pixel)."""
    flat = flat_labels(runs, lut)
    if runs.column_major:
        return flat.reshape(runs.shape[::-1]).T
    return flat.reshape(runs.shape)


def reorder_runs(runs: LabelRuns) -> LabelRuns:
    """The same map's runs in the other flat order (row-major <-> column-major); values keep
    their dtype."""
    values = runs.values
    # The map is expanded in the narrowest dtype that holds its labels: the transposed copy
    # of a 1080p map costs a third in uint8 of what it costs in int32.
    narrow = values
    if values.size and values.dtype.kind in "iu" and values.min() >= 0:
        top = int(values.max())
        if top <= np.iinfo(np.uint16).max:
            narrow = values.astype(np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16)
    expanded = expand_runs(_relabelled(runs, narrow))
    other = label_runs(expanded, column_major=not runs.column_major)
    values = other.values.astype(values.dtype)
    return LabelRuns(other.shape, other.starts, values, other.column_major)


def label_areas(runs: LabelRuns, labels: np.ndarray) -> np.ndarray:
    """(N,) int64 pixels of each of `labels` (N,) in the map (0 for a label not in it)."""
    keys, label_of = np.unique(np.asarray(labels), return_inverse=True)
    lengths = None if runs.starts is None else run_lengths(runs)
    top = _small_top(runs.values, keys)
    if top is not None:
        counts = _counts(runs.values, lengths, top + 1)[keys]
    else:
        counts = _counts(_index_or_spare(keys, runs.values), lengths, len(keys) + 1)
    return counts[label_of.ravel()]


def pair_runs(a: LabelRuns, b: LabelRuns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of the map of pairs (a, b) of two maps of the same shape and order.

    Returns:
        (Q,) labels of `a`, (Q,) labels of `b`, (Q,) int64 pixels of each pair run (with a
        map kept as pixels: each pixel, Q = H*W).
    """
    _check_same_grid(a, b)
    if a.starts is None or b.starts is None:
        return flat_labels(a), flat_labels(b), np.ones(a.size, np.int64)
    index_a, index_b, lengths = _pair_run_indices(a, b)
    return a.values[index_a], b.values[index_b], lengths


def joint_counts(
    a: LabelRuns, rows: np.ndarray, b: LabelRuns, columns: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of each (label of `a`, label of `b`) pair, for chosen labels of each map.

    Args:
        a, b: maps of the same shape and order.
        rows: (K,) labels of `a`; columns: (N,) labels of `b` (repeats allowed).
    Returns:
        (K, N) int64 pixels labelled rows[k] in `a` and columns[n] in `b`, and
        (K,) int64 pixels labelled rows[k] in `a`.
    """
    return joint_counts_each([(a, rows)], b, columns)[0]


def joint_counts_each(
    earlier: list[tuple[LabelRuns, np.ndarray]], b: LabelRuns, columns: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`joint_counts(a, rows, b, columns)` for each (a, rows) of `earlier`."""
    column_keys, column_of = np.unique(np.asarray(columns), return_inverse=True)
    column_of = column_of.ravel()
    b_pixels = None  # b's labels per pixel, made once if some map needs pixel counts
    out = []
    for a, rows in earlier:
        _check_same_grid(a, b)
        row_keys, row_of = np.unique(np.asarray(rows), return_inverse=True)
        row_of = row_of.ravel()
        if (
            a.starts is not None
            and b.starts is not None
            and len(a.starts) + len(b.starts) <= a.size // DENSE_RUN_PIXELS
        ):
            index_a, index_b, lengths = _pair_run_indices(a, b)
            pairs = (a.values[index_a], b.values[index_b], lengths)
        else:
            # Runs of a few pixels (noise-like maps): merging the run lists would cost more
            # than counting pixels.
            if b_pixels is None:
                b_pixels = flat_labels(b)
            pairs = (flat_labels(a), b_pixels, None)
        joint, row_areas = _pair_counts(*pairs, row_keys, column_keys)
        out.append((joint[row_of][:, column_of], row_areas[row_of]))
    return out


def _pair_counts(
    values_a: np.ndarray,
    values_b: np.ndarray,
    lengths: np.ndarray | None,
    row_keys: np.ndarray,
    column_keys: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel counts of label pairs.

    Args:
        values_a, values_b: (Q,) labels of two maps at each pair run (or pixel).
        lengths: (Q,) pixels of each pair run; None: one each.
        row_keys: (K,) sorted unique labels of map a; column_keys: (N,) of map b.
    Returns:
        (K, N) int64 pixels per (row key, column key), (K,) int64 pixels per row key.
    """
    top_a = _small_top(values_a, row_keys)
    top_b = _small_top(values_b, column_keys)
    if top_a is not None and top_b is not None and (top_a + 1) * (top_b + 1) <= LOOKUP_LIMIT:
        # Small labels: one histogram of all (a, b) label pairs, keys picked out after.
        width = top_b + 1
        flat = values_a.astype(np.int64) * width
        flat += values_b
        table = _counts(flat, lengths, (top_a + 1) * width).reshape(top_a + 1, width)
        return table[row_keys][:, column_keys], table[row_keys].sum(axis=1)
    # Labels not among the keys are counted in one spare row / column, dropped at the end.
    width = len(column_keys) + 1
    flat = _index_or_spare(row_keys, values_a) * width
    flat += _index_or_spare(column_keys, values_b)
    table = _counts(flat, lengths, (len(row_keys) + 1) * width).reshape(-1, width)
    return table[:-1, :-1], table[:-1].sum(axis=1)


def _small_top(values: np.ndarray, keys: np.ndarray) -> int | None:
    """The largest of `values` and `keys` when both are non-negative integers below
    LOOKUP_LIMIT (histograms indexed by label are then small), else None."""
    top = -1
    for array in (values, keys):
        # uint64 does not cast safely to bincount's int64
        if array.dtype.kind not in "iu" or (array.dtype.kind == "u" and array.dtype.itemsize > 4):
            return None
        if array.size:
            if int(array.min()) < 0:
                return None
            top = max(top, int(array.max()))
    return top if top < LOOKUP_LIMIT else None


def _check_same_grid(a: LabelRuns, b: LabelRuns) -> None:
    if a.shape != b.shape or a.column_major != b.column_major:
        raise ValueError(f"maps of shapes {a.shape} and {b.shape} (or of two orders)")


def _pair_run_indices(a: LabelRuns, b: LabelRuns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of the pair map of two maps kept as runs: (Q,) index of the run of `a` and of `b`
    each pair run lies in, (Q,) int64 its pixels.

    A pair run starts wherever a run of either map starts, so the pair runs are the merge of
    both start lists (linear: a stable sort of two sorted lists is a merge in NumPy).
    """
    assert a.starts is not None and b.starts is not None
    if a.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    starts = np.concatenate([a.starts, b.starts])
    order = np.argsort(starts, kind="stable")
    merged = starts[order]
    from_a = order < len(a.starts)
    index_a = np.cumsum(from_a) - 1
    index_b = np.cumsum(~from_a) - 1
    # Where both maps start a run at the same pixel, the last of the equal starts is the one
    # after which both indices have moved on.
    last = np.append(merged[1:] != merged[:-1], True)
    lengths = np.diff(merged[last], append=np.int64(a.size))
    return index_a[last], index_b[last], lengths


def _relabelled(runs: LabelRuns, values: np.ndarray) -> LabelRuns:
    return LabelRuns(runs.shape, runs.starts, values, runs.column_major)


def mask_counts_of_label(runs: LabelRuns, label: int) -> list[int]:
    """COCO RLE counts of the mask `map == label` (what `rle.mask_to_counts` gives), from
    column-major runs (`label_runs(..., column_major=True)`).

    Returns:
        run lengths, alternating 0-runs and 1-runs, starting with a 0-run (0 long when the
        mask starts with a 1); [] for a map without pixels.
    """
    if not runs.column_major:
        raise ValueError("COCO RLE counts come from column-major runs")
    size = runs.size
    if size == 0:
        return []
    if runs.starts is None:
        return mask_to_counts(expand_runs(runs) == label)
    hit = runs.values.astype(np.int64) == int(label)
    starts = runs.starts[hit]
    if len(starts) == 0:
        return [size]
    ends = starts + run_lengths(runs)[hit]
    counts = np.empty(2 * len(starts), np.int64)
    counts[0::2] = starts - np.concatenate([np.zeros(1, np.int64), ends[:-1]])
    counts[1::2] = ends - starts
    out = counts.tolist()
    tail = size - int(ends[-1])
    if tail:
        out.append(tail)
    return out


def _index_or_spare(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(Q,) int64 index of each of `values` in the sorted unique `keys`, len(keys) if absent."""
    spare = len(keys)
    if spare == 0:
        return np.zeros(len(values), np.int64)
    index = np.searchsorted(keys, values).astype(np.int64)
    found = keys[np.minimum(index, spare - 1)] == values
    return np.where(found, index, spare)


def _counts(index: np.ndarray, lengths: np.ndarray | None, bins: int) -> np.ndarray:
    """(bins,) int64 sum of `lengths` (None: ones) per `index` (the float64 sums of a
    weighted bincount are exact for pixel counts, below 2**53)."""
    return np.bincount(index, weights=lengths, minlength=bins).astype(np.int64)
