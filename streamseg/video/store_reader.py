"""`StoreReader`: a label store read back (committed frames only, also while it is written).

Reads of many frames go through iterators in pieces of whole storage files (`iter_labels`,
`iter_track_mask`), so a long video's labels never need to fit in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError
from streamseg.video.store_commit import (
    load_progress,
    read_rows,
    store_problems,
    undecodable_tables,
)
from streamseg.video.store_damage import DamagedStore
from streamseg.video.store_schema import (
    ATTRS_KEY,
    FRAME_COLUMNS,
    SEGMENT_COLUMNS,
    SEGMENT_EMBEDDING,
    TRACK_BEST_COLUMNS,
    TRACK_COLUMNS,
    TRACK_EMBEDDING,
    embedding_dim,
    is_store,
    schema_of,
)
from streamseg.video.store_tracks import summarize_tracks
from streamseg.video.track_vectors import TrackVectors, summarize_track_vectors

# Most label bytes read at once by the iterators (a 4K int32 frame is 33 MB: one at a time).
READ_BYTES = 64 << 20


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
        # The members' own metadata: the consolidated copy may lag the commit record by one.
        self._group = zarr.open_group(str(self.path), mode="r", use_consolidated=False)
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
    def schema(self) -> int:
        """The store's schema version (1: tables by "row"; 2: t-indexed, OME, consolidated)."""
        return schema_of(self.attrs)

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

    def _piece_frames(self) -> int:
        """Frames per read of the iterators: a storage file's worth (one read per shard),
        fewer when that exceeds READ_BYTES."""
        array = self._group["labels"]
        rows = int((array.shards or array.chunks)[0])
        height, width = self.label_size
        return max(1, min(rows, READ_BYTES // max(1, 4 * height * width)))

    def iter_labels(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Label maps of frames [start, stop), one (H, W) int32 at a time; read a storage
        file at a time, so memory stays bounded by one file's frames however long the range."""
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        step = self._piece_frames()
        # Pieces aligned to the files: a shard is decoded once, not once per piece.
        edges = [start, *range(start - start % step + step, stop, step), stop]
        for first, last in zip(edges[:-1], edges[1:], strict=True):
            if first < last:
                yield from self._rows("labels", first, last)

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

    def segment_embeddings(self) -> np.ndarray:
        """(N, D) float16: each segment row's CLIP embedding; (N, 0) in a store without."""
        if not embedding_dim(self.attrs):
            return np.zeros((self.num_segments, 0), np.float16)
        return self._rows(SEGMENT_EMBEDDING, 0, self.num_segments)

    def track_vectors(self) -> TrackVectors | None:
        """Each track's search vector and best view, in the tracks table's order (written at
        finish; derived from the segments before); None in a store without vectors."""
        if not embedding_dim(self.attrs):
            return None
        if self.status == "done":
            size = self._group["tracks"]["track_id"].shape[0]
            best = {c: self._rows(f"tracks/{c}", 0, size) for c in TRACK_BEST_COLUMNS}
            return TrackVectors(self._rows(TRACK_EMBEDDING, 0, size), best)
        return summarize_track_vectors(self.segments, self.segment_embeddings())

    def track_span(self, track_id: int) -> tuple[int, int]:
        """First and last frame with a segment of the track (KeyError if it has none). A
        finished store answers from its tracks table; a running one scans the segments table
        a chunk at a time."""
        if self.status == "done":
            tracks = self.tracks
            row = np.flatnonzero(tracks["track_id"] == track_id)
            if row.size:
                return int(tracks["first_frame"][row[0]]), int(tracks["last_frame"][row[0]])
            raise KeyError(f"no track {track_id} in {self.path}")
        first, last = None, None
        step = int(self._group["segments/track_id"].chunks[0])
        for begin in range(0, self.num_segments, step):
            stop = min(begin + step, self.num_segments)
            rows = np.flatnonzero(self._rows("segments/track_id", begin, stop) == track_id)
            if rows.size:
                frames = self._rows("segments/frame", begin, stop)[rows]
                first = int(frames.min()) if first is None else min(first, int(frames.min()))
                last = int(frames.max()) if last is None else max(last, int(frames.max()))
        if first is None or last is None:
            raise KeyError(f"no track {track_id} in {self.path}")
        return first, last

    def iter_track_mask(
        self, track_id: int, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """The mask of one track frame by frame, on the frames of [start, stop) between its
        first and last segment: (frame row, (H, W) bool), in bounded memory (`iter_labels`)."""
        first, last = self.track_span(track_id)
        begin = max(first, start)
        end = last + 1 if stop is None else min(last + 1, stop)
        for t, labels in enumerate(self.iter_labels(begin, end), start=begin):
            yield t, labels == track_id

    def track_mask(self, track_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The mask of one track over time, on the frames between its first and last segment
        (all in memory: `iter_track_mask` streams it).

        Returns:
            frames (F,) int64 rows, masks (F, H, W) bool.
        """
        first, last = self.track_span(track_id)
        masks = np.zeros((last + 1 - first, *self.label_size), bool)
        for t, mask in self.iter_track_mask(track_id):
            masks[t - first] = mask
        return np.arange(first, last + 1), masks

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
