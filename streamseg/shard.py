"""Time shards of long videos: planning, and stitching their tracks into one store.

A long video is cut into shards of `shard_seconds`; each shard after the first starts
`overlap_frames` frames early, so two neighbouring shards segment a few frames in common. Each
shard runs through `run_video` on its own time range into its own store (fresh tracker, ids
from 1). Stitching then walks the shards in order and maps each shard's track ids onto the ids
already given, by mask IoU over the common frames (one linear assignment per boundary, solved
by lapx with a cost limit), gives the unmatched tracks new ids, and writes one store in the
format of `streamseg run`.

Limits (documented in docs/BATCH.md): an object hidden during the whole overlap is not
re-identified across the boundary, and a tracker's memory (class votes, appearance) starts
fresh in every shard.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError


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


def _stitched_metadata(
    first: Any, start: float | None, end: float | None, shards: int, iou_threshold: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Identity and attributes of the stitched store: those of the first shard with the
    decode range of the whole run, so that the store equals (and is recognized by `run_video`
    as) the store of one pass over the same range."""
    meta = json.loads(json.dumps(first.attrs))
    identity = meta["identity"]
    for settings in (identity["settings"], meta["settings"]):
        settings["decode"]["start"] = start
        settings["decode"]["end"] = end
    text = json.dumps(identity["settings"], sort_keys=True)
    meta["settings_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    meta["stitched"] = {"shards": shards, "iou_threshold": iou_threshold}
    # What LabelStore.open / finish write themselves.
    for key in (
        "schema_version",
        "identity",
        "label_size",
        "status",
        "frames",
        "segments",
        "tracks",
        "decode",
        "warnings",
    ):
        meta.pop(key, None)
    return identity, meta


def stitch_stores(
    shard_paths: Sequence[str | Path],
    output: str | Path,
    *,
    iou_threshold: float = 0.5,
    start: float | None = None,
    end: float | None = None,
    block_bytes: int = 32 << 20,
) -> int:
    """Join the finished stores of consecutive time shards into one store at `output`.

    Every source frame is taken from the first shard that has it (frames are matched by
    their pts, or their source index without pts); a later shard's frames that an earlier
    one also has are the overlap, used only to link tracks. Thing tracks are linked by
    `match_tracks` on the overlap (stuff pixels ignored); stuff keeps one id per class over
    the whole video, as the tracker does; every other track gets the next new id in the
    shard's creation order. Segment rows are ordered by frame, then final track id, as
    `run_video` writes them; the tracks table is recomputed from the segments by
    `LabelStore.finish`.

    The store is built in a temporary folder beside `output` and moved in place with
    `os.replace`, so `output` is either absent or complete. An unfinished store at `output`
    (a run killed earlier) is replaced; a finished one is kept and this one dropped.

    Args:
        shard_paths: finished shard stores, in time order.
        output: the final store.
        iou_threshold: lowest space-time mask IoU linking two tracks across a boundary.
        start, end: the decode range of the whole run (recorded in the settings).
        block_bytes: label bytes per written block (whole frames, 1 to 64 of them): few
            store writes for small frames, bounded memory for large ones.

    Returns:
        Frames in the final store.
    """
    from streamseg.video.store import LabelStore, is_store, open_store, store_status

    output = Path(output)
    readers = [open_store(path) for path in shard_paths]
    for reader in readers:
        if reader.status != "done":
            raise RuntimeError(f"{reader.path}: shard store is not finished")
    identity, attrs = _stitched_metadata(readers[0], start, end, len(readers), iou_threshold)
    store_settings = identity["settings"]["store"]
    # The label layout of the run (shard files per N frames) when its settings name one.
    layout = {}
    if "frames_per_shard" in store_settings:
        layout["frames_per_shard"] = int(store_settings["frames_per_shard"])
    # Leftovers of an attempt killed mid-way (its worker died) go first.
    for stale in output.parent.glob(f".{output.name}.stitch-*"):
        shutil.rmtree(stale, ignore_errors=True)
    temp = output.with_name(f".{output.name}.stitch-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        store = LabelStore.open(
            temp,
            label_size=readers[0].label_size,
            identity=identity,
            attrs=attrs,
            compression_level=int(store_settings.get("compression_level", 3)),
            table_chunk=int(store_settings.get("table_chunk", 4096)),
            **layout,
        )
        height, width = readers[0].label_size
        block = max(1, min(64, block_bytes // (4 * height * width)))
        _write_stitched(store, readers, iou_threshold, block)
        last = readers[-1].attrs
        store.commit(extra=readers[-1].progress.extra)  # decode counters, as one pass keeps
        warnings = list(dict.fromkeys(w for r in readers for w in r.attrs.get("warnings", [])))
        # Shards decode from the start of the file (seeking is not used), so the last one
        # has seen every packet: its decode counters are those of one pass.
        store.finish(decode=last.get("decode", {}), warnings=warnings)
        frames = store.committed_frames
        if output.exists():
            if store_status(output) is not None:
                return int(store_status(output) or 0)  # finished meanwhile by another attempt
            if not is_store(output) and any(output.iterdir()):
                raise UserError(f"{output}: exists and is not a streamseg store")
            shutil.rmtree(output)
        os.replace(temp, output)
        return frames
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def _write_stitched(store: Any, readers: Sequence[Any], iou_threshold: float, block: int) -> None:
    """Append every shard's own frames to `store`, with final track ids."""
    next_id = 1
    stuff_ids: dict[int, int] = {}  # class id -> final id
    previous: tuple[Any, np.ndarray, dict[int, int]] | None = None  # reader, index, mapping
    for reader in readers:
        if reader.num_frames == 0:
            continue
        frames = reader.frames
        index = _frame_keys(frames)
        segments = reader.segments
        own_from = 0
        matched: dict[int, int] = {}
        stuff_local = {
            int(t): int(c)
            for t, c, thing in zip(
                segments["track_id"], segments["class_id"], segments["is_thing"], strict=True
            )
            if not thing
        }
        if previous is not None:
            before, before_index, before_map = previous
            own_from = int(np.searchsorted(index, before_index[-1], side="right"))
            _, rows, before_rows = np.intersect1d(
                index[:own_from], before_index, assume_unique=True, return_indices=True
            )
            if rows.size:
                old = relabel(np.stack([before.labels(int(r)) for r in before_rows]), before_map)
                new = np.stack([reader.labels(int(r)) for r in rows])
                old[np.isin(old, list(stuff_ids.values()))] = 0
                new[np.isin(new, list(stuff_local))] = 0
                matched = match_tracks(old, new, iou_threshold=iou_threshold)
        own = segments["frame"] >= own_from
        for local, class_id in stuff_local.items():
            if class_id in stuff_ids:
                matched[local] = stuff_ids[class_id]
        mapping, next_id = assign_ids(segments["track_id"][own].tolist(), matched, next_id)
        for local, class_id in stuff_local.items():
            if local in mapping:
                stuff_ids.setdefault(class_id, mapping[local])
        if own_from < reader.num_frames:  # a shard entirely inside the overlap adds nothing
            _append_frames(store, reader, frames, segments, own_from, mapping, block)
            previous = (reader, index, mapping)


def _frame_keys(frames: dict[str, np.ndarray]) -> np.ndarray:
    """What identifies a source frame in every shard: its pts when the file has them (also
    true if decoding ever seeks to a shard's start), else its decode index."""
    pts = frames["pts"]
    return pts if pts.size and (pts >= 0).all() else frames["index"]


def _append_frames(
    store: Any,
    reader: Any,
    frames: dict[str, np.ndarray],
    segments: dict[str, np.ndarray],
    first: int,
    mapping: dict[int, int],
    block: int,
) -> None:
    """Write rows [first, T) of a shard, relabelled by `mapping`, in blocks of frames."""
    columns = ("index", "pts", "time", "keyframe", "corrupt")
    table = np.array(sorted(mapping.items()), np.int64).reshape(-1, 2)
    for begin in range(first, reader.num_frames, block):
        stop = min(begin + block, reader.num_frames)
        labels = relabel(reader.labels(slice(begin, stop)), mapping)
        rows = np.flatnonzero((segments["frame"] >= begin) & (segments["frame"] < stop))
        local_ids = segments["track_id"][rows]
        final_ids = table[np.searchsorted(table[:, 0], local_ids), 1] if rows.size else local_ids
        order = np.lexsort((final_ids, segments["frame"][rows]))
        rows, final_ids = rows[order], final_ids[order]
        block_segments = {name: values[rows] for name, values in segments.items()}
        block_segments["frame"] = block_segments["frame"] - begin
        block_segments["track_id"] = final_ids
        store.write_block(
            labels,
            {name: frames[name][begin:stop] for name in columns},
            block_segments,
            tracker_state=None,
        )
