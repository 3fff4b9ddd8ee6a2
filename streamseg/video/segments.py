"""Segments between the model and the store: filtering, the segments-table rows, columns.

The model's `FrameSegmentation` is filtered (`SegmentFilter`: score, area, kept classes),
tracked, then written as rows of the store's segments table (one row per track present in a
frame, `SEGMENT_NAMES` order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamseg.config import ModelSettings
from streamseg.errors import UserError
from streamseg.model.outputs import FrameSegmentation, Segment
from streamseg.video.track import TrackResult

# Columns of the segments table, in row order (store.SEGMENT_COLUMNS gives their dtypes).
SEGMENT_NAMES = (
    "frame",
    "track_id",
    "class_id",
    "score",
    "area",
    "bbox_x",
    "bbox_y",
    "bbox_w",
    "bbox_h",
    "is_thing",
)
# One row of the segments table: frame, track_id, class_id, score, area, x, y, w, h, is_thing.
SegmentRow = tuple[int, int, int, float, int, int, int, int, int, bool]


def filter_segmentation(
    seg: FrameSegmentation,
    score_threshold: float = 0.0,
    min_area: int = 0,
    keep: set[int] | frozenset[int] | None = None,
) -> FrameSegmentation:
    """Drop segments by score, area or class; their pixels become 0.

    Args:
        seg: panoptic (H, W), segments, embeddings (N, D).
        keep: class ids to keep (None = all).
    Returns:
        a new FrameSegmentation with the kept segments (ids unchanged).
    """
    kept = [
        i
        for i, s in enumerate(seg.segments)
        if s.score >= score_threshold
        and s.area >= min_area
        and (keep is None or s.class_id in keep)
    ]
    if len(kept) == len(seg.segments):
        return seg
    panoptic = np.asarray(seg.panoptic)
    # One table lookup over the pixels: kept ids map to themselves, every other value to 0.
    table = np.zeros(int(panoptic.max(initial=0)) + 1, np.int32)
    ids = np.array([seg.segments[i].id for i in kept], np.int64)
    ids = ids[ids < len(table)]
    table[ids] = ids
    panoptic = table[panoptic]
    embeddings = np.asarray(seg.embeddings)
    embeddings = embeddings[kept] if embeddings.shape[0] == len(seg.segments) else embeddings
    return FrameSegmentation(
        panoptic=panoptic, segments=[seg.segments[i] for i in kept], embeddings=embeddings
    )


def keep_classes(names: Sequence[str], keep: Sequence[str]) -> frozenset[int] | None:
    """Vocabulary indices of `--keep` names (None: keep every class).

    Raises:
        UserError: a name that is not in the vocabulary.
    """
    if not keep:
        return None
    unknown = [name for name in keep if name not in names]
    if unknown:
        raise UserError(f"--keep: not in the vocabulary: {', '.join(unknown)}")
    return frozenset(list(names).index(name) for name in keep)


@dataclass(frozen=True)
class SegmentFilter:
    """Which segments a run keeps (`ModelSettings` score_threshold, min_area, keep)."""

    score_threshold: float = 0.0
    min_area: int = 0
    keep: frozenset[int] | None = None  # class ids (None = all)

    @classmethod
    def from_settings(cls, settings: ModelSettings, names: Sequence[str]) -> SegmentFilter:
        """The filter of a run's model settings over the vocabulary `names`."""
        return cls(settings.score_threshold, settings.min_area, keep_classes(names, settings.keep))

    def __call__(self, seg: FrameSegmentation) -> FrameSegmentation:
        return filter_segmentation(seg, self.score_threshold, self.min_area, self.keep)


def segment_rows(frame: int, segments: list[Segment], result: TrackResult) -> list[SegmentRow]:
    """Rows of the segments table for one frame: one row per track present.

    Segments that share a track (several pieces of one stuff class) are merged: areas add up,
    the score is their area-weighted mean, the box is their union, the class is the largest
    piece's.

    Returns:
        tuples in SEGMENT_NAMES order (frame, track_id, class_id, score, area, x, y, w, h,
        is_thing), sorted by track id.
    """
    merged: dict[int, list[Segment]] = {}
    for segment, track_id in zip(segments, result.track_ids.tolist(), strict=True):
        merged.setdefault(int(track_id), []).append(segment)
    rows: list[SegmentRow] = []
    for track_id in sorted(merged):
        pieces = merged[track_id]
        area = sum(int(s.area) for s in pieces)
        main = max(pieces, key=lambda s: s.area)
        score = sum(float(s.score) * s.area for s in pieces) / area if area else float(main.score)
        x0 = min(s.bbox[0] for s in pieces)
        y0 = min(s.bbox[1] for s in pieces)
        x1 = max(s.bbox[0] + s.bbox[2] for s in pieces)
        y1 = max(s.bbox[1] + s.bbox[3] for s in pieces)
        rows.append(
            (frame, track_id, main.class_id, score, area, x0, y0, x1 - x0, y1 - y0, main.is_thing)
        )
    return rows


def segment_columns(rows: Sequence[SegmentRow]) -> dict[str, np.ndarray]:
    """The segments-table columns of `rows`: {name: (n,) array} in SEGMENT_NAMES."""
    if not rows:
        return {name: np.zeros(0) for name in SEGMENT_NAMES}
    columns = list(zip(*rows, strict=True))
    return {name: np.array(values) for name, values in zip(SEGMENT_NAMES, columns, strict=True)}
