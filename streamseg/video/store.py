"""The label store: one Zarr v3 group per video (schema in docs/FORMATS.md).

```
out.zarr/          schema 2 (schema 1, still read: no time, pyramid, ome; tables by "row")
  zarr.json        attrs["streamseg"]: schema, source, model, vocabulary, settings, status;
                   attrs["ome"]: OME-Zarr 0.5 label image (store_ome.py); consolidated metadata
  progress.json    the commit record: frames and segments committed, tracker state
  lease.json       the writer's lease while one writes (store_lease.py)
  labels           int32 [t, y, x], chunks (1, H, W), zstd; track id per pixel, 0 = none
  time             float64 [t]: seconds of each frame (xarray's coordinate of labels)
  pyramid/<k>      int32 [t, y, x]: labels at 1/2^k size (nearest), k = 1 .. pyramid_levels
  frames/<col>     1-D columns [t]: index, pts, time, keyframe, corrupt, segment_start, ...
  segments/<col>   1-D columns [segment]: frame, track_id, class_id, score, area, bbox_*, ...
  tracks/<col>     1-D columns [track]: track_id, class_id, is_thing, first_frame, ... (finish)
```

Commit protocol (why resume is exact): `write_block` writes a block of whole frames (the
pipeline's batch) into the arrays, then replaces `progress.json` atomically (temp file +
`os.replace`) with the new frame / segment counts and the tracker state after the block.
Arrays may hold more than that after a crash (zarr grows the shape first; a SIGKILL mid-block
leaves rows that were never committed): only `progress.json` is trusted. Resuming truncates
every array to the committed counts and continues from there; readers never look past them.
The root zarr.json (attributes and consolidated metadata, store_root.py) is rewritten after
each commit record with the committed shapes.

Damage (a deleted progress.json, a missing or truncated chunk file): zarr reads a missing chunk
as zeros, so opening a store, to read or to resume it, checks the commit record against the
arrays and the files that the committed rows need (store_commit.py), and a chunk that cannot
be decoded is named in the error; `streamseg info --check` reads everything (store_check.py).
The schema's names live in store_schema.py; the reader is store_reader.py.

Writers: one at a time, holding the store's lease (store_lease.py), checked at every commit.
Durability: a commit fsyncs the files its rows were written to (and their folders) before it
replaces `progress.json`, then fsyncs the store folder, so that after a power cut the record
never promises data that is not on disk.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError
from streamseg.video.store_commit import (
    intact_commit,
    load_progress,
    replace_file,
    sync_dir,
    sync_files,
    written_files,
)
from streamseg.video.store_damage import DamagedStore
from streamseg.video.store_lease import LEASE_FILE, Lease, acquire, check_free, check_held, renew
from streamseg.video.store_lease import release as release_lease
from streamseg.video.store_ome import OME_KEY, ome_attributes
from streamseg.video.store_reader import StoreReader, open_store
from streamseg.video.store_root import group_metadata, read_member_metadata, write_root
from streamseg.video.store_schema import (
    ATTRS_KEY,
    EMBEDDING_DIM_KEY,
    EMPTY_CHUNKS_KEY,
    FRAME_COLUMNS,
    PROGRESS_FILE,
    PYRAMID_GROUP,
    READABLE_SCHEMAS,
    SCHEMA_VERSION,
    SEGMENT_COLUMNS,
    SEGMENT_EMBEDDING,
    TABLE_DIMS,
    TIME_ARRAY,
    TRACK_BEST_COLUMNS,
    TRACK_COLUMNS,
    TRACK_EMBEDDING,
    Progress,
    embedding_dim,
    frame_arrays,
    is_store,
    pyramid_sizes,
    read_progress,
    schema_of,
    segment_vector_arrays,
    track_vector_arrays,
)
from streamseg.video.store_tracks import summarize_tracks
from streamseg.video.track_vectors import summarize_track_vectors

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


class LabelStore:
    """Writer of one store. Open with `LabelStore.open(...)`, then `write_block` per batch of
    frames and `finish()`; `committed_frames` tells where a resumed run continues."""

    def __init__(
        self,
        path: Path,
        group: Any,
        meta: dict[str, Any],
        progress: Progress,
        done: bool,
        lease: Lease | None = None,
    ) -> None:
        self.path = path
        self._group = group
        # The `streamseg` attributes, kept here: the root zarr.json is written whole by
        # `_write_root` (attributes and consolidated metadata together).
        self._meta = meta
        self.progress = progress
        self.done = done
        # Rows of the tracks table (written by `finish`).
        self._tracks = int(meta.get("tracks", 0)) if meta.get("status") == "done" else 0
        # Members' metadata documents, for the consolidated copy (read once: only the shapes
        # change, and those come from the counts).
        self._members: dict[str, dict[str, Any]] | None = None
        # Rows appended so far (frames, segments): committed ones plus pending ones.
        self._written = (progress.frames, progress.segments)
        # Label maps written by `append_labels` ahead of their table rows (frames).
        self._labels_ahead = 0
        # Array handles, opened once: opening one from the group reads its metadata from disk
        # (about 0.5 ms), a third of a commit's cost when done per column per block.
        self._arrays: dict[str, Any] = {}
        # Files (relative to the store) written since the last commit: fsynced by the next.
        self._unsynced: set[str] = set()
        self._lease = lease
        from streamseg.video.zarr_pipeline import use_whole_chunk_pipeline

        # Before the first write: a frame written whole is encoded without zarr's copy of it.
        use_whole_chunk_pipeline()

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
        if path.is_dir() and not being_made and _creation_interrupted(path):
            # Killed while being created: streamseg's lease, no commit record yet, so nothing
            # was promised. Started again, unless its writer is still alive.
            check_free(path)
            shutil.rmtree(path)
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
            "pyramid_levels": len(pyramid_sizes(label_size)),
            "status": "running",
            EMPTY_CHUNKS_KEY: True,
        }
        if embedding_dim(meta):
            _create_vector_arrays(group, embedding_dim(meta), table_chunk)
        progress = Progress()
        store = cls(path, group, meta, progress, done=False, lease=lease)
        store._write_root()
        # The metadata files first, durable, then the first commit record (and the store's
        # own name in its parent folder).
        sync_files(path, [str(f.relative_to(path)) for f in path.rglob("zarr.json")])
        sync_dir(path.parent)
        replace_file(path / PROGRESS_FILE, progress.to_json())
        return store

    @classmethod
    def _reopen(cls, path: Path, identity: dict[str, Any], label_size: tuple[int, int]):
        import zarr

        # The members' own metadata, not the consolidated copy (it lags the commit record).
        group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
        meta = dict(group.attrs[ATTRS_KEY])
        if schema_of(meta) not in READABLE_SCHEMAS:
            raise UserError(
                f"{path}: store schema {schema_of(meta)} is unknown to this streamseg "
                f"(it reads {', '.join(map(str, READABLE_SCHEMAS))}); use --overwrite or "
                "another --out"
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
            return cls(path, group, meta, intact_commit(path, group, meta), done=True)
        if schema_of(meta) != SCHEMA_VERSION:
            raise UserError(
                f"{path}: an unfinished store of schema {schema_of(meta)} cannot be resumed "
                f"by this streamseg (it writes schema {SCHEMA_VERSION}); use --overwrite or "
                "another --out"
            )
        # Checked before the lease is taken: a refused resume changes no file.
        check_free(path)
        checked = intact_commit(path, group, meta)
        lease = acquire(path)
        try:
            # Read again under the lease: another writer may have committed in between.
            group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
            meta = dict(group.attrs[ATTRS_KEY])
            progress = checked
            if load_progress(path, meta) != checked or meta.get("status") == "done":
                progress = intact_commit(path, group, meta)
            if meta.get("status") == "done":
                release_lease(path, lease.token)
                return cls(path, group, meta, progress, done=True)
            meta["status"] = "running"
            store = cls(path, group, meta, progress, done=False, lease=lease)
            store._truncate()
            store._write_root()
        except BaseException:
            release_lease(path, lease.token)
            raise
        return store

    def _truncate(self) -> None:
        """Cut every array back to the committed counts (drop uncommitted rows)."""
        for partial in self.path.rglob("*.partial"):
            partial.unlink(missing_ok=True)
        frames, segments = self.progress.frames, self.progress.segments
        sizes = {name: frames for name in frame_arrays(self._meta)}
        sizes.update({f"segments/{c}": segments for c in SEGMENT_COLUMNS})
        sizes.update({name: segments for name in segment_vector_arrays(self._meta)})
        for name, rows in sizes.items():
            array = self._array(name)
            array.resize((rows, *array.shape[1:]))
            self._unsynced.add(f"{name}/zarr.json")

    # ------------------------------------------------------------------ writing
    @property
    def committed_frames(self) -> int:
        return self.progress.frames

    @property
    def label_size(self) -> tuple[int, int]:
        """(H, W) of the store's label maps."""
        height, width = self._meta["label_size"]
        return int(height), int(width)

    @property
    def attrs(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._meta))

    def update_attrs(self, **values: Any) -> None:
        self._meta.update(json.loads(json.dumps(values)))
        self._write_root()

    def _member_names(self) -> list[str]:
        """Every group and array under the root (what the consolidated metadata lists)."""
        groups = list(TABLE_DIMS)
        if int(self._meta.get("pyramid_levels", 0)):
            groups.append(PYRAMID_GROUP)
        arrays = [*frame_arrays(self._meta), *(f"segments/{c}" for c in SEGMENT_COLUMNS)]
        arrays += segment_vector_arrays(self._meta)
        tracks = [f"tracks/{c}" for c in TRACK_COLUMNS] + track_vector_arrays(self._meta)
        return groups + arrays + tracks

    def _write_root(self, tracks: Mapping[str, np.ndarray] | None = None) -> None:
        """Rewrite the root zarr.json: the attributes (streamseg's and OME's) and the
        consolidated metadata at the committed counts (store_root.py)."""
        if self._members is None:
            self._members = {
                name: group_metadata()
                if name in (*TABLE_DIMS, PYRAMID_GROUP)
                else read_member_metadata(self.path, name)
                for name in self._member_names()
            }
        rows = {name: self.progress.frames for name in frame_arrays(self._meta)}
        rows.update({f"segments/{c}": self.progress.segments for c in SEGMENT_COLUMNS})
        rows.update({n: self.progress.segments for n in segment_vector_arrays(self._meta)})
        rows.update({f"tracks/{c}": self._tracks for c in TRACK_COLUMNS})
        rows.update({n: self._tracks for n in track_vector_arrays(self._meta)})
        source = self._meta.get("source", {})
        name = source.get("path") if isinstance(source, dict) else None
        ome = ome_attributes(
            int(self._meta.get("pyramid_levels", 0)),
            Path(str(name)).name if name else self.path.stem,
            tracks,
            self._meta.get("vocabulary", {}).get("names", []),
        )
        attributes = {ATTRS_KEY: self._meta, OME_KEY: ome}
        write_root(self.path, attributes, self._members, rows)

    def write_block(
        self,
        labels: np.ndarray | Sequence[np.ndarray] | None,
        frames: Mapping[str, np.ndarray],
        segments: Mapping[str, np.ndarray],
        tracker_state: str | None = None,
        extra: dict[str, Any] | None = None,
        commit: bool = True,
        embeddings: np.ndarray | None = None,
    ) -> None:
        """Append whole frames, and (by default) commit everything appended so far.

        Args:
            labels: (n, H, W) int32 track ids of n frames, or n (H, W) maps (stacked here,
                in one copy: zarr writes a shard's frames from one array); None: the n maps
                were written by `append_labels` since the last block.
            frames: FRAME_COLUMNS except segment_start / segment_count, each (n,).
            segments: SEGMENT_COLUMNS, each (m,), `frame` relative to this block (0..n-1).
            tracker_state: tracker JSON after the last frame of the block (with `commit`).
            extra: small JSON-able facts kept in the commit record (e.g. decode counters).
            commit: write the progress record now; otherwise the frames stay invisible (and
                are dropped by a resume) until a later `commit`.
            embeddings: (m, D) the segment rows' CLIP embeddings (search vectors). The first
                block that has them makes the store keep them; a store made without them
                (written before, or by a segmenter that gives none) stays without.

        Raises:
            ValueError: `labels` is None and `append_labels` wrote another number of maps,
                or labels are given while maps written ahead wait for their rows, or the
                labels are not one map per frame.
        """
        if self._lease is not None:
            check_held(self.path, self._lease)  # a fenced writer must not touch the data
        t0, s0 = self._written
        n = int(np.asarray(frames["index"]).shape[0])
        if labels is None:
            if self._labels_ahead != n:
                raise ValueError(
                    f"{n} frames, but {self._labels_ahead} label maps were appended ahead"
                )
        else:
            if self._labels_ahead:
                raise ValueError(f"{self._labels_ahead} label maps appended ahead wait for rows")
            maps = _stacked(labels, self.label_size)
            if maps.shape[0] != n:
                raise ValueError(f"{maps.shape[0]} label maps for {n} frames")
            self._write_labels(t0, maps)
        self._labels_ahead = 0
        local = np.asarray(segments["frame"], np.int64)
        m = int(local.shape[0])
        counts = np.bincount(local, minlength=n).astype(np.int32) if m else np.zeros(n, np.int32)
        starts = (s0 + np.cumsum(counts) - counts).astype(np.int64)
        frame_rows = {**frames, "segment_start": starts, "segment_count": counts}
        for name, dtype in FRAME_COLUMNS.items():
            self._append(f"frames/{name}", t0, np.asarray(frame_rows[name], dtype))
        self._append(TIME_ARRAY, t0, np.asarray(frame_rows["time"], FRAME_COLUMNS["time"]))
        segment_rows = {**segments, "frame": local + t0}
        for name, dtype in SEGMENT_COLUMNS.items():
            self._append(f"segments/{name}", s0, np.asarray(segment_rows[name], dtype))
        if embeddings is not None and m and self._keeps_vectors(embeddings, s0):
            self._append(SEGMENT_EMBEDDING, s0, np.asarray(embeddings, np.float16))
        self._written = (t0 + n, s0 + m)
        if commit:
            self.commit(tracker_state, extra)

    def append_labels(self, labels: np.ndarray) -> None:
        """Write (n, H, W) int32 label maps now, ahead of their frames' table rows, which the
        next `write_block(None, ...)` appends. The store writer writes the maps as they
        arrive, in groups of at least 4 frames, so that a commit's (or a run's last) table
        write does not wait for the maps of all its frames. Like any write, invisible until
        a commit takes them in."""
        if self._lease is not None:
            check_held(self.path, self._lease)
        labels = np.asarray(labels, np.int32)
        self._write_labels(self._written[0] + self._labels_ahead, labels)
        self._labels_ahead += int(labels.shape[0])

    def _write_labels(self, start: int, labels: np.ndarray) -> None:
        """The maps and their pyramid levels at frame rows [start, start + n)."""
        self._append("labels", start, labels)
        level_map = labels
        for level in range(1, int(self._meta.get("pyramid_levels", 0)) + 1):
            # Nearest (a track id is never blended with another): every 2**level-th pixel,
            # taken from the previous level (a quarter of the reads).
            level_map = level_map[:, ::2, ::2].copy()
            self._append(f"{PYRAMID_GROUP}/{level}", start, level_map)

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
        replace_file(self.path / PROGRESS_FILE, progress.to_json())
        self.progress = progress
        # After the record: the consolidated shapes never run ahead of it.
        self._write_root()
        if self._lease is not None:
            self._lease = renew(self.path, self._lease)

    def _keeps_vectors(self, embeddings: np.ndarray, first_row: int) -> bool:
        """Whether this store keeps search vectors, creating their arrays with the first
        block that has them (only while no segment row was written without one)."""
        dim = embedding_dim(self._meta)
        if dim:
            return True
        if first_row > 0 or embeddings.ndim != 2 or embeddings.shape[1] == 0:
            return False
        dim = int(embeddings.shape[1])
        table_chunk = int(self._group["segments"]["track_id"].chunks[0])
        _create_vector_arrays(self._group, dim, table_chunk)
        self._meta[EMBEDDING_DIM_KEY] = dim
        self._members = None  # the consolidated metadata lists the new arrays
        # Durable before any of their rows: a run killed from here on resumes with them.
        names = [*segment_vector_arrays(self._meta), *track_vector_arrays(self._meta)]
        sync_files(self.path, [f"{name}/zarr.json" for name in names])
        self._write_root()
        sync_files(self.path, ["zarr.json"])
        return True

    def _write_track_vectors(
        self, segments: Mapping[str, np.ndarray], embeddings: np.ndarray
    ) -> None:
        """Each track's search vector and best view (video/track_vectors.py), from the
        segments table and the segments' embeddings."""
        vectors = summarize_track_vectors(segments, embeddings)
        columns = {TRACK_EMBEDDING: vectors.embeddings}
        columns.update({f"tracks/{c}": vectors.best[c] for c in TRACK_BEST_COLUMNS})
        for name, values in columns.items():
            array = self._array(name)
            array.resize((len(values), *array.shape[1:]))
            if len(values):
                array[:] = values
            self._unsynced.add(f"{name}/zarr.json")
            self._unsynced.update(written_files(array, name, 0, len(values)))

    def finish(self, **attrs: Any) -> None:
        """Trim the arrays to the committed counts, write the tracks table, mark done
        (commit first: uncommitted frames are dropped)."""
        self._truncate()
        self._written = (self.progress.frames, self.progress.segments)
        self._labels_ahead = 0
        reader = StoreReader(self.path)  # checked and read once for both track tables
        segments = reader.segments
        tracks = summarize_tracks(segments)
        if self._lease is not None:
            check_held(self.path, self._lease)
        for name, dtype in TRACK_COLUMNS.items():
            array = self._array(f"tracks/{name}")
            array.resize((len(tracks[name]),))
            if len(tracks[name]):
                array[:] = np.asarray(tracks[name], dtype)
            self._unsynced.add(f"tracks/{name}/zarr.json")
            self._unsynced.update(written_files(array, f"tracks/{name}", 0, len(tracks[name])))
        self._tracks = len(tracks["track_id"])
        if embedding_dim(self._meta):
            self._write_track_vectors(segments, reader.segment_embeddings())
        self._meta.update(json.loads(json.dumps(attrs)))
        self._meta.update(
            status="done",
            frames=self.progress.frames,
            segments=self.progress.segments,
            tracks=self._tracks,
        )
        self._sync()  # the tracks table first, then the root that calls the store done
        self._write_root(tracks)
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
        # xarray: `time` (a root array) is a coordinate of the labels.
        attributes={"coordinates": TIME_ARRAY},
    )
    for k, (h, w) in enumerate(pyramid_sizes(label_size), start=1):
        group.require_group(PYRAMID_GROUP).create_array(
            str(k),
            shape=(0, h, w),
            chunks=(1, h, w),
            shards=(frames_per_shard, h, w) if frames_per_shard > 0 else None,
            dtype="int32",
            fill_value=0,
            compressors=ZstdCodec(level=level),
            dimension_names=("t", "y", "x"),
        )
    group.create_array(
        TIME_ARRAY,
        shape=(0,),
        chunks=(table_chunk,),
        dtype=FRAME_COLUMNS["time"],
        fill_value=0,
        compressors=ZstdCodec(level=level),
        dimension_names=("t",),
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
                dimension_names=(TABLE_DIMS[table],),
            )


def _stacked(labels: np.ndarray | Sequence[np.ndarray], label_size: tuple[int, int]) -> np.ndarray:
    """(n, H, W) int32 of an array or a sequence of (H, W) maps."""
    if isinstance(labels, np.ndarray):
        return np.asarray(labels, np.int32)
    if not len(labels):
        return np.zeros((0, *label_size), np.int32)
    return np.stack(labels, dtype=np.int32)


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


def _create_vector_arrays(group: Any, dim: int, table_chunk: int) -> None:
    """The search-vector arrays of a store (docs/FORMATS.md)."""
    from zarr.codecs import ZstdCodec

    for name, dims in ((SEGMENT_EMBEDDING, "segment"), (TRACK_EMBEDDING, "track")):
        table, column = name.split("/")
        group[table].create_array(
            column,
            shape=(0, dim),
            chunks=(table_chunk, dim),
            dtype="float16",
            fill_value=0,
            compressors=ZstdCodec(level=3),
            dimension_names=(dims, "embedding"),
            # Left by a run killed before it recorded them: they hold no committed row.
            overwrite=True,
        )
    for column, dtype in TRACK_BEST_COLUMNS.items():
        group["tracks"].create_array(
            column,
            shape=(0,),
            chunks=(table_chunk,),
            dtype=dtype,
            fill_value=0,
            compressors=ZstdCodec(level=3),
            dimension_names=("track",),
            overwrite=True,
        )


def _creation_interrupted(path: Path) -> bool:
    """A store folder whose creation never reached its first commit record: the lease is
    there (only streamseg writes one), `progress.json` is not."""
    return (path / LEASE_FILE).is_file() and not (path / PROGRESS_FILE).exists()
