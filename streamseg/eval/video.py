"""Video panoptic metrics: VPQ (Kim et al., CVPR 2020) and STQ (Weber et al., STEP, 2021).

VPQ follows VIPSeg's `eval_vpq_vspw.py` (VIPSeg-Dataset/VIPSeg-Dataset, itself from VPSNet):
for a window length k, every run of k consecutive frames of a video (starts 0 .. T - k) is one
"image" whose segments are tubes: a segment id's tube over the window takes its category and
crowd flag from the first frame of the window it appears in and sums its areas (ground truth:
JSON areas; prediction: PNG pixel counts); tubes then match exactly as panopticapi's PQ
(`streamseg.eval.panoptic.match_segments`: same category, IoU > 0.5, VOID left out of the
union, unmatched predictions mostly on VOID + same-category crowd ignored). Statistics sum over
all windows of all videos per k; the report averages over categories per k, and `mean`
averages over the window lengths (as the script's final `vpq_all`). A video shorter than k
adds nothing at k. Frames are read once and kept only as small per-frame summaries, the last
max(k) of them.

STQ follows google-research/deeplab2 `evaluation/numpy/segmentation_and_tracking_quality.py`:
STQ = sqrt(AQ x IoU). AQ sums, per sequence, over ground-truth thing tubes g (crowd = instance
0 excluded) 1/|g| x sum over predicted thing tubes p of TPA(p, g) x IoU(p, g), divided by the
number of ground-truth tubes over all sequences; predictions on crowd pixels are not counted.
IoU is the mean class IoU over a confusion matrix with the ignore rows removed, averaged over
classes whose union is non-empty (a prediction of "ignore" on labelled pixels counts as its
own class with IoU 0, as in the reference).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError
from streamseg.eval.panoptic import (
    VOID,
    CategoryStat,
    FrameSegments,
    match_segments,
    summarize_frame,
    summarize_stats,
)

DEFAULT_WINDOWS: tuple[int, ...] = (1, 2, 4, 6, 8)  # frames, as VIPSeg's script


def merge_window(frames: Sequence[FrameSegments]) -> FrameSegments:
    """Tube-level segments of a window of frames: first appearance gives category and crowd
    flag, areas and intersections add up."""
    gt: dict[int, dict[str, Any]] = {}
    pred: dict[int, dict[str, Any]] = {}
    intersections: dict[tuple[int, int], int] = {}
    for frame in frames:
        for target, source in ((gt, frame.gt), (pred, frame.pred)):
            for sid, info in source.items():
                if sid in target:
                    target[sid]["area"] += info["area"]
                else:
                    target[sid] = dict(info)
        for key, count in frame.intersections.items():
            intersections[key] = intersections.get(key, 0) + count
    return FrameSegments(gt=gt, pred=pred, intersections=intersections)


class VideoPanopticQuality:
    """Streaming VPQ over windows of `windows` frames: `start_video`, then `update` per frame.

    Args:
        categories: category id -> entry with `isthing`.
        windows: window lengths in frames (VIPSeg: 1, 2, 4, 6, 8).
    """

    def __init__(
        self, categories: Mapping[int, Mapping[str, Any]], windows: Sequence[int] = DEFAULT_WINDOWS
    ) -> None:
        if not windows or any(int(k) < 1 for k in windows):
            raise UserError(f"--windows: window lengths must be >= 1 frames, got {list(windows)}")
        self.categories = dict(categories)
        self.windows = tuple(dict.fromkeys(int(k) for k in windows))
        self.stats: dict[int, dict[int, CategoryStat]] = {k: {} for k in self.windows}
        self._recent: deque[FrameSegments] = deque(maxlen=max(self.windows))

    def start_video(self) -> None:
        """Begin a new video: windows never span two videos."""
        self._recent.clear()

    def update_frame(self, frame: FrameSegments) -> None:
        """Add one frame's summary; scores every window that ends at this frame."""
        self._recent.append(frame)
        recent = list(self._recent)
        for k in self.windows:
            if len(recent) >= k:
                match_segments(merge_window(recent[-k:]), self.stats[k])

    def update(
        self,
        gt_ids: np.ndarray,
        gt_segments: Mapping[int, Mapping[str, Any]],
        pred_ids: np.ndarray,
        pred_segments: Mapping[int, Mapping[str, Any]],
        gt_name: str = "ground truth",
        pred_name: str = "prediction",
    ) -> None:
        """Add one frame. ids: (H, W) panoptic ids; segments: id -> segments_info entry."""
        self.update_frame(
            summarize_frame(
                gt_ids, gt_segments, pred_ids, pred_segments, self.categories, gt_name, pred_name
            )
        )

    def result(self) -> dict[str, Any]:
        """{"<k>": {"All", "Things", "Stuff", "per_class"}, "mean": {"All", "Things", "Stuff":
        {"pq", "sq", "rq"}}} (fractions)."""
        report: dict[str, Any] = {}
        for k in self.windows:
            report[str(k)] = summarize_stats(self.stats[k], self.categories)
        report["mean"] = {
            group: {
                key: sum(report[str(k)][group][key] for k in self.windows) / len(self.windows)
                for key in ("pq", "sq", "rq")
            }
            for group in ("All", "Things", "Stuff")
        }
        return report


def _count(stats: dict[int, int], values: np.ndarray) -> None:
    ids, counts = np.unique(values, return_counts=True)
    for value, count in zip(ids.tolist(), counts.tolist(), strict=True):
        stats[value] = stats.get(value, 0) + count


class SegmentationTrackingQuality:
    """Streaming STQ with AQ and IoU, as deeplab2's numpy `STQuality`.

    Labels are encoded as deeplab2's: (semantic << label_bit_shift) + instance, semantic in
    [0, num_classes) or `ignore_label`; for thing classes instance 0 is crowd.

    Args:
        num_classes: semantic classes.
        thing_classes: semantic ids of the thing classes.
        ignore_label: the semantic id of unlabelled pixels.
        label_bit_shift: bits of the instance part.
        offset: > every encoded label (pairs are keyed gt * offset + pred).
    """

    def __init__(
        self,
        num_classes: int,
        thing_classes: Sequence[int],
        ignore_label: int = 255,
        label_bit_shift: int = 16,
        offset: int = 2**24,
    ) -> None:
        if offset < num_classes << label_bit_shift:
            raise ValueError(f"offset {offset} < num_classes << label_bit_shift")
        self.num_classes = num_classes
        self.thing_classes = np.asarray(sorted(set(thing_classes)), dtype=np.int64)
        self.ignore_label = ignore_label
        self.shift = label_bit_shift
        self.offset = offset
        # An ignore label outside the classes becomes one extra confusion row/column.
        self.size = num_classes + 1 if ignore_label >= num_classes else num_classes
        self.include = np.array(
            [c for c in range(num_classes) if c != ignore_label]
            if ignore_label < num_classes
            else list(range(num_classes)),
            dtype=np.int64,
        )
        self.confusion: dict[Any, np.ndarray] = {}
        self.gt_areas: dict[Any, dict[int, int]] = {}
        self.pred_areas: dict[Any, dict[int, int]] = {}
        self.intersections: dict[Any, dict[int, int]] = {}
        self.lengths: dict[Any, int] = {}

    def update(self, y_true: np.ndarray, y_pred: np.ndarray, sequence_id: Any = 0) -> None:
        """Add one frame. y_true, y_pred: (H, W) encoded labels."""
        y_true = np.asarray(y_true).astype(np.int64).ravel()
        y_pred = np.asarray(y_pred).astype(np.int64).ravel()
        sem_true = y_true >> self.shift
        sem_pred = y_pred >> self.shift
        if self.ignore_label > self.num_classes:
            sem_true = np.where(sem_true == self.ignore_label, self.num_classes, sem_true)
            sem_pred = np.where(sem_pred == self.ignore_label, self.num_classes, sem_pred)
        for name, sem in (("ground truth", sem_true), ("prediction", sem_pred)):
            if sem.size and (sem.min() < 0 or sem.max() >= self.size):
                raise ValueError(f"{name}: semantic label outside [0, {self.size})")
        if sequence_id not in self.confusion:
            self.confusion[sequence_id] = np.zeros((self.size, self.size), dtype=np.int64)
            self.gt_areas[sequence_id] = {}
            self.pred_areas[sequence_id] = {}
            self.intersections[sequence_id] = {}
            self.lengths[sequence_id] = 0
        self.lengths[sequence_id] += 1
        self.confusion[sequence_id] += np.bincount(
            sem_true * self.size + sem_pred, minlength=self.size * self.size
        ).reshape(self.size, self.size)

        is_thing = np.zeros(self.size, dtype=bool)  # lookup table: faster than np.isin
        is_thing[self.thing_classes[self.thing_classes < self.size]] = True
        gt_thing = is_thing[sem_true]
        pred_thing = is_thing[sem_pred]
        crowd = gt_thing & ((y_true & ((1 << self.shift) - 1)) == 0)
        gt_thing &= ~crowd
        pred_thing &= ~crowd  # no penalty for predictions on crowd regions
        _count(self.pred_areas[sequence_id], y_pred[pred_thing])
        _count(self.gt_areas[sequence_id], y_true[gt_thing])
        both = gt_thing & pred_thing
        _count(self.intersections[sequence_id], y_true[both] * self.offset + y_pred[both])

    def _association(self, sequence_id: Any) -> float:
        """Sum over gt tubes of 1/|g| sum_p TPA x IoU (AQ numerator of one sequence)."""
        pred_areas = self.pred_areas[sequence_id]
        order = {p: i for i, p in enumerate(pred_areas)}
        by_gt: dict[int, list[tuple[int, int]]] = {}
        for key, tpa in self.intersections[sequence_id].items():
            by_gt.setdefault(key // self.offset, []).append((key % self.offset, tpa))
        total = 0.0
        for gt_id, gt_size in self.gt_areas[sequence_id].items():
            inner = 0.0
            # the reference's order: predictions in first-seen order
            for pred_id, tpa in sorted(by_gt.get(gt_id, []), key=lambda item: order[item[0]]):
                union = pred_areas[pred_id] + gt_size - tpa
                inner += tpa * (tpa / union)
            total += 1.0 / gt_size * inner
        return total

    def _mean_iou(self, confusion: np.ndarray) -> float:
        intersections = confusion.diagonal()
        unions = confusion.sum(axis=0) + confusion.sum(axis=1) - intersections
        classes = np.count_nonzero(unions)
        if classes == 0:
            return 0.0  # nothing labelled at all (the reference gives NaN)
        ious = intersections.astype(np.float64) / np.maximum(unions, 1e-15).astype(np.float64)
        return float(np.sum(ious) / classes)

    def result(self) -> dict[str, Any]:
        """{"stq", "aq", "iou", "per_sequence": {id: {"stq", "aq", "iou", "length"}}}."""
        sequences = list(self.confusion)
        aq_sums = [self._association(s) for s in sequences]
        tubes = [len(self.gt_areas[s]) for s in sequences]
        aq = float(np.sum(aq_sums) / max(float(np.sum(tubes)), 1e-15)) if sequences else 0.0
        total = np.zeros((self.size, self.size), dtype=np.int64)
        per_sequence: dict[str, Any] = {}
        for s, aq_sum, n in zip(sequences, aq_sums, tubes, strict=True):
            confusion = np.zeros_like(self.confusion[s])
            confusion[self.include] = self.confusion[s][self.include]  # drop ignore rows
            total += confusion
            seq_aq = aq_sum / max(n, 1e-15)
            seq_iou = self._mean_iou(confusion)
            per_sequence[str(s)] = {
                "stq": math.sqrt(seq_aq * seq_iou),
                "aq": seq_aq,
                "iou": seq_iou,
                "length": self.lengths[s],
            }
        iou = self._mean_iou(total)
        return {"stq": math.sqrt(aq * iou), "aq": aq, "iou": iou, "per_sequence": per_sequence}


class PanopticToSTQ:
    """Encode a video's panoptic frames (ids + segments_info) as STQ labels.

    Category ids map to semantic ids 0..C-1 in `categories` order (VIPSeg's ids already are);
    VOID and ids not in the JSON become the ignore label C. Thing segments get per-video
    instance numbers from 1 in order of first appearance (ground-truth crowd: 0).
    """

    def __init__(
        self, categories: Mapping[int, Mapping[str, Any]], shift: int = 16, crowd: bool = True
    ) -> None:
        self.semantic = {cid: i for i, cid in enumerate(categories)}
        self.crowd = crowd  # honour `iscrowd` (ground truth only)
        self.ignore = len(self.semantic)
        self.shift = shift
        self.instances: dict[int, int] = {}

    def start_video(self) -> None:
        self.instances = {}

    def encode(self, ids: np.ndarray, segments: Mapping[int, Mapping[str, Any]]) -> np.ndarray:
        """ids: (H, W) panoptic ids -> (H, W) int64 (semantic << shift) + instance."""
        lut_ids = [VOID]
        lut_values = [self.ignore << self.shift]
        for sid, info in segments.items():
            semantic = self.semantic[int(info["category_id"])]
            if self.crowd and int(info.get("iscrowd", 0)) == 1:
                instance = 0
            else:
                instance = self.instances.setdefault(int(sid), len(self.instances) + 1)
                if instance >= 1 << self.shift:
                    raise UserError(f"more than {(1 << self.shift) - 1} segments in one video")
            lut_ids.append(int(sid))
            lut_values.append((semantic << self.shift) + instance)
        keys = np.asarray(lut_ids, dtype=np.int64)
        values = np.asarray(lut_values, dtype=np.int64)
        order = np.argsort(keys)
        keys, values = keys[order], values[order]
        flat = ids.astype(np.int64)
        position = np.clip(np.searchsorted(keys, flat), 0, len(keys) - 1)
        found = keys[position] == flat
        return np.where(found, values[position], self.ignore << self.shift)


def parse_windows(text: str) -> tuple[int, ...]:
    """`"1,2,4"` -> (1, 2, 4)."""
    try:
        windows = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise UserError(f"--windows: not a list of frame counts: {text!r}") from None
    if not windows or min(windows) < 1:
        raise UserError(f"--windows: window lengths must be >= 1, got {text!r}")
    return windows


class VideoEvaluation:
    """VPQ and STQ together, fed one frame at a time (each frame is read once)."""

    def __init__(
        self, categories: Mapping[int, Mapping[str, Any]], windows: Sequence[int] = DEFAULT_WINDOWS
    ) -> None:
        self.categories = dict(categories)
        self.vpq = VideoPanopticQuality(self.categories, windows)
        self.encoder = PanopticToSTQ(self.categories)
        self.pred_encoder = PanopticToSTQ(self.categories, crowd=False)
        things = [
            i for i, info in enumerate(self.categories.values()) if int(info.get("isthing", 0))
        ]
        self.stq = SegmentationTrackingQuality(
            num_classes=len(self.categories),
            thing_classes=things,
            ignore_label=len(self.categories),
            label_bit_shift=16,
            # pair keys gt * offset + pred stay within int64 for any class count
            offset=max(2**24, (len(self.categories) + 1) << 16),
        )
        self.video: str | None = None

    def start_video(self, video_id: str) -> None:
        self.video = video_id
        self.vpq.start_video()
        self.encoder.start_video()
        self.pred_encoder.start_video()

    def update(
        self,
        gt_ids: np.ndarray,
        gt_segments: Mapping[int, Mapping[str, Any]],
        pred_ids: np.ndarray,
        pred_segments: Mapping[int, Mapping[str, Any]],
        gt_name: str = "ground truth",
        pred_name: str = "prediction",
    ) -> None:
        frame = summarize_frame(
            gt_ids, gt_segments, pred_ids, pred_segments, self.categories, gt_name, pred_name
        )
        self.vpq.update_frame(frame)
        self.stq.update(
            self.encoder.encode(gt_ids, gt_segments),
            self.pred_encoder.encode(pred_ids, {p: pred_segments[p] for p in frame.pred}),
            sequence_id=self.video,
        )

    def result(self) -> dict[str, Any]:
        """{"vpq": VideoPanopticQuality.result(), "stq": {"stq", "aq", "sq", "per_video"}}
        ("sq" = STQ's segmentation quality, the mean IoU)."""
        stq = self.stq.result()
        return {
            "vpq": self.vpq.result(),
            "stq": {
                "stq": stq["stq"],
                "aq": stq["aq"],
                "sq": stq["iou"],
                "per_video": stq["per_sequence"],
            },
        }


def evaluate_vipseg(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
    windows: Sequence[int] = DEFAULT_WINDOWS,
) -> dict[str, Any]:
    """VPQ and STQ of VIPSeg-format predictions (JSON + DIR/<video>/<file_name> PNGs)."""
    from streamseg.eval.formats import pair_vipseg, read_categories, read_json, segments_by_id
    from streamseg.panoptic_png import read_panoptic_png

    gt_data = read_json(gt_json)
    pred_data = read_json(pred_json)
    evaluation = VideoEvaluation(read_categories(gt_data, gt_json), windows)
    for gt_video, pred_video in pair_vipseg(gt_data, gt_json, pred_data, pred_json):
        evaluation.start_video(gt_video.video_id)
        for gt_frame, pred_frame in zip(gt_video.frames, pred_video.frames, strict=True):
            gt_png = Path(gt_dir) / gt_video.video_id / gt_frame["file_name"]
            pred_png = Path(pred_dir) / pred_video.video_id / pred_frame["file_name"]
            gt_ids = read_panoptic_png(gt_png)
            evaluation.update(
                gt_ids,
                segments_by_id(gt_frame, gt_json),
                read_panoptic_png(pred_png, size=gt_ids.shape),
                segments_by_id(pred_frame, pred_json),
                gt_name=str(gt_png),
                pred_name=str(pred_png),
            )
    return evaluation.result()
