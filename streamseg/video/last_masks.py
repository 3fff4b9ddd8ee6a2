"""Where each track's last seen mask lives, and the IoU of those masks with a new frame.

A track's last mask is not a boolean mask of its own: it is a label in the runs
(`LabelRuns`) of the frame where the track was last seen, shared by every track seen in that
frame. The overlaps of all the tracks last seen in one frame with all the segments of a new
frame come from one joint count over the two maps' runs, so the cost grows with the number of
frames the live tracks were last seen in and with the runs of the maps, not with pixels times
tracks. A frame is dropped as soon as no track points into it.

The COCO RLE of a mask (the tracker state's `mask_counts`) is only made when asked for, from
the column-major runs of its frame, made once per frame.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from streamseg.video.label_runs import (
    LabelRuns,
    joint_counts_each,
    label_areas,
    label_runs,
    mask_counts_of_label,
    reorder_runs,
)
from streamseg.video.rle import counts_to_mask


def iou_from_counts(
    intersections: np.ndarray, mask_areas: np.ndarray, segment_areas: np.ndarray
) -> np.ndarray:
    """IoU from pixel counts.

    Args:
        intersections: (K, N) int pixels shared by mask k and segment n.
        mask_areas: (K,) int; segment_areas: (N,) int.
    Returns:
        (K, N) float64 `inter / union`, 0 where the union is empty.
    """
    union = mask_areas[:, None] + segment_areas[None, :] - intersections
    return np.where(union > 0, intersections / np.maximum(union, 1), 0.0)


@dataclass(frozen=True)
class MaskOverlaps:
    """Pixel counts of K last masks against N segments of a frame.

    Attributes:
        intersections: (K, N) int64 pixels shared by mask k and segment n.
        mask_areas: (K,) int64 (0: a mask of another label size than the frame's).
        segment_areas: (N,) int64.
    """

    intersections: np.ndarray
    mask_areas: np.ndarray
    segment_areas: np.ndarray


@dataclass
class _Frame:
    runs: LabelRuns  # row-major runs of the frame's label map
    step: int  # processed-frame counter of the frame
    columns: LabelRuns | None = None  # column-major runs, once an RLE was asked for

    def counts(self, label: int) -> list[int]:
        if self.columns is None:
            self.columns = reorder_runs(self.runs)
        return mask_counts_of_label(self.columns, label)


class LastMasks:
    """The last seen mask of each track, as (frame, label) (see the module docstring).

    Usage:
        key = masks.add_frame(label_runs(panoptic), step)
        masks.point(track_id, key, segment_id)       # the track was seen in that frame
        iou = masks.iou(track_ids, label_runs(next_panoptic), segment_ids)
        counts = masks.counts(track_id)              # COCO RLE counts of its last mask
    """

    def __init__(self) -> None:
        self._frames: dict[int, _Frame] = {}
        self._where: dict[int, tuple[int, int]] = {}  # track id -> (frame key, label)
        self._next_key = 0

    def __contains__(self, track_id: int) -> bool:
        return track_id in self._where

    def add_frame(self, runs: LabelRuns, step: int) -> int:
        """Keep a frame's row-major runs; returns its key for `point`."""
        key = self._next_key
        self._next_key += 1
        self._frames[key] = _Frame(runs, step)
        return key

    def point(self, track_id: int, key: int, label: int) -> None:
        """The track's last mask is now `label` in frame `key`."""
        self._where[track_id] = (key, int(label))

    def adopt(self, track_id: int, size: list[int], counts: list[int], step: int) -> None:
        """A track known only by its COCO RLE (a resumed state): its mask becomes label 1 of
        a frame of its own."""
        mask = counts_to_mask(counts, int(size[0]), int(size[1]))
        key = self.add_frame(label_runs(mask.view(np.uint8)), step)
        self.point(track_id, key, 1)

    def forget(self, track_id: int) -> None:
        """The track ended."""
        self._where.pop(track_id, None)

    def iou(self, track_ids: list[int], current: LabelRuns, segment_ids: np.ndarray) -> np.ndarray:
        """IoU of the tracks' last masks with segments of a new frame.

        Args:
            track_ids: K tracks, each pointed (`point` / `adopt`).
            current: row-major runs of the new frame's (H, W) label map.
            segment_ids: (N,) labels of the segments in `current`.
        Returns:
            (K, N) float64; a mask of another label size than the new frame's has IoU 0
            (where it was is unknown at this size).
        """
        overlaps = self.overlaps(track_ids, current, segment_ids)
        return iou_from_counts(overlaps.intersections, overlaps.mask_areas, overlaps.segment_areas)

    def overlaps(
        self, track_ids: list[int], current: LabelRuns, segment_ids: np.ndarray
    ) -> MaskOverlaps:
        """Pixel counts of the tracks' last masks with segments of a new frame (arguments as
        `iou`); a mask of another label size than the new frame's counts as empty."""
        overlaps = MaskOverlaps(
            np.zeros((len(track_ids), len(segment_ids)), np.int64),
            np.zeros(len(track_ids), np.int64),
            np.zeros(len(segment_ids), np.int64),
        )
        if not track_ids or len(segment_ids) == 0:
            return overlaps
        rows_of: dict[int, list[int]] = {}
        for row, track_id in enumerate(track_ids):
            key = self._where[track_id][0]
            if self._frames[key].runs.shape == current.shape:
                rows_of.setdefault(key, []).append(row)
        earlier = [
            (
                self._frames[key].runs,
                np.array([self._where[track_ids[row]][1] for row in rows], np.int64),
            )
            for key, rows in rows_of.items()
        ]
        overlaps.segment_areas[:] = label_areas(current, segment_ids)
        counted = joint_counts_each(earlier, current, segment_ids)
        for rows, (inter, mask_areas) in zip(rows_of.values(), counted, strict=True):
            overlaps.intersections[rows] = inter
            overlaps.mask_areas[rows] = mask_areas
        return overlaps

    def counts(self, track_id: int) -> list[int]:
        """COCO RLE counts (`rle.mask_to_counts`) of the track's last mask."""
        return self.deferred_counts(track_id)()

    def deferred_counts(self, track_id: int) -> Callable[[], list[int]]:
        """`counts(track_id)` as of now, to be made later: the frames are never modified, so
        holding one keeps the mask however the tracks move on."""
        key, label = self._where[track_id]
        return partial(self._frames[key].counts, label)

    def release(self, before_step: int, wanted: set[int]) -> dict[int, list[int]]:
        """Drop the frames seen before `before_step` and those no track points into.

        Args:
            before_step: frames of an earlier processed-frame counter go.
            wanted: tracks whose RLE is still owed (stale in the state).
        Returns:
            {track id: counts} of the wanted tracks whose last mask was in a dropped frame.
        """
        owed: dict[int, list[int]] = {}
        for track_id, (key, _) in list(self._where.items()):
            if self._frames[key].step < before_step:
                if track_id in wanted:
                    owed[track_id] = self.counts(track_id)
                del self._where[track_id]
        users = Counter(key for key, _ in self._where.values())
        for key in [key for key in self._frames if not users[key]]:
            del self._frames[key]
        return owed
