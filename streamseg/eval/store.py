"""A streamseg label store read as panoptic predictions, and its VPQ / STQ against VIPSeg data.

Each frame's panoptic ids are the store's track ids; a track's category is its class voted over
the whole track (the `tracks` table), mapped to the dataset's categories by name or synonym
(`streamseg.eval.categories`). Pixels of a class without a category become VOID (0).
`streamseg export` writes exactly these frames, so exporting and scoring the files gives the
same numbers as scoring the store.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError

MAX_PNG_ID = 256**3 - 1  # a COCO/VIPSeg PNG holds ids < 2^24


class StorePrediction:
    """Per-frame (ids, segments) of a store, with categories of `categories`.

    Args:
        path: the store (.zarr).
        categories: dataset category id -> entry; None = the store's own vocabulary
            (class i -> id i + 1).
        category_map: overrides {store class name: category id | name | None}.
    """

    def __init__(
        self,
        path: str | Path,
        categories: Mapping[int, Mapping[str, Any]] | None = None,
        category_map: Mapping[str, Any] | None = None,
    ) -> None:
        from streamseg.eval.categories import map_classes, vocabulary_categories, vocabulary_classes
        from streamseg.video.store import open_store

        self.path = Path(path)
        self.reader = open_store(path)
        self.classes = vocabulary_classes(self.reader.attrs)
        if not self.classes:
            raise UserError(f"{path}: the store has no vocabulary")
        self.categories = (
            dict(categories) if categories is not None else vocabulary_categories(self.classes)
        )
        self.class_to_category, self.unmapped = map_classes(
            self.classes, self.categories, category_map
        )
        tracks = self.reader.tracks
        self.track_class = {
            int(t): int(c) for t, c in zip(tracks["track_id"], tracks["class_id"], strict=True)
        }
        segments = self.reader.segments
        self._segment_frame = segments["frame"]
        self._segment_track = segments["track_id"]
        self._segment_class = segments["class_id"]
        self._segment_score = segments["score"]
        self.track_score = {
            int(t): float(s) for t, s in zip(tracks["track_id"], tracks["score"], strict=True)
        }

    def __len__(self) -> int:
        return self.reader.num_frames

    @property
    def label_size(self) -> tuple[int, int]:
        return self.reader.label_size

    def category_of_track(self, track_id: int, frame: int) -> int | None:
        """The dataset category of a track (voted class), None when unmapped."""
        class_id = self.track_class.get(track_id)
        if class_id is None:  # not in the tracks table: this frame's segment class
            rows = np.flatnonzero(
                (self._segment_frame == frame) & (self._segment_track == track_id)
            )
            if rows.size == 0:
                return None
            class_id = int(self._segment_class[rows[0]])
        return self.class_to_category.get(class_id)

    def frame(self, t: int) -> tuple[np.ndarray, dict[int, dict[str, Any]]]:
        """Frame t: (H, W) uint32 ids (0 = none) and {id: {"id", "category_id", "iscrowd",
        "area", "bbox"}} in id order."""
        labels = self.reader.labels(t).astype(np.int64)
        ids, counts = np.unique(labels, return_counts=True)
        segments: dict[int, dict[str, Any]] = {}
        dropped = []
        for track_id, count in zip(ids.tolist(), counts.tolist(), strict=True):
            if track_id == 0:
                continue
            if not 0 < track_id <= MAX_PNG_ID:
                raise UserError(f"{self.path}: track id {track_id} does not fit a panoptic PNG")
            category = self.category_of_track(track_id, t)
            if category is None:
                dropped.append(track_id)
                continue
            ys, xs = np.nonzero(labels == track_id)
            x0, y0 = int(xs.min()), int(ys.min())
            segments[track_id] = {
                "id": track_id,
                "category_id": category,
                "iscrowd": 0,
                "area": int(count),
                "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
            }
        if dropped:
            labels[np.isin(labels, dropped)] = 0
        return labels.astype(np.uint32), segments

    def __iter__(self) -> Iterator[tuple[np.ndarray, dict[int, dict[str, Any]]]]:
        for t in range(len(self)):
            yield self.frame(t)


def evaluate_store(
    store: str | Path,
    gt_json: str | Path,
    gt_dir: str | Path,
    video_id: str | None = None,
    category_map: str | Path | Mapping[str, Any] | None = None,
    windows: Sequence[int] | None = None,
) -> dict[str, Any]:
    """VPQ + STQ of one store against one video of VIPSeg-format ground truth.

    Frames pair by position; the store must have the video's frame count and frame size.
    The result also lists `unmapped_classes` (store classes scored as VOID).
    """
    from streamseg.eval.categories import read_category_map
    from streamseg.eval.formats import (
        iter_vipseg_videos,
        read_categories,
        read_json,
        segments_by_id,
    )
    from streamseg.eval.video import DEFAULT_WINDOWS, VideoEvaluation
    from streamseg.panoptic_png import read_panoptic_png

    gt_data = read_json(gt_json)
    categories = read_categories(gt_data, gt_json)
    videos = list(iter_vipseg_videos(gt_data, gt_json))
    if video_id is None:
        if len(videos) != 1:
            raise UserError(f"{gt_json}: {len(videos)} videos; name the store's one with --video")
        video = videos[0]
    else:
        matches = [v for v in videos if v.video_id == str(video_id)]
        if not matches:
            raise UserError(f"{gt_json}: no video {video_id!r}")
        video = matches[0]
    overrides = (
        category_map if isinstance(category_map, Mapping) else read_category_map(category_map)
    )
    prediction = StorePrediction(store, categories, overrides)
    if len(prediction) != len(video.frames):
        raise UserError(
            f"{store}: {len(prediction)} frames, video {video.video_id!r} of {gt_json} has "
            f"{len(video.frames)}"
        )
    evaluation = VideoEvaluation(categories, windows or DEFAULT_WINDOWS)
    evaluation.start_video(video.video_id)
    for t, gt_frame in enumerate(video.frames):
        gt_png = Path(gt_dir) / video.video_id / gt_frame["file_name"]
        gt_ids = read_panoptic_png(gt_png)
        pred_ids, pred_segments = prediction.frame(t)
        if pred_ids.shape != gt_ids.shape:
            raise UserError(
                f"{store}: label size {pred_ids.shape[0]}x{pred_ids.shape[1]} differs from "
                f"{gt_png}'s {gt_ids.shape[0]}x{gt_ids.shape[1]}"
            )
        evaluation.update(
            gt_ids,
            segments_by_id(gt_frame, gt_json),
            pred_ids,
            pred_segments,
            gt_name=str(gt_png),
            pred_name=f"{store} frame {t}",
        )
    result = evaluation.result()
    result["unmapped_classes"] = prediction.unmapped
    return result
