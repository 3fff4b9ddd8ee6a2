"""The label store: one Zarr v3 group per video (schema in docs/FORMATS.md).

```
out.zarr/
  zarr.json        attrs["streamseg"]: schema, source, model, vocabulary, settings, status
  progress.json    the commit record: frames and segments committed, tracker state
  labels           int32 [T, H, W], chunks (1, H, W), zstd; track id per pixel, 0 = none
  frames/<col>     1-D columns [T]: index, pts, time, keyframe, corrupt, segment_start, ...
  segments/<col>   1-D columns [N]: frame, track_id, class_id, score, area, bbox_*, is_thing
  tracks/<col>     1-D columns [M]: track_id, class_id, is_thing, first_frame, ... (at finish)
```

Commit protocol (why resume is exact): `write_block` writes a block of whole frames (the
pipeline's batch) into the arrays, then replaces `progress.json` atomically (temp file +
`os.replace`) with the new frame / segment counts and the tracker state after the block.
Arrays may hold more than that after a crash (zarr grows the shape first; a SIGKILL mid-block
leaves rows that were never committed): only `progress.json` is trusted. Resuming truncates
every array to the committed counts and continues from there; readers never look past them.

Damage (a deleted progress.json, a missing or truncated chunk file): zarr reads a missing chunk
as zeros, so opening a store, to read or to resume it, checks the commit record against the
arrays and the files that the committed rows need (store_commit.py), and a chunk that cannot
be decoded is named in the error; `streamseg info --check` reads everything (store_check.py).
The schema's names live in store_schema.py.

Writers: one at a time, holding the store's lease (store_lease.py), checked at every commit.
Durability: a commit fsyncs the files its rows were written to (and their folders) before it
replaces `progress.json`, then fsyncs the store folder, so that after a power cut the record
never promises data that is not on disk.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError
from streamseg.video.store_commit import (
    intact_commit,
    load_progress,
    read_rows,
    store_problems,
    sync_dir,
    sync_files,
    undecodable_tables,
    written_files,
)
from streamseg.video.store_damage import DamagedStore
from streamseg.video.store_lease import LEASE_FILE, Lease, acquire, check_free, check_held, renew
from streamseg.video.store_lease import release as release_lease
from streamseg.video.store_schema import (
    ATTRS_KEY,
    EMPTY_CHUNKS_KEY,
    FRAME_COLUMNS,
    PROGRESS_FILE,
    SCHEMA_VERSION,
    SEGMENT_COLUMNS,
    TRACK_COLUMNS,
    Progress,
    is_store,
    read_progress,
)

# The schema's names are part of this module's interface (older imports, other tools).
__all__ = [
    "ATTRS_KEY",
    "DEFAULT_FRAMES_PER_SHARD",
    "EMPTY_CHUNKS_KEY",
    "FRAME_COLUMNS",
    "PROGRESS_FILE",
    "SCHEMA_VERSION",
    "SEGMENT_COLUMNS",
    "TRACK_COLUMNS",
    "DamagedStore",
    "LabelStore",
    "Progress",
    "StoreReader",
    "is_store",
    "open_store",
    "read_progress",
    "store_status",
    "summarize_tracks",
]

# Label frames per shard file, as `StoreSettings.frames_per_shard` (stores written by other
# tools - stitching, benchmarks - get the format of `streamseg run` by default).
DEFAULT_FRAMES_PER_SHARD = 64


def store_status(path: str | Path) -> int | None:
    """Frames of a finished store at `path`; None if missing, unfinished, not a store, or its
    commit record is damaged (a rerun then says what is wrong)."""
    if not is_store(path):
        return None
    attrs = json.loads((Path(path) / "zarr.json").read_text())["attributes"][ATTRS_KEY]
    if attrs.get("status") != "done":
        return None
    try:
        progress = load_progress(path, attrs)
    except DamagedStore:
        return None
    if "frames" in attrs and int(attrs["frames"]) != progress.frames:
        return None
    return int(progress.frames)


def _atomic_write(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    sync_dir(path.parent)  # the rename itself is durable only once its folder is synced


class LabelStore:
    """Writer of one store. Open with `LabelStore.open(...)`, then `write_block` per batch of
    frames and `finish()`; `committed_frames` tells where a resumed run continues."""

    def __init__(
        self, path: Path, group: Any, progress: Progress, done: bool, lease: Lease | None = None
    ) -> None:
        self.path = path
        self._group = group
        self.progress = progress
        self.done = done
        # Rows appended so far (frames, segments): committed ones plus pending ones.
        self._written = (progress.frames, progress.segments)
        # Array handles, opened once: opening one from the group reads its metadata from disk
        # (about 0.5 ms), a third of a commit's cost when done per column per block.
        self._arrays: dict[str, Any] = {}
        # Files (relative to the store) written since the last commit: fsynced by the next.
        self._unsynced: set[str] = set()
        self._lease = lease

    def close(self) -> None:
        """Give the lease back (the store stays resumable from its last commit)."""
        if self._lease is not None:
            release_lease(self.path, self._lease.token)
            self._lease = None

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _array(self, name: str) -> Any:
        """The array at `name` ("labels", "frames/index", ...), opened once per writer."""
        if name not in self._arrays:
            # Chunks of zeros are stored too (zarr skips them by default): a missing file then
            # means damage, never "all zeros" (EMPTY_CHUNKS_KEY).
            array = self._group[name].with_config({"write_empty_chunks": True})
            self._arrays[name] = array
        return self._arrays[name]

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        label_size: tuple[int, int],
        identity: Mapping[str, Any],
        attrs: Mapping[str, Any],
        overwrite: bool = False,
        compression_level: int = 3,
        table_chunk: int = 4096,
        frames_per_shard: int = DEFAULT_FRAMES_PER_SHARD,
    ) -> LabelStore:
        """Create a store, or reopen one made by the same run to resume it.

        Args:
            path: the store folder (`*.zarr`).
            label_size: (H, W) of the label maps.
            identity: what must match to resume (source fingerprint, settings, model id);
                a store with another identity is refused unless `overwrite`.
            attrs: further attributes for a new store (source facts, vocabulary, ...).
            overwrite: delete an existing store and start over.
            frames_per_shard: label frames per shard file (0 = a file per frame).
        """

        path = Path(path)
        identity = json.loads(json.dumps(dict(identity)))  # normalized (tuples -> lists)
        if path.exists() and not path.is_dir():
            raise UserError(f"{path}: exists and is not a store folder")
        # A folder holding only a lease is a store being created by another writer.
        being_made = path.is_dir() and [p.name for p in path.iterdir()] == [LEASE_FILE]
        if path.exists() and overwrite:
            if not is_store(path) and any(path.iterdir()) and not being_made:
                raise UserError(f"{path}: not a streamseg store; refusing to delete it")
            check_free(path)  # never delete a store under a live writer
            shutil.rmtree(path)
        if path.exists() and any(path.iterdir()) and not being_made:
            if not is_store(path):
                raise UserError(f"{path}: exists and is not a streamseg store")
            return cls._reopen(path, identity, label_size)
        parent = path.parent
        if not parent.is_dir():
            raise UserError(f"{path}: cannot write (folder {parent} does not exist)")
        if not os.access(parent, os.W_OK):
            raise UserError(f"{path}: cannot write (folder {parent} is not writable)")
        try:
            path.mkdir(exist_ok=True)
        except OSError as error:
            raise UserError(f"{path}: cannot write ({error})") from None
        # The lease first (atomic): of two writers creating the same store, one is refused.
        lease = acquire(path)
        try:
            store = cls._create(
                path,
                lease,
                label_size,
                identity,
                attrs,
                compression_level,
                table_chunk,
                frames_per_shard,
            )
        except BaseException:
            release_lease(path, lease.token)
            raise
        return store

    @classmethod
    def _create(
        cls,
        path: Path,
        lease: Lease,
        label_size: tuple[int, int],
        identity: dict[str, Any],
        attrs: Mapping[str, Any],
        compression_level: int,
        table_chunk: int,
        frames_per_shard: int,
    ) -> LabelStore:
        import zarr

        try:
            # "a", not "w": "w" would delete the lease just taken.
            group = zarr.open_group(str(path), mode="a", zarr_format=3)
        except OSError as error:
            raise UserError(f"{path}: cannot write ({error})") from None
        _create_arrays(group, label_size, compression_level, table_chunk, frames_per_shard)
        meta = {
            "schema_version": SCHEMA_VERSION,
            **json.loads(json.dumps(dict(attrs))),
            "identity": identity,
            "label_size": list(label_size),
            "status": "running",
            EMPTY_CHUNKS_KEY: True,
        }
        group.attrs[ATTRS_KEY] = meta
        # The metadata files first, durable, then the first commit record (and the store's
        # own name in its parent folder).
        sync_files(path, [str(f.relative_to(path)) for f in path.rglob("zarr.json")])
        sync_dir(path.parent)
        progress = Progress()
        _atomic_write(path / PROGRESS_FILE, progress.to_json())
        return cls(path, group, progress, done=False, lease=lease)

    @classmethod
    def _reopen(cls, path: Path, identity: dict[str, Any], label_size: tuple[int, int]):
        import zarr

        group = zarr.open_group(str(path), mode="r+")
        meta = dict(group.attrs[ATTRS_KEY])
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise UserError(
                f"{path}: store schema {meta.get('schema_version')} is not {SCHEMA_VERSION}; "
                "use --overwrite or another --out"
            )
        old = meta.get("identity", {})
        if old != identity:
            differing = sorted(
                key for key in set(old) | set(identity) if old.get(key) != identity.get(key)
            )
            what = "another video" if "source" in differing else "other settings"
            raise UserError(
                f"{path}: store was made from {what} (differs in: {', '.join(differing)}); "
                "use --overwrite to replace it or choose another --out"
            )
        if meta.get("status") == "done":
            return cls(path, group, intact_commit(path, group, meta), done=True)
        # Checked before the lease is taken: a refused resume changes no file.
        check_free(path)
        checked = intact_commit(path, group, meta)
        lease = acquire(path)
        try:
            # Read again under the lease: another writer may have committed in between.
            group = zarr.open_group(str(path), mode="r+")
            meta = dict(group.attrs[ATTRS_KEY])
            progress = checked
            if load_progress(path, meta) != checked or meta.get("status") == "done":
                progress = intact_commit(path, group, meta)
            if meta.get("status") == "done":
                release_lease(path, lease.token)
                return cls(path, group, progress, done=True)
            store = cls(path, group, progress, done=False, lease=lease)
            store._truncate()
            meta["status"] = "running"
            group.attrs[ATTRS_KEY] = meta
        except BaseException:
            release_lease(path, lease.token)
            raise
        return store

    def _truncate(self) -> None:
        """Cut every array back to the committed counts (drop uncommitted rows)."""
        for partial in self.path.rglob("*.partial"):
            partial.unlink(missing_ok=True)
        frames, segments = self.progress.frames, self.progress.segments
        sizes = {"labels": frames, **{f"frames/{c}": frames for c in FRAME_COLUMNS}}
        sizes.update({f"segments/{c}": segments for c in SEGMENT_COLUMNS})
        for name, rows in sizes.items():
            array = self._array(name)
            array.resize((rows, *array.shape[1:]))
            self._unsynced.add(f"{name}/zarr.json")

    # ------------------------------------------------------------------ writing
    @property
    def committed_frames(self) -> int:
        return self.progress.frames

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._group.attrs[ATTRS_KEY])

    def update_attrs(self, **values: Any) -> None:
        meta = dict(self._group.attrs[ATTRS_KEY])
        meta.update(json.loads(json.dumps(values)))
        self._group.attrs[ATTRS_KEY] = meta

    def write_block(
        self,
        labels: np.ndarray,
        frames: Mapping[str, np.ndarray],
        segments: Mapping[str, np.ndarray],
        tracker_state: str | None = None,
        extra: dict[str, Any] | None = None,
        commit: bool = True,
    ) -> None:
        """Append whole frames, and (by default) commit everything appended so far.

        Args:
            labels: (n, H, W) int32 track ids of n frames.
            frames: FRAME_COLUMNS except segment_start / segment_count, each (n,).
            segments: SEGMENT_COLUMNS, each (m,), `frame` relative to this block (0..n-1).
            tracker_state: tracker JSON after the last frame of the block (with `commit`).
            extra: small JSON-able facts kept in the commit record (e.g. decode counters).
            commit: write the progress record now; otherwise the frames stay invisible (and
                are dropped by a resume) until a later `commit`.
        """
        if self._lease is not None:
            check_held(self.path, self._lease)  # a fenced writer must not touch the data
        n = int(labels.shape[0])
        t0, s0 = self._written
        local = np.asarray(segments["frame"], np.int64)
        m = int(local.shape[0])
        counts = np.bincount(local, minlength=n).astype(np.int32) if m else np.zeros(n, np.int32)
        starts = (s0 + np.cumsum(counts) - counts).astype(np.int64)
        frame_rows = {**frames, "segment_start": starts, "segment_count": counts}
        self._append("labels", t0, np.asarray(labels, np.int32))
        for name, dtype in FRAME_COLUMNS.items():
            self._append(f"frames/{name}", t0, np.asarray(frame_rows[name], dtype))
        segment_rows = {**segments, "frame": local + t0}
        for name, dtype in SEGMENT_COLUMNS.items():
            self._append(f"segments/{name}", s0, np.asarray(segment_rows[name], dtype))
        self._written = (t0 + n, s0 + m)
        if commit:
            self.commit(tracker_state, extra)

    def _append(self, name: str, start: int, values: np.ndarray) -> None:
        """Append rows to array `name`, remembering the files written for the next commit."""
        array = self._array(name)
        if _append(array, start, values):
            self._unsynced.add(f"{name}/zarr.json")
        self._unsynced.update(written_files(array, name, start, start + values.shape[0]))

    def _sync(self) -> None:
        """fsync every file written since the last commit (and the group's attributes)."""
        sync_files(self.path, [*self._unsynced, "zarr.json"])
        self._unsynced.clear()

    def commit(self, tracker_state: str | None = None, extra: dict[str, Any] | None = None) -> None:
        """Make every appended frame visible and resumable (atomic progress record).

        Raises:
            UserError: another writer took the lease over; nothing is committed.
        """
        if self._lease is not None:
            check_held(self.path, self._lease)
        frames, segments = self._written
        progress = Progress(
            frames=frames, segments=segments, tracker=tracker_state, extra=extra or {}
        )
        self._sync()  # the data first: the record must never promise rows not on disk
        _atomic_write(self.path / PROGRESS_FILE, progress.to_json())
        self.progress = progress
        if self._lease is not None:
            self._lease = renew(self.path, self._lease)

    def finish(self, **attrs: Any) -> None:
        """Trim the arrays to the committed counts, write the tracks table, mark done
        (commit first: uncommitted frames are dropped)."""
        self._truncate()
        self._written = (self.progress.frames, self.progress.segments)
        reader = StoreReader(self.path)
        tracks = summarize_tracks(reader.segments)
        if self._lease is not None:
            check_held(self.path, self._lease)
        for name, dtype in TRACK_COLUMNS.items():
            array = self._array(f"tracks/{name}")
            array.resize((len(tracks[name]),))
            if len(tracks[name]):
                array[:] = np.asarray(tracks[name], dtype)
            self._unsynced.add(f"tracks/{name}/zarr.json")
            self._unsynced.update(written_files(array, f"tracks/{name}", 0, len(tracks[name])))
        self.update_attrs(
            **attrs,
            status="done",
            frames=self.progress.frames,
            segments=self.progress.segments,
            tracks=len(tracks["track_id"]),
        )
        self._sync()
        self.done = True
        self.close()


def _create_arrays(
    group: Any, label_size: tuple[int, int], level: int, table_chunk: int, frames_per_shard: int
) -> None:
    from zarr.codecs import ZstdCodec

    height, width = label_size
    group.create_array(
        "labels",
        shape=(0, height, width),
        chunks=(1, height, width),
        # One writer per store (the pipeline's writer thread), so shard rewrites are safe.
        shards=(frames_per_shard, height, width) if frames_per_shard > 0 else None,
        dtype="int32",
        fill_value=0,
        compressors=ZstdCodec(level=level),
        dimension_names=("t", "y", "x"),
    )
    for table, columns in (
        ("frames", FRAME_COLUMNS),
        ("segments", SEGMENT_COLUMNS),
        ("tracks", TRACK_COLUMNS),
    ):
        sub = group.create_group(table)
        for name, dtype in columns.items():
            sub.create_array(
                name,
                shape=(0,),
                chunks=(table_chunk,),
                dtype=dtype,
                fill_value=0,
                compressors=ZstdCodec(level=level),
                dimension_names=("row",),
            )


def _append(array: Any, start: int, values: np.ndarray) -> bool:
    """Write `values` at rows [start, start + len), growing the array in large steps (few
    metadata rewrites); `finish`/`_truncate` cut it back to the committed length. Returns
    whether the array was resized (its metadata rewritten)."""
    stop = start + values.shape[0]
    if values.shape[0] == 0:
        return False
    resized = array.shape[0] < stop
    if resized:
        # Grow by the current length (at least 256 rows, at most 4096): an exact fit would
        # resize (rewrite the metadata) again on every equal-sized block.
        length = array.shape[0]
        grown = max(stop, length + min(max(length, 256), 4096))
        array.resize((grown, *array.shape[1:]))
    array[start:stop] = values
    return resized


def summarize_tracks(segments: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tracks table from the segments table (a pure function of it).

    Class = score-weighted vote over the track's segments (ties: lowest class id), as the
    tracker votes. Returns TRACK_COLUMNS, rows sorted by track id.
    """
    track = np.asarray(segments["track_id"], np.int64)
    if track.size == 0:
        return {name: np.zeros(0, dtype) for name, dtype in TRACK_COLUMNS.items()}
    ids, inverse = np.unique(track, return_inverse=True)
    classes = np.asarray(segments["class_id"], np.int64)
    # float32 sums in row order, like the tracker's votes
    scores = np.asarray(segments["score"], np.float32)
    frame = np.asarray(segments["frame"], np.int64)
    num_classes = int(classes.max()) + 1
    votes = np.zeros((ids.size, num_classes), np.float64)
    np.add.at(votes, (inverse, classes), scores.astype(np.float64))
    first = np.full(ids.size, np.iinfo(np.int64).max)
    last = np.full(ids.size, -1)
    np.minimum.at(first, inverse, frame)
    np.maximum.at(last, inverse, frame)
    # a stuff class may give several segments per frame to one track: count frames once
    unique_pairs = np.unique(np.stack([inverse, frame]), axis=1)
    frames_per_track = np.bincount(unique_pairs[0], minlength=ids.size)
    score_sum = np.bincount(inverse, weights=scores.astype(np.float64), minlength=ids.size)
    rows = np.bincount(inverse, minlength=ids.size)
    thing = np.zeros(ids.size, np.uint8)
    thing[inverse] = np.asarray(segments["is_thing"], np.uint8)
    return {
        "track_id": ids.astype(np.int32),
        "class_id": votes.argmax(axis=1).astype(np.int32),
        "is_thing": thing,
        "first_frame": first,
        "last_frame": last,
        "frames": frames_per_track.astype(np.int64),
        "score": (score_sum / np.maximum(rows, 1)).astype(np.float32),
    }


class StoreReader:
    """Read a store back (committed frames only, also while it is being written).

    Attributes:
        attrs: the `streamseg` attributes (source, model, vocabulary, settings, status).
        num_frames: committed frames T; labels are (T, H, W).
    """

    def __init__(self, path: str | Path) -> None:
        import zarr

        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"{self.path}: no such store")
        if not is_store(self.path):
            raise UserError(f"{self.path}: not a streamseg store")
        self._group = zarr.open_group(str(self.path), mode="r")
        self.attrs: dict[str, Any] = dict(self._group.attrs[ATTRS_KEY])
        progress = load_progress(self.path, self.attrs)
        # Cheap (no chunk decoded): a missing file would otherwise read as zeros, exit 0.
        problems = store_problems(self.path, self._group, self.attrs, progress)
        # The tables are small next to the labels: decoded now, so that no command works on
        # with a damaged one that it happens not to read.
        problems = problems or undecodable_tables(self.path, self._group, self.attrs, progress)
        if problems:
            raise DamagedStore(self.path, problems)
        self.num_frames = progress.frames
        self.num_segments = progress.segments
        self.progress = progress

    @property
    def status(self) -> str:
        return str(self.attrs.get("status"))

    @property
    def class_names(self) -> list[str]:
        return list(self.attrs.get("vocabulary", {}).get("names", []))

    @property
    def label_size(self) -> tuple[int, int]:
        shape = self._group["labels"].shape
        return (int(shape[1]), int(shape[2]))

    def __len__(self) -> int:
        return self.num_frames

    def _rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of array `name` (an undecodable chunk is a DamagedStore)."""
        return read_rows(self.path, self._group, name, start, stop)

    def labels(self, frame: int | slice | None = None) -> np.ndarray:
        """Label map(s): `labels(t)` (H, W) int32; `labels(slice)` / `labels()` (F, H, W)."""
        if frame is None:
            frame = slice(0, self.num_frames)
        if isinstance(frame, slice):
            picked = range(*frame.indices(self.num_frames))
            if not picked:
                return np.zeros((0, *self.label_size), np.int32)
            low = min(picked)
            rows = self._rows("labels", low, max(picked) + 1)
            return rows if picked.step == 1 else rows[np.asarray(picked) - low]
        t = int(frame)
        if t < 0:
            t += self.num_frames
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {frame} out of range (0..{self.num_frames - 1})")
        return self._rows("labels", t, t + 1)[0]

    def iter_labels(self) -> Iterator[np.ndarray]:
        """Label maps one frame at a time (memory of one frame)."""
        for t in range(self.num_frames):
            yield self.labels(t)

    def _table(self, name: str, columns: Mapping[str, str], rows: int) -> dict[str, np.ndarray]:
        return {col: self._rows(f"{name}/{col}", 0, rows) for col in columns}

    @property
    def frames(self) -> dict[str, np.ndarray]:
        """The frames table: column -> (T,) array."""
        return self._table("frames", FRAME_COLUMNS, self.num_frames)

    @property
    def segments(self) -> dict[str, np.ndarray]:
        """The segments table: column -> (N,) array."""
        return self._table("segments", SEGMENT_COLUMNS, self.num_segments)

    @property
    def tracks(self) -> dict[str, np.ndarray]:
        """The tracks table (written at the end; derived from the segments before that)."""
        if self.status == "done":
            size = self._group["tracks"]["track_id"].shape[0]
            return self._table("tracks", TRACK_COLUMNS, size)
        return summarize_tracks(self.segments)

    def track_mask(self, track_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The mask of one track over time, on the frames between its first and last segment.

        Returns:
            frames (F,) int64 rows, masks (F, H, W) bool.
        """
        segments = self.segments
        rows = np.flatnonzero(segments["track_id"] == track_id)
        if rows.size == 0:
            raise KeyError(f"no track {track_id} in {self.path}")
        first, last = int(segments["frame"][rows].min()), int(segments["frame"][rows].max())
        frames = np.arange(first, last + 1)
        return frames, self.labels(slice(first, last + 1)) == track_id

    def segment_rle(self, row: int) -> dict[str, object]:
        """COCO RLE (pycocotools-compatible, counts as str) of segments row `row`: the pixels of
        its track in its frame."""
        from streamseg.video.rle import encode_mask

        if not 0 <= row < self.num_segments:
            raise IndexError(f"segment {row} out of range (0..{self.num_segments - 1})")
        frame = int(self._rows("segments/frame", row, row + 1)[0])
        track_id = int(self._rows("segments/track_id", row, row + 1)[0])
        return encode_mask(self.labels(frame) == track_id)


def open_store(path: str | Path) -> StoreReader:
    """Open a label store for reading (see `StoreReader`)."""
    return StoreReader(path)
