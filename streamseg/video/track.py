"""Link per-frame panoptic segments into tracks whose ids stay the same object over time.

Per frame (`Tracker.step`):
- stuff segments (grass, sky, ...) get one id per class for the whole video: there is only
  one "sky", so there is nothing to match;
- thing segments are assigned to live thing tracks by a linear assignment (lapx `lapjv`) on
  `cost = w * (1 - mask IoU) + (1 - w) * cosine distance + class_penalty * [class differs]`,
  with `cost_limit` inside the solver (pairs above it stay unassigned; solving first and
  thresholding afterwards gives different, worse matches);
- unmatched thing segments start new tracks; a thing track unseen for more than
  `max_age_seconds` of video time ends (`max_age_seconds` 0: more than `max_age` processed
  frames, the rule before issue 18);
- with `motion`, the IoU term is the larger of the mask IoU and the IoU of the track's last box
  moved by its velocity (pixels per second of video time) with the segment's box, so that a
  skipped frame or a fast object still overlaps where it went;
- with `cut_threshold`, a frame where most pixels changed class since the previous processed
  frame is a shot cut: every thing track ends there (no identity crosses a cut).
- with `unknown_appearance_neutral`, a zero embedding (appearance unknown: a mask too small
  for the stride-32 CLIP map) leaves a pair's cost to geometry alone: `1 - max(IoU, overlap
  coefficient of the predicted box, cut to the frame, with the segment's box, both grown by
  `unknown_box_margin`)`, so slivers entering or leaving the view follow their track;
- with `reid_unique_class`, a track lost for a frame or more that is the only lost track of its
  class takes the only unassigned segment of that class (embeddings within `reid_distance`,
  or unknown): an object back in view after a few seconds keeps its id;
- with `geometry_match_iou`, tracks and segments still apart are assigned again on mask IoU
  alone, and with `piece_containment` / `absorb_containment` a second piece of an object
  tracked in this frame gets its label and a track that was such a piece ends
  (`video/track_leftovers.py`): the model's class and embedding of one object flicker, and it
  now and then splits one object between two queries. These stages look at neither class nor
  appearance, so they run only in a frame where at least `leftover_agreement` of the pixels
  kept their class (a cut that `cut_threshold` missed is not such a frame).

Decisions (documented in docs/FORMATS.md):
- Things only ever match things; a different class costs `class_penalty` instead of being
  forbidden, because an open-vocabulary model often hesitates between close names
  ("dog"/"puppy") for the same object, and the track's class is a vote anyway.
- IoU is taken against the track's last seen mask, so an object hidden for a few frames is
  matched where it disappeared (plus its appearance embedding wherever it reappears).
  Those masks are labels in the run-length maps of the frames they were seen in
  (`video/last_masks.py`): one joint count per such frame gives the overlaps of all its tracks
  with all segments, at a cost in runs rather than in pixels times tracks.
- Age is video time (the frame's time: a file's pts, a live frame's own time), so `--stride`,
  live drops and a reconnect gap age a track by the time that passed. (Before issue 18 it
  counted processed frames; `LEGACY_TRACKER` still does.)
- A track's class is the score-weighted vote over its segments (ties: lowest class id); a
  second piece of a thing (`piece_containment`, of the track's class) does not vote, move the
  box, or become the last mask: the track follows its main segment.

`Tracker.state` is a small JSON-able dataclass (masks as COCO RLE) so that a killed run resumes
with exactly the tracker it had. The RLE of a mask is made when the state is read, not per
frame.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from streamseg.config import TrackerConfig
from streamseg.model.outputs import FrameSegmentation
from streamseg.video.label_runs import LabelRuns, expand_runs, label_runs, pair_runs
from streamseg.video.last_masks import LastMasks, MaskOverlaps, iou_from_counts
from streamseg.video.track_leftovers import absorbed_rows, match_on_geometry, pieces_of_tracks

# The tracker as it was before issue 18: processed-frame ages, no motion, no cut detection,
# no re-identification stage, no second look at what the assignment left.
LEGACY_TRACKER = TrackerConfig(
    max_age_seconds=0.0,
    motion=False,
    cut_threshold=0.0,
    reid_limit=0.0,
    unknown_appearance_neutral=False,
    reid_unique_class=False,
    geometry_match_iou=0.0,
    piece_containment=0.0,
    absorb_containment=0.0,
    leftover_agreement=0.0,
)

# Today's default with round 4's leftover stages on (docs/TRACKING.md, round 4): on the model's
# own segments VPQ8 / VPQ1 0.90 -> 0.92 and switches 32 -> 10 on held-out seeds, but one track
# crossed a cut that the class agreement missed (oracle), so they are not the default.
LEFTOVERS_TRACKER = dataclasses.replace(
    TrackerConfig(), geometry_match_iou=0.2, piece_containment=0.5, absorb_containment=0.8
)


@dataclass
class TrackState:
    """One live track, JSON-able.

    Attributes:
        id: track id (>= 1), the value of its pixels in the label maps.
        is_thing: instance track (True) or the one track of a stuff class (False).
        votes: {class_id as str: summed score} over the track's segments.
        first_frame, last_frame: frame indices of the first / latest segment.
        last_step: processed-frame counter when last seen.
        hits: number of frames with a segment of this track.
        embedding: running mean of the segment embeddings, L2-normalized (D floats).
        size: (H, W) of the mask; mask_counts: COCO RLE counts of the last seen mask.
        last_time: video time in seconds when last seen (-1: unknown, a state saved before
            issue 18; it becomes the time of the next frame).
        box: COCO box (x, y, w, h) of the last segment ([]: unknown).
        velocity: (vx, vy) of the box centre in pixels per second, a running mean.
    """

    id: int
    is_thing: bool
    votes: dict[str, float]
    first_frame: int
    last_frame: int
    last_step: int
    hits: int
    embedding: list[float]
    size: list[int]
    mask_counts: list[int]
    last_time: float = -1.0
    box: list[float] = field(default_factory=list)
    velocity: list[float] = field(default_factory=list)

    @property
    def class_id(self) -> int:
        """Score-weighted vote; ties go to the lowest class id."""
        best = max(self.votes.items(), key=lambda item: (item[1], -int(item[0])))
        return int(best[0])


@dataclass
class TrackerState:
    """Everything the tracker remembers (JSON via `to_json` / `from_json`).

    Attributes:
        next_id: the next unused track id.
        steps: frames processed so far.
        stuff_ids: {class_id as str: track id} of stuff classes seen so far.
        tracks: the live tracks (things and stuff).
    """

    next_id: int = 1
    steps: int = 0
    stuff_ids: dict[str, int] = field(default_factory=dict)
    tracks: list[TrackState] = field(default_factory=list)

    def to_json(self) -> str:
        # The fields as they are, not dataclasses.asdict: that deep-copies every float of
        # every track's embedding and RLE (10 ms per batch in run_video, which saves the state
        # after each batch for a clean Ctrl-C). The JSON is the same.
        data = {**vars(self), "tracks": [vars(track) for track in self.tracks]}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TrackerState:
        data = json.loads(text)
        tracks = [TrackState(**track) for track in data.pop("tracks")]
        return cls(**data, tracks=tracks)


class TrackerSnapshot:
    """The tracker's state at one moment, serialized only when asked (`Tracker.snapshot`).

    Taking one copies each track's small fields; the RLE of the masks that changed since the
    state was last read, and the JSON, are made by the first `to_json`. A run that keeps a
    snapshot per batch and writes the state at commits pays for RLE and JSON at commits only.
    """

    def __init__(self, state: TrackerState, owed: dict[int, Callable[[], list[int]]]):
        self._state = state
        self._owed = owed  # track id -> its mask's counts, for tracks whose RLE is stale
        self._json: str | None = None

    def to_json(self) -> str:
        """What `tracker.state.to_json()` gave when the snapshot was taken."""
        if self._json is None:
            for track in self._state.tracks:
                if track.id in self._owed:
                    track.mask_counts = self._owed[track.id]()
            self._json = self._state.to_json()
            self._owed = {}
        return self._json


@dataclass(frozen=True)
class TrackResult:
    """Output of one `Tracker.step`.

    Attributes:
        labels: (H, W) int32 track id per pixel, 0 = none.
        track_ids: (N,) int32 track id of each input segment, in segment order (several
            segments share one: the pieces of one stuff class, or a second piece of a thing,
            `piece_containment`).
        classes: {track id: voted class id} of the tracks present in this frame.
    """

    labels: np.ndarray
    track_ids: np.ndarray
    classes: dict[int, int]


def mask_iou_with_panoptic(
    masks: list[np.ndarray], panoptic: np.ndarray, segment_ids: np.ndarray
) -> np.ndarray:
    """IoU of each mask with each segment of a panoptic map (the tracker uses
    `LastMasks.iou`, which gives the same numbers without a boolean mask per track).

    Args:
        masks: K masks, each (H, W) bool.
        panoptic: (H, W) int segment ids, 0 = none.
        segment_ids: (N,) ids of the segments (columns of the result).
    Returns:
        (K, N) float64 IoU.
    """
    iou = np.zeros((len(masks), len(segment_ids)), np.float64)
    if not masks or len(segment_ids) == 0:
        return iou
    top = int(max(int(panoptic.max()), int(segment_ids.max()))) + 1
    areas = np.bincount(panoptic.ravel(), minlength=top)[segment_ids]
    for k, mask in enumerate(masks):
        inter = np.bincount(panoptic[mask], minlength=top)[segment_ids]
        union = int(mask.sum()) + areas - inter
        iou[k] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return iou


def assignment_cost(
    iou: np.ndarray,
    track_embeddings: np.ndarray,
    segment_embeddings: np.ndarray,
    class_differs: np.ndarray,
    config: TrackerConfig,
    overlap: np.ndarray | None = None,
) -> np.ndarray:
    """Cost of pairing K tracks with N segments (lower is better).

    Args:
        iou: (K, N) mask IoU.
        track_embeddings: (K, D) L2-normalized; segment_embeddings: (N, D) L2-normalized
            (D = 0: appearance unknown, counted as distance 1).
        class_differs: (K, N) bool.
    Returns:
        (K, N) float64 `w*(1-iou) + (1-w)*cosdist + class_penalty*differs`, with the cosine
        distance `1 - cos` clipped to [0, 1] (opposite directions are no worse than unrelated).
    """
    known = np.zeros(iou.shape, bool)
    if track_embeddings.shape[1] and track_embeddings.shape[1] == segment_embeddings.shape[1]:
        tracks = track_embeddings.astype(np.float64)
        segments = segment_embeddings.astype(np.float64)
        distance = np.clip(1.0 - tracks @ segments.T, 0.0, 1.0)
        known = (np.abs(tracks).sum(axis=1) > 0)[:, None] & (np.abs(segments).sum(axis=1) > 0)
    else:
        distance = np.ones_like(iou)
    weight = config.iou_weight
    cost = weight * (1.0 - iou) + (1.0 - weight) * distance
    if config.unknown_appearance_neutral:
        # A zero embedding says nothing about the object (a mask too small for the stride-32
        # CLIP map pools to nothing): the pair is judged on its overlap alone.
        geometry = iou if overlap is None else np.maximum(iou, overlap)
        cost = np.where(known, cost, 1.0 - geometry)
    return cost + config.class_penalty * class_differs


class Tracker:
    """Online tracker over `FrameSegmentation`s (see the module docstring).

    Usage:
        tracker = Tracker(TrackerConfig())
        for index, seg in ...:
            result = tracker.step(index, seg)   # result.labels: (H, W) int32 track ids
        saved = tracker.state.to_json()
        # later: Tracker(config, TrackerState.from_json(saved))
        snapshot = tracker.snapshot()   # cheap per batch; snapshot.to_json() only at commits
    """

    def __init__(self, config: TrackerConfig | None = None, state: TrackerState | None = None):
        self.config = config or TrackerConfig()
        self._state = TrackerState() if state is None else state
        # Last masks of the live tracks; the state's RLE copies are refreshed only when the
        # state is read (`state`), not every frame. Tracks of a resumed state join
        # `_last` from their RLE when first matched.
        self._last = LastMasks()
        self._stale: set[int] = set()  # tracks whose state RLE is older than their last mask
        # The previous processed frame's runs and its class lookup (segment id -> class + 1),
        # for cut detection; not in the state (a resumed run detects no cut at its first frame).
        self._previous: tuple[LabelRuns, np.ndarray] | None = None

    @property
    def state(self) -> TrackerState:
        """The current state (live object; serialize with `.to_json()` to keep a copy)."""
        if self._stale:
            for track in self._state.tracks:
                if track.id in self._stale:
                    track.mask_counts = self._last.counts(track.id)
            self._stale.clear()
        return self._state

    def snapshot(self) -> TrackerSnapshot:
        """The current state, cheap to take; `.to_json()` equals `state.to_json()` now, even
        after more steps."""
        state = self._state
        # Steps replace a track's embedding, size and mask_counts lists but update votes in
        # place: only votes need a copy.
        tracks = [dataclasses.replace(t, votes=dict(t.votes)) for t in state.tracks]
        frozen = TrackerState(state.next_id, state.steps, dict(state.stuff_ids), tracks)
        owed = {track_id: self._last.deferred_counts(track_id) for track_id in self._stale}
        return TrackerSnapshot(frozen, owed)

    def _end_tracks(self, ended: list[TrackState]) -> None:
        """Forget these tracks (a thing track's id is never used again)."""
        if not ended:
            return
        gone = {t.id for t in ended}
        for track_id in gone:
            self._last.forget(track_id)
            self._stale.discard(track_id)
        self._state.tracks = [t for t in self._state.tracks if t.id not in gone]

    def class_of(self, track_id: int) -> int | None:
        """Voted class of a live track (None if unknown or ended)."""
        for track in self._state.tracks:
            if track.id == track_id:
                return track.class_id
        return None

    def step(
        self, frame_index: int, segmentation: FrameSegmentation, time: float | None = None
    ) -> TrackResult:
        """Assign the segments of one frame to tracks.

        Args:
            frame_index: the frame's index in the source (may jump: stride, dropped frames).
            segmentation: panoptic ids (H, W), segments, embeddings (N, D).
            time: the frame's time in the video in seconds (live: its own time); None:
                `frame_index / config.fallback_fps`.
        Returns:
            `TrackResult` with the (H, W) int32 track-id map and per-segment track ids.
        """
        import lap

        state = self._state
        config = self.config
        panoptic = np.asarray(segmentation.panoptic)
        current = label_runs(panoptic)  # the frame's one pass over its pixels
        segments = segmentation.segments
        count = len(segments)
        embeddings = np.asarray(segmentation.embeddings, np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != count:
            embeddings = np.zeros((count, 0), np.float32)
        track_ids = np.zeros(count, np.int32)
        now = float(time) if time is not None else frame_index / config.fallback_fps
        for track in state.tracks:
            if track.last_time < 0:  # a state saved before issue 18
                track.last_time = now
        classes_of = _class_lookup(segments)
        # Share of pixels that kept their class since the previous processed frame (1.0: none).
        agreement = 1.0
        gated = config.leftover_agreement > 0 and (
            config.geometry_match_iou > 0
            or config.piece_containment > 0
            or config.absorb_containment > 0
        )
        if (config.cut_threshold > 0 or gated) and self._previous is not None:
            agreement = class_agreement(*self._previous, current, classes_of)
        if config.cut_threshold > 0 and agreement < config.cut_threshold:
            self._end_tracks([t for t in state.tracks if t.is_thing])
        self._previous = (current, classes_of)
        # The leftover stages look at neither class nor appearance: only in a frame that is
        # plainly the same shot as the one before (a cut the threshold missed is not).
        leftovers = agreement >= config.leftover_agreement
        if config.max_age_seconds > 0:
            # Before matching: one step can carry a long gap (a reconnect, dropped frames).
            self._end_tracks(
                [
                    t
                    for t in state.tracks
                    if t.is_thing and now - t.last_time > config.max_age_seconds
                ]
            )
        by_id = {track.id: track for track in state.tracks}

        # Stuff: one id per class, no matching.
        things = []
        for i, segment in enumerate(segments):
            if segment.is_thing:
                things.append(i)
                continue
            key = str(segment.class_id)
            if key not in state.stuff_ids:
                state.stuff_ids[key] = state.next_id
                state.next_id += 1
            track_ids[i] = state.stuff_ids[key]

        # Things: linear assignment against live thing tracks.
        pieces: dict[int, int] = {}  # segment index -> track id, a second piece of a track
        absorbed: list[TrackState] = []  # duplicates of another track's object, to end
        live = [t for t in state.tracks if t.is_thing]
        if live and things:
            seg_ids = np.array([segments[i].id for i in things], np.int64)
            for track in live:
                if track.id not in self._last:
                    self._last.adopt(track.id, track.size, track.mask_counts, track.last_step)
            overlaps = self._last.overlaps([t.id for t in live], current, seg_ids)
            iou = iou_from_counts(
                overlaps.intersections, overlaps.mask_areas, overlaps.segment_areas
            )
            mask_iou = iou
            track_emb = _stack_embeddings(live, embeddings.shape[1])
            differs = np.array(
                [[t.class_id != segments[i].class_id for i in things] for t in live], bool
            )
            boxes = np.array([segments[i].bbox for i in things], np.float64)
            overlap = None
            if config.motion:
                predicted = _predicted_boxes(live, now)
                if config.unknown_appearance_neutral:
                    predicted = _clip_boxes(predicted, panoptic.shape)
                    margin = config.unknown_box_margin * max(panoptic.shape[:2])
                    overlap = box_overlap(_grown(predicted, margin), _grown(boxes, margin))
                iou = np.maximum(iou, box_iou(predicted, boxes))
            cost = assignment_cost(iou, track_emb, embeddings[things], differs, config, overlap)
            _, row_to_col, _ = lap.lapjv(cost, extend_cost=True, cost_limit=config.cost_limit)
            for row, col in enumerate(row_to_col):
                if col >= 0:
                    track_ids[things[col]] = live[row].id
            if config.geometry_match_iou > 0 and leftovers:
                rows, cols = _unpaired(live, things, track_ids)
                # Mask IoU alone, not the predicted box's: with no class and no appearance to
                # check, a box overlap links unrelated objects across a cut the class agreement
                # missed (docs/TRACKING.md, round 4).
                geometry = match_on_geometry(mask_iou, rows, cols, config.geometry_match_iou)
                for row, n in geometry.items():
                    track_ids[things[n]] = live[row].id
            if config.reid_limit > 0 and track_emb.shape[1]:
                rows, cols = _unpaired(live, things, track_ids)
                if rows and cols:
                    distance = np.clip(1.0 - track_emb[rows] @ embeddings[things][cols].T, 0, 1)
                    again = distance + config.class_penalty * differs[np.ix_(rows, cols)]
                    _, second, _ = lap.lapjv(
                        again.astype(np.float64), extend_cost=True, cost_limit=config.reid_limit
                    )
                    for r, c in enumerate(second):
                        if c >= 0:
                            track_ids[things[cols[c]]] = live[rows[r]].id
            if config.reid_unique_class:
                lost, _ = _unpaired(live, things, track_ids)
                lost = [k for k in lost if live[k].last_step < state.steps - 1]
                for row, n in _unique_class_pairs(live, lost, segments, things, track_ids):
                    if (
                        _reid_distance(track_emb, embeddings, row, things[n])
                        <= config.reid_distance
                    ):
                        track_ids[things[n]] = live[row].id
            if (config.piece_containment > 0 or config.absorb_containment > 0) and leftovers:
                pieces, absorbed = _leftover_pieces(
                    overlaps,
                    live,
                    [segments[i].class_id for i in things],
                    things,
                    track_ids,
                    state.steps,
                    config,
                )
        for i in things:
            if track_ids[i] == 0:
                track_ids[i] = state.next_id
                state.next_id += 1

        # Update (or create) the tracks of this frame's segments.
        frame_key = self._last.add_frame(current, state.steps)
        for i in pieces:
            track_ids[i] = pieces[i]
        self._end_tracks(absorbed)
        for i, segment in enumerate(segments):
            if i in pieces:
                continue  # its track is updated from its main segment only
            track_id = int(track_ids[i])
            track = by_id.get(track_id)
            embedding = embeddings[i] if embeddings.shape[1] else None
            if track is None:
                track = TrackState(
                    id=track_id,
                    is_thing=bool(segment.is_thing),
                    votes={},
                    first_frame=int(frame_index),
                    last_frame=int(frame_index),
                    last_step=state.steps,
                    hits=0,
                    embedding=[] if embedding is None else [float(v) for v in embedding],
                    size=list(panoptic.shape),
                    mask_counts=[],
                    last_time=now,
                )
                state.tracks.append(track)
                by_id[track_id] = track
            elif embedding is not None and len(track.embedding) == embedding.shape[0]:
                track.embedding = _update_embedding(
                    track.embedding, embedding, config.embedding_momentum
                )
            key = str(segment.class_id)
            # float32 sums: the JSON round trip of the state is then exact.
            track.votes[key] = float(
                np.float32(track.votes.get(key, 0.0)) + np.float32(segment.score)
            )
            if segment.is_thing:
                _update_motion(track, segment.bbox, now, config.velocity_momentum)
            track.last_frame = int(frame_index)
            track.last_step = state.steps
            track.last_time = now
            track.hits += 1
            track.size = list(panoptic.shape)
            # Several stuff segments of one class: the last one is the track's mask.
            self._last.point(track_id, frame_key, segment.id)
            self._stale.add(track_id)

        # End thing tracks unseen for too long.
        if config.max_age_seconds > 0:
            old = [t for t in state.tracks if now - t.last_time > config.max_age_seconds]
        else:
            old = [t for t in state.tracks if state.steps - t.last_step > config.max_age]
        self._end_tracks([t for t in old if t.is_thing])
        # Frames older than any live thing track's are pointed at by stuff tracks only (never
        # matched by IoU): their masks go to the state's RLE now, so that only the frames
        # live thing tracks were last seen in stay in memory however long the video.
        oldest = min((t.last_step for t in state.tracks if t.is_thing), default=state.steps)
        owed = self._last.release(oldest, self._stale)
        for track in state.tracks:
            if track.id in owed:
                track.mask_counts = owed[track.id]
                self._stale.discard(track.id)
        state.steps += 1

        top = int(current.values.max()) if current.values.size else 0
        lut = np.zeros(max(top, max((s.id for s in segments), default=0)) + 1, np.int32)
        for i, segment in enumerate(segments):
            lut[segment.id] = track_ids[i]
        labels = expand_runs(current, lut)
        classes = {int(t): by_id[int(t)].class_id for t in track_ids}
        return TrackResult(labels=labels, track_ids=track_ids, classes=classes)


def class_agreement(
    previous: LabelRuns, previous_classes: np.ndarray, current: LabelRuns, classes: np.ndarray
) -> float:
    """Share of pixels whose class is the same in two label maps (1.0 for maps of two sizes:
    nothing to compare).

    Args:
        previous, current: runs of (H, W) segment-id maps.
        previous_classes, classes: segment id -> class id + 1 (0: no segment) of each map.
    """
    if previous.shape != current.shape or previous.column_major != current.column_major:
        return 1.0
    if current.size == 0:
        return 1.0
    before, after, lengths = pair_runs(previous, current)
    same = previous_classes[before] == classes[after]
    return float(lengths[same].sum()) / current.size


def _box_areas_and_intersections(
    boxes_a: np.ndarray, boxes_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Areas of (K, 4) and (N, 4) COCO boxes, and their (K, N) intersection areas."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    bottom = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    return a[:, 2] * a[:, 3], b[:, 2] * b[:, 3], inter


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of COCO boxes (x, y, w, h).

    Args:
        boxes_a: (K, 4); boxes_b: (N, 4).
    Returns:
        (K, N) float64 IoU (0 where the union is empty).
    """
    area_a, area_b, inter = _box_areas_and_intersections(boxes_a, boxes_b)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_overlap(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Overlap coefficient of COCO boxes: intersection / the smaller area ((K, N) float64, 0
    where either box is empty)."""
    area_a, area_b, inter = _box_areas_and_intersections(boxes_a, boxes_b)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.where(smaller > 0, inter / np.maximum(smaller, 1e-12), 0.0)


def _clip_boxes(boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """COCO boxes cut to the frame: what of a predicted box can be seen, at least a 1-pixel
    strip along the border it went past (an object predicted just outside the view is still
    where its last pixels would show)."""
    height, width = shape[0], shape[1]
    x0 = np.clip(boxes[:, 0], 0, width - 1)
    y0 = np.clip(boxes[:, 1], 0, height - 1)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], x0 + 1, width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], y0 + 1, height)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


def _grown(boxes: np.ndarray, margin: float) -> np.ndarray:
    """COCO boxes grown by `margin` pixels on every side."""
    if margin <= 0:
        return boxes
    return boxes + np.array([-margin, -margin, 2 * margin, 2 * margin])


def _leftover_pieces(
    overlaps: MaskOverlaps,
    live: list[TrackState],
    segment_classes: list[int],
    things: list[int],
    track_ids: np.ndarray,
    steps: int,
    config: TrackerConfig,
) -> tuple[dict[int, int], list[TrackState]]:
    """Pieces of objects (video/track_leftovers.py) once every assignment is made.

    Returns:
        ({segment index: track id} of leftover segments that are a second piece of a track
        assigned in this frame, tracks to end as pieces of another track's object).
    """
    row_of = {track.id: row for row, track in enumerate(live)}
    hosts = {row_of[int(track_ids[i])]: n for n, i in enumerate(things) if track_ids[i]}
    classes = [t.class_id for t in live]
    pieces: dict[int, int] = {}
    if config.piece_containment > 0:
        _, cols = _unpaired(live, things, track_ids)
        found = pieces_of_tracks(
            overlaps, list(hosts), cols, classes, segment_classes, config.piece_containment
        )
        pieces = {things[n]: live[row].id for n, row in found.items()}
    absorbed: list[TrackState] = []
    if config.absorb_containment > 0:
        candidates = [
            row
            for row, track in enumerate(live)
            if row not in hosts and track.last_step == steps - 1
        ]
        ended = absorbed_rows(overlaps, candidates, hosts, classes, config.absorb_containment)
        absorbed = [live[row] for row in ended]
    return pieces, absorbed


def _unpaired(
    live: list[TrackState], things: list[int], track_ids: np.ndarray
) -> tuple[list[int], list[int]]:
    """Rows of `live` whose track no stage has given a segment yet, and indexes into `things`
    of the segments still without a track. Read from `track_ids` (not from the first
    assignment alone), so that a later stage never pairs a track that an earlier one did."""
    taken = {int(track_ids[i]) for i in things if track_ids[i]}
    rows = [k for k, track in enumerate(live) if track.id not in taken]
    return rows, [n for n, i in enumerate(things) if track_ids[i] == 0]


def _unique_class_pairs(
    live: list[TrackState],
    lost: list[int],
    segments: list,
    things: list[int],
    track_ids: np.ndarray,
) -> list[tuple[int, int]]:
    """(track row, thing index) of each class that has exactly one lost track and exactly one
    unassigned segment left: that segment is taken to be the lost object back."""
    tracks_of: dict[int, list[int]] = {}
    for row in lost:
        tracks_of.setdefault(live[row].class_id, []).append(row)
    segments_of: dict[int, list[int]] = {}
    for n, i in enumerate(things):
        if track_ids[i] == 0:
            segments_of.setdefault(segments[i].class_id, []).append(n)
    return [
        (rows[0], segments_of[cls][0])
        for cls, rows in tracks_of.items()
        if len(rows) == 1 and len(segments_of.get(cls, ())) == 1
    ]


def _reid_distance(
    track_embeddings: np.ndarray, embeddings: np.ndarray, row: int, index: int
) -> float:
    """Cosine distance of a track and a segment; 0 when either appearance is unknown (a zero
    embedding): then the class alone decides."""
    if track_embeddings.shape[1] == 0 or embeddings.shape[1] != track_embeddings.shape[1]:
        return 0.0
    track, segment = track_embeddings[row], embeddings[index]
    if not track.any() or not segment.any():
        return 0.0
    return float(np.clip(1.0 - float(track @ segment), 0.0, 1.0))


def _class_lookup(segments: list) -> np.ndarray:
    """Segment id -> class id + 1 (0 for ids without a segment)."""
    lut = np.zeros(max((s.id for s in segments), default=0) + 1, np.int64)
    for segment in segments:
        lut[segment.id] = segment.class_id + 1
    return lut


def _predicted_boxes(tracks: list[TrackState], now: float) -> np.ndarray:
    """(K, 4) each track's last box moved by its velocity to `now` (no box: empty)."""
    boxes = np.zeros((len(tracks), 4), np.float64)
    for k, track in enumerate(tracks):
        if len(track.box) == 4:
            boxes[k] = track.box
            if len(track.velocity) == 2:
                elapsed = max(now - track.last_time, 0.0)
                boxes[k, 0] += track.velocity[0] * elapsed
                boxes[k, 1] += track.velocity[1] * elapsed
    return boxes


def _update_motion(
    track: TrackState, bbox: tuple[int, int, int, int], now: float, momentum: float
) -> None:
    """The track's box becomes `bbox`; its velocity the running mean of the centre's motion."""
    box = [float(v) for v in bbox]
    elapsed = now - track.last_time
    if len(track.box) == 4 and elapsed > 0:
        shift = [
            (box[0] + box[2] / 2 - track.box[0] - track.box[2] / 2) / elapsed,
            (box[1] + box[3] / 2 - track.box[1] - track.box[3] / 2) / elapsed,
        ]
        if len(track.velocity) == 2:
            shift = [
                momentum * old + (1 - momentum) * new
                for old, new in zip(track.velocity, shift, strict=True)
            ]
        track.velocity = shift
    track.box = box


def _stack_embeddings(tracks: list[TrackState], dim: int) -> np.ndarray:
    if dim == 0 or any(len(t.embedding) != dim for t in tracks):
        return np.zeros((len(tracks), 0), np.float32)
    return np.array([t.embedding for t in tracks], np.float32)


def _update_embedding(old: list[float], new: np.ndarray, momentum: float) -> list[float]:
    """Running mean on the unit sphere, in float32 (exact through the JSON state)."""
    mixed = np.float32(momentum) * np.asarray(old, np.float32) + np.float32(1 - momentum) * new
    norm = np.float32(np.linalg.norm(mixed))
    if norm > 0:
        mixed = mixed / norm
    return [float(v) for v in mixed.astype(np.float32)]
