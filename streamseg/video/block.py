"""`StoreBlock`: what the segmenting loop hands to the store writer thread.

A block is a run of whole frames (labels, frame-table and segments-table columns, the overlay
pictures) and maybe a `Commit`: the tracker state and facts after its last frame, which make
everything written so far visible and resumable. A block without frames only commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from streamseg.video.frames import Frame
from streamseg.video.segment_track import TrackedFrame
from streamseg.video.segments import segment_columns

# Columns of the frames table.
FRAME_NAMES = ("index", "pts", "time", "keyframe", "corrupt")


@dataclass(frozen=True)
class OverlayItem:
    """One frame of the overlay video.

    Attributes:
        image: (H, W, 3) uint8 RGB at the source size (drawn under the labels); frames are
            decoded with it when a run writes an overlay.
        labels: (h, w) int32 track ids (scaled to the image when drawn).
        track_names: {track id: class name} written next to each track.
        pts, time: the frame's own timestamp (stream time base) and seconds.
    """

    image: np.ndarray | None
    labels: np.ndarray
    track_names: dict[int, str]
    pts: int | None
    time: float


@dataclass(frozen=True)
class Commit:
    """What a commit records: the tracker after the block, and facts about the source."""

    tracker_state: str  # TrackerState JSON
    facts: dict[str, Any]  # the progress record's `extra` (decode or live counters)


def frame_columns(frames: Sequence[Frame]) -> dict[str, np.ndarray]:
    """The frames-table columns of `frames`: {name: (n,) array} in FRAME_NAMES (pts -1 =
    none)."""
    return {
        "index": np.array([f.index for f in frames]),
        "pts": np.array([-1 if f.pts is None else f.pts for f in frames]),
        "time": np.array([f.time for f in frames], np.float64),
        "keyframe": np.array([f.keyframe for f in frames]),
        "corrupt": np.array([f.corrupt for f in frames]),
    }


@dataclass(frozen=True)
class StoreBlock:
    """Whole frames for the store (and overlay), and maybe a commit after them.

    Attributes:
        labels: n (H, W) int32 track-id maps, one per frame: kept apart, since stacking them
            costs a full copy of every map (~8 MB a frame at 1080p); the store writer copies
            them into the one contiguous array zarr writes. Empty once the writer has written
            them (its blocks waiting for a commit keep only their table rows).
        frames: frames-table columns, (n,) each (FRAME_NAMES).
        segments: segments-table columns, (m,) each (segments.SEGMENT_NAMES); `frame` counts
            from the block's first frame.
        overlay: the frames' overlay pictures (empty without an overlay).
        commit: commit after this block (None: not yet).
        segment_embeddings: (m, D) float16, each segment row's CLIP embedding (None: the
            segmenter gave none; the store then keeps no vectors).
    """

    labels: tuple[np.ndarray, ...]
    frames: dict[str, np.ndarray]
    segments: dict[str, np.ndarray]
    overlay: tuple[OverlayItem, ...] = ()
    commit: Commit | None = None
    segment_embeddings: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        """Frames of the block (its frames-table rows: the maps may have been written)."""
        return len(self.frames["index"])

    @classmethod
    def empty(cls, commit: Commit | None = None) -> StoreBlock:
        """A block without frames (it only commits)."""
        return cls(
            labels=(),
            frames={name: np.zeros(0) for name in FRAME_NAMES},
            segments=segment_columns([]),
            commit=commit,
        )

    @classmethod
    def of_frames(
        cls, tracked: Sequence[TrackedFrame], commit: Commit | None = None, overlay: bool = False
    ) -> StoreBlock:
        """The block of one or more tracked frames (`overlay`: keep their pictures)."""
        rows = [(i, *row[1:]) for i, item in enumerate(tracked) for row in item.rows]
        pictures = tuple(
            OverlayItem(t.frame.source_image, t.labels, t.track_names, t.frame.pts, t.frame.time)
            for t in (tracked if overlay else ())
        )
        vectors = [t.embeddings for t in tracked]
        return cls(
            labels=tuple(t.labels for t in tracked),
            frames=frame_columns([t.frame for t in tracked]),
            segments=segment_columns(rows),
            overlay=pictures,
            commit=commit,
            segment_embeddings=_joined(vectors),
        )


def join_blocks(blocks: Sequence[StoreBlock]) -> StoreBlock:
    """The frames of `blocks` as one block (segment frames renumbered; no overlay, no
    commit): one store write instead of one per block."""
    if len(blocks) == 1:
        # Nothing to join: no copy of its labels.
        return replace(blocks[0], overlay=(), commit=None)
    offsets = np.cumsum([0] + [b.num_frames for b in blocks[:-1]])
    segments = {}
    for name in blocks[0].segments:
        parts = [b.segments[name] for b in blocks]
        if name == "frame":
            parts = [np.asarray(p, np.int64) + o for p, o in zip(parts, offsets, strict=True)]
        segments[name] = np.concatenate(parts)
    return StoreBlock(
        labels=tuple(labels for b in blocks for labels in b.labels),
        frames={
            name: np.concatenate([b.frames[name] for b in blocks]) for name in blocks[0].frames
        },
        segments=segments,
        segment_embeddings=_joined([b.segment_embeddings for b in blocks if b.num_frames]),
    )


def _joined(parts: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """The parts' rows as one array; None when any part has none."""
    if any(part is None for part in parts):
        return None
    arrays = [np.asarray(part, np.float16) for part in parts if part is not None]
    return np.concatenate(arrays) if arrays else None
