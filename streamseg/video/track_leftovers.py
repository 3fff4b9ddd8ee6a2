"""What the tracker does with the thing tracks and segments its first assignment left apart
(issue 18 round 4, docs/TRACKING.md).

On the model's own segments one object is not always one segment with one class:
- its class flickers between frames, and its CLIP embedding (the classifier's input) with it,
  so the first assignment (IoU + embedding + class penalty) reads it as another object: a
  second assignment on mask IoU alone links it (`match_on_geometry`);
- the model now and then splits one object between two queries: a leftover segment lying
  inside the last mask of a track assigned in this frame, of its class, is a second piece of
  that object and gets its label (`pieces_of_tracks`); a track whose last mask now lies inside
  another track's segment of its class was such a piece and ends (`absorbed_rows`).

Pure functions over the first stage's matrices: rows are live tracks, columns thing segments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from streamseg.video.last_masks import MaskOverlaps


def match_on_geometry(
    iou: np.ndarray, rows: Sequence[int], cols: Sequence[int], min_iou: float
) -> dict[int, int]:
    """A linear assignment of the given tracks and segments on `1 - IoU` alone.

    Args:
        iou: (K, N) mask IoU of the tracks' last masks with the frame's thing segments.
        rows, cols: the tracks and segments left unassigned.
        min_iou: the least IoU of an accepted pair (> 0).
    Returns:
        {row: col} of the pairs assigned.
    """
    if not rows or not cols:
        return {}
    import lap

    cost = 1.0 - iou[np.ix_(list(rows), list(cols))]
    # The tiny slack keeps a pair at exactly `min_iou`, which float rounding of 1 - x loses.
    _, second, _ = lap.lapjv(cost, extend_cost=True, cost_limit=1.0 - min_iou + 1e-12)
    return {rows[r]: cols[c] for r, c in enumerate(second.tolist()) if c >= 0}


def pieces_of_tracks(
    overlaps: MaskOverlaps,
    rows: Sequence[int],
    cols: Sequence[int],
    row_classes: Sequence[int],
    col_classes: Sequence[int],
    min_inside: float,
) -> dict[int, int]:
    """Leftover segments that are a second piece of an object tracked in this frame.

    Args:
        overlaps: the tracks' last masks (K rows) against the frame's thing segments (N).
        rows: tracks assigned a segment in this frame; cols: segments left unassigned.
        row_classes: (K,) each track's class; col_classes: (N,) each segment's class.
        min_inside: the least share of a segment's pixels inside the track's last mask.
    Returns:
        {col: row}: the segment is labelled with that track (the track it lies most inside).
    """
    if not rows or not cols:
        return {}
    areas = np.maximum(overlaps.segment_areas[list(cols)], 1)
    inside = overlaps.intersections[np.ix_(list(rows), list(cols))] / areas
    best = np.argmax(inside, axis=0)
    pieces = {}
    for c, col in enumerate(cols):
        row = rows[int(best[c])]
        if inside[best[c], c] >= min_inside and row_classes[row] == col_classes[col]:
            pieces[col] = row
    return pieces


def absorbed_rows(
    overlaps: MaskOverlaps,
    candidates: Sequence[int],
    hosts: Mapping[int, int],
    row_classes: Sequence[int],
    min_inside: float,
) -> list[int]:
    """Tracks that were a piece of another track's object: their last mask lies inside a
    segment assigned to another track of their class.

    Args:
        overlaps: the tracks' last masks (K rows) against the frame's thing segments (N).
        candidates: tracks left unassigned in this frame (seen in the previous one).
        hosts: {row: col} of the tracks assigned in this frame.
        row_classes: (K,) each track's class.
        min_inside: the least share of the candidate's last mask inside the host's segment.
    Returns:
        the candidate rows to end.
    """
    absorbed = []
    for row in candidates:
        area = int(overlaps.mask_areas[row])
        if area == 0:  # a mask of another size: where it was is unknown
            continue
        for host, col in hosts.items():
            if (
                host != row
                and row_classes[host] == row_classes[row]
                and overlaps.intersections[row, col] >= min_inside * area
            ):
                absorbed.append(row)
                break
    return absorbed
