"""Identity metrics of a tracker on masks: IDF1, identity switches, fragmentations, and the
tracks that cross a camera cut.

Per processed frame, a ground-truth thing and a predicted thing track match when their masks'
IoU is above 0.5 (in a panoptic map masks do not overlap, so each has at most one such
partner: no assignment is needed). Class is not looked at: these metrics measure association.
- IDF1 (Ristani et al., ECCV 2016 workshops): per video, ground-truth ids and predicted ids are
  paired one to one to maximise IDTP, the number of frames where the pair matches;
  IDF1 = 2 IDTP / (ground-truth detections + predicted detections), summed over videos.
- Identity switches (CLEAR MOT, Bernardin & Stiefelhagen 2008): a ground truth matched to
  another track than the one it was last matched to.
- Fragmentations (as py-motmetrics): a ground truth matched again after frames where it was
  present (at least one pixel) but unmatched; frames where it is absent do not interrupt.
- Cut crossings: per video, a predicted thing track seen in n > 1 shots counts n - 1.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

MATCH_IOU = 0.5  # a pair matches above this mask IoU


def match_frame(
    gt_ids: np.ndarray,
    gt_things: Iterable[int],
    pred_ids: np.ndarray,
    pred_things: Iterable[int],
) -> dict[int, int]:
    """Ground-truth things matched to predicted things in one frame.

    Args:
        gt_ids: (H, W) ground-truth segment ids; gt_things: the ids that are things.
        pred_ids: (H, W) predicted track ids; pred_things: the ids that are things.
    Returns:
        {ground-truth id: predicted id} of the pairs with mask IoU > MATCH_IOU.
    """
    gt_keys = np.array(sorted(set(gt_things)), np.int64)
    pred_keys = np.array(sorted(set(pred_things)), np.int64)
    if gt_keys.size == 0 or pred_keys.size == 0:
        return {}
    gt_index = _index_or_minus_one(gt_keys, np.asarray(gt_ids).ravel())
    pred_index = _index_or_minus_one(pred_keys, np.asarray(pred_ids).ravel())
    width = len(pred_keys) + 1
    table = np.bincount(
        (gt_index + 1) * width + (pred_index + 1), minlength=(len(gt_keys) + 1) * width
    ).reshape(len(gt_keys) + 1, width)
    inter = table[1:, 1:]
    union = table[1:].sum(axis=1)[:, None] + table[:, 1:].sum(axis=0)[None, :] - inter
    rows, cols = np.nonzero(inter > MATCH_IOU * union)
    return {int(gt_keys[r]): int(pred_keys[c]) for r, c in zip(rows, cols, strict=True)}


def _index_or_minus_one(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    index = np.clip(np.searchsorted(keys, values), 0, len(keys) - 1)
    return np.where(keys[index] == values, index, -1)


@dataclass(frozen=True)
class IdentityResult:
    """Identity metrics over all videos.

    Attributes:
        idf1, idp, idr: identity F1, precision, recall (fractions; 0 without detections).
        id_switches, fragmentations, cut_crossings: counts.
        gt_detections, pred_detections: thing masks present over all frames.
        matches: frames x pairs matched (the CLEAR MOT true positives).
    """

    idf1: float
    idp: float
    idr: float
    id_switches: int
    fragmentations: int
    cut_crossings: int
    gt_detections: int
    pred_detections: int
    matches: int


@dataclass
class _Video:
    cuts: tuple[int, ...]
    pairs: dict[tuple[int, int], int] = field(default_factory=dict)  # (gt, pred) -> frames
    last_match: dict[int, int] = field(default_factory=dict)  # gt -> last matched pred
    tracked_before: dict[int, bool] = field(default_factory=dict)  # gt -> matched last present
    shots_of: dict[int, set[int]] = field(default_factory=dict)  # pred -> shots seen in


class IdentityMetrics:
    """Streaming identity metrics: `start_video`, then `update` per processed frame."""

    def __init__(self) -> None:
        self._videos: list[_Video] = []
        self.gt_detections = 0
        self.pred_detections = 0
        self.matches = 0
        self.id_switches = 0
        self.fragmentations = 0

    def start_video(self, cuts: Sequence[int] = ()) -> None:
        """Begin a video; `cuts`: frame indices where a new shot starts."""
        self._videos.append(_Video(tuple(sorted(int(c) for c in cuts))))

    def update(
        self,
        frame_index: int,
        gt_ids: np.ndarray,
        gt_things: Iterable[int],
        pred_ids: np.ndarray,
        pred_things: Iterable[int],
    ) -> None:
        """Add one processed frame (arguments as `match_frame`; things absent from the map
        are not counted)."""
        if not self._videos:
            self.start_video()
        video = self._videos[-1]
        gt_present = set(np.unique(gt_ids).tolist()) & {int(g) for g in gt_things}
        pred_present = set(np.unique(pred_ids).tolist()) & {int(p) for p in pred_things}
        self.gt_detections += len(gt_present)
        self.pred_detections += len(pred_present)
        shot = bisect.bisect_right(video.cuts, int(frame_index))
        for pred in pred_present:
            video.shots_of.setdefault(pred, set()).add(shot)
        matched = match_frame(gt_ids, gt_present, pred_ids, pred_present)
        self.matches += len(matched)
        for gt in gt_present:
            pred = matched.get(gt)
            if pred is None:
                if gt in video.tracked_before:
                    video.tracked_before[gt] = False
                continue
            if video.tracked_before.get(gt) is False:
                self.fragmentations += 1
            video.tracked_before[gt] = True
            if gt in video.last_match and video.last_match[gt] != pred:
                self.id_switches += 1
            video.last_match[gt] = pred
            video.pairs[(gt, pred)] = video.pairs.get((gt, pred), 0) + 1

    def result(self) -> IdentityResult:
        import lap

        idtp = 0
        crossings = 0
        for video in self._videos:
            crossings += sum(len(shots) - 1 for shots in video.shots_of.values())
            if not video.pairs:
                continue
            gts = sorted({g for g, _ in video.pairs})
            preds = sorted({p for _, p in video.pairs})
            counts = np.zeros((len(gts), len(preds)), np.int64)
            row = {g: i for i, g in enumerate(gts)}
            col = {p: i for i, p in enumerate(preds)}
            for (g, p), n in video.pairs.items():
                counts[row[g], col[p]] = n
            # lapjv minimises: the most shared frames is the least of (top - shared).
            _, row_to_col, _ = lap.lapjv(
                (counts.max() - counts).astype(np.float64), extend_cost=True
            )
            idtp += int(sum(counts[r, c] for r, c in enumerate(row_to_col) if c >= 0))
        total = self.gt_detections + self.pred_detections
        return IdentityResult(
            idf1=2 * idtp / total if total else 0.0,
            idp=idtp / self.pred_detections if self.pred_detections else 0.0,
            idr=idtp / self.gt_detections if self.gt_detections else 0.0,
            id_switches=self.id_switches,
            fragmentations=self.fragmentations,
            cut_crossings=crossings,
            gt_detections=self.gt_detections,
            pred_detections=self.pred_detections,
            matches=self.matches,
        )
