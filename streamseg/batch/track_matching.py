"""Which track of one time shard continues which track of the shard before it.

On the frames two neighbouring shards both segmented, every pair of ids is scored by mask IoU
over those frames, and one linear assignment (lapx, with a cost limit) links them; unmatched
tracks get new ids in creation order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def overlap_iou(
    previous: np.ndarray, current: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every pair of ids of two label volumes over the same frames.

    Intersections and unions are summed over all frames (the IoU of the space-time masks),
    so a track seen on more overlap frames weighs more than a one-frame flicker.

    Args:
        previous: (F, H, W) int ids of the previous shard on the common frames, 0 = none.
        current: (F, H, W) int ids of the current shard on the same frames.

    Returns:
        previous_ids (P,) int64 sorted non-zero ids of `previous`, current_ids (N,) likewise,
        iou (P, N) float64.
    """
    if previous.shape != current.shape:
        raise ValueError(f"shapes differ: {previous.shape} vs {current.shape}")
    a = previous.reshape(-1).astype(np.int64)
    b = current.reshape(-1).astype(np.int64)
    previous_ids, area_a = np.unique(a[a > 0], return_counts=True)
    current_ids, area_b = np.unique(b[b > 0], return_counts=True)
    iou = np.zeros((len(previous_ids), len(current_ids)), np.float64)
    both = (a > 0) & (b > 0)
    if both.any():
        pairs, inter = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
        rows = np.searchsorted(previous_ids, pairs[0])
        cols = np.searchsorted(current_ids, pairs[1])
        union = area_a[rows] + area_b[cols] - inter
        iou[rows, cols] = inter / union
    return previous_ids, current_ids, iou


def match_tracks(
    previous: np.ndarray,
    current: np.ndarray,
    *,
    iou_threshold: float = 0.5,
    compatible: np.ndarray | None = None,
) -> dict[int, int]:
    """Which id of the current shard continues which id of the previous one.

    One-to-one assignment maximizing the summed IoU (lapx `lapjv` with `cost_limit = 1 -
    iou_threshold` inside the solver, so pairs below the threshold are never forced).

    Args:
        previous: (F, H, W) ids of the previous shard (already in final numbering) on the
            common frames.
        current: (F, H, W) ids of the current shard on the same frames.
        iou_threshold: lowest space-time IoU of a match, in (0, 1].
        compatible: optional (P, N) bool over `overlap_iou`'s sorted ids: pairs that may match
            (e.g. both things or both stuff); others never do.

    Returns:
        {current id: previous id} for the matched pairs.
    """
    import lap

    previous_ids, current_ids, iou = overlap_iou(previous, current)
    if iou.size == 0:
        return {}
    cost = 1.0 - iou
    if compatible is not None:
        cost = np.where(compatible, cost, 2.0)
    cost[iou <= 0] = 2.0  # never match masks that do not touch
    _, row_to_col, _ = lap.lapjv(cost, extend_cost=True, cost_limit=1.0 - iou_threshold)
    return {
        int(current_ids[col]): int(previous_ids[row])
        for row, col in enumerate(row_to_col)
        if col >= 0 and iou[row, col] >= iou_threshold
    }


def relabel(labels: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Replace ids by a lookup table; ids missing from `mapping` (and 0) become 0.

    Args:
        labels: (..., H, W) non-negative int ids.
        mapping: {old id: new id}.

    Returns:
        Same shape and dtype as `labels`.
    """
    if labels.size == 0:
        return labels.copy()
    top = max(int(labels.max()), max(mapping, default=0))
    table = np.zeros(top + 1, labels.dtype)
    for old, new in mapping.items():
        table[old] = new
    return table[labels]


def assign_ids(
    local_ids: Sequence[int], matched: dict[int, int], next_id: int
) -> tuple[dict[int, int], int]:
    """Final ids of one shard's tracks: matched ones continue, others get new ids in order.

    New ids are handed out in increasing local id order, which is the tracker's creation
    order, so a video where no track crosses a boundary is numbered as in one pass.

    Args:
        local_ids: the shard's track ids that appear in its own frames.
        matched: {local id: final id} from `match_tracks`.
        next_id: the first unused final id.

    Returns:
        ({local id: final id} for every local id, the next unused final id).
    """
    mapping: dict[int, int] = {}
    for local in sorted(set(int(i) for i in local_ids)):
        if local in matched:
            mapping[local] = matched[local]
        else:
            mapping[local] = next_id
            next_id += 1
    return mapping, next_id
