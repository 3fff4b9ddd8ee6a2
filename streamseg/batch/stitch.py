"""Stitching the finished stores of a video's time shards into one store in the format of
`streamseg run`.

Shards are walked in order; each shard's track ids are mapped onto the ids already given by
`match_tracks` on the frames it shares with the shard before it, unmatched tracks get new ids,
and every source frame is written once, from the first shard that has it.

Limits (documented in docs/BATCH.md): an object hidden during the whole overlap is not
re-identified across the boundary, and a tracker's memory (class votes, appearance) starts
fresh in every shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.batch.track_matching import assign_ids, match_tracks, relabel
from streamseg.errors import UserError


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
        "pyramid_levels",
        "identity",
        "label_size",
        "status",
        "frames",
        "segments",
        "tracks",
        "decode",
        "warnings",
        "embedding_dim",  # set by the first block that brings search vectors
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
    vectors = reader.segment_embeddings()  # (N, 0) for shards written without them
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
            embeddings=vectors[rows] if vectors.shape[1] else None,
        )
