"""Time shards of long videos: cutting a video's time range into overlapping pieces that run
as separate tasks (stitched back by `streamseg.batch.stitch`).

A long video is cut into shards of `shard_seconds`; each shard after the first starts
`overlap_frames` frames early, so two neighbouring shards segment a few frames in common. Each
shard runs through `run_video` on its own time range into its own store (fresh tracker, ids
from 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ShardPlan:
    """One time shard of a video.

    Attributes:
        index: position of the shard (0, 1, ...).
        start: first second decoded, from the first frame (None = from the start).
        end: second at which decoding stops (None = to the end).
        boundary: second from which this shard's frames are its own; frames before it (the
            overlap) also belong to the previous shard and are used for stitching only.
    """

    index: int
    start: float | None
    end: float | None
    boundary: float


def plan_shards(
    duration: float | None,
    fps: float | None,
    shard_seconds: float,
    overlap_frames: int,
    *,
    start: float | None = None,
    end: float | None = None,
) -> list[ShardPlan]:
    """Cut `[start, end)` of a video (seconds from its first frame) into time shards.

    Shard k owns `[b_k, b_k+1)` with `b_k = start + k * shard_seconds`, and decodes from
    `(overlap_frames + 0.5) / fps` seconds before `b_k` (half a frame of margin so that rounding
    never loses an overlap frame). A video with unknown duration or frame rate, or one not
    longer than a shard and a half, is one shard (no point in splitting off a sliver).

    Args:
        duration: seconds from the first frame to the end of the video (None if unknown).
        fps: average frame rate (None or 0 if unknown).
        shard_seconds: length of a shard, > 0.
        overlap_frames: frames decoded twice at each boundary, >= 1 for stitching.
        start, end: the part of the video to process (the run settings' own range).

    Returns:
        The shards in time order; one shard covering `[start, end)` if no split applies.
    """
    if shard_seconds <= 0:
        raise ValueError(f"shard_seconds must be > 0, got {shard_seconds}")
    if overlap_frames < 1:
        raise ValueError(f"overlap_frames must be >= 1, got {overlap_frames}")
    first = start or 0.0
    last = end if end is not None else duration
    if last is None or not fps or fps <= 0 or last - first <= 1.5 * shard_seconds:
        return [ShardPlan(index=0, start=start, end=end, boundary=first)]
    count = math.ceil((last - first) / shard_seconds - 1e-9)
    # A last shard shorter than half a shard is merged into the one before it.
    if (last - first) - (count - 1) * shard_seconds < 0.5 * shard_seconds:
        count -= 1
    margin = (overlap_frames + 0.5) / fps
    shards = []
    for k in range(count):
        boundary = first + k * shard_seconds
        shard_start = start if k == 0 else max(first, boundary - margin)
        shard_end = end if k == count - 1 else first + (k + 1) * shard_seconds
        shards.append(ShardPlan(index=k, start=shard_start, end=shard_end, boundary=boundary))
    return shards
