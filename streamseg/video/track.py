"""Link per-frame panoptic segments into tracks whose ids stay the same object over time.

Per frame (`Tracker.step`):
- stuff segments (grass, sky, ...) get one id per class for the whole video: there is only
  one "sky", so there is nothing to match;
- thing segments are assigned to live thing tracks by a linear assignment (lapx `lapjv`) on
  `cost = w * (1 - mask IoU) + (1 - w) * cosine distance + class_penalty * [class differs]`,
  with `cost_limit` inside the solver (pairs above it stay unassigned; solving first and
  thresholding afterwards gives different, worse matches);
- unmatched thing segments start new tracks; a thing track unseen for more than `max_age`
  processed frames ends.

Decisions (documented in docs/FORMATS.md):
- Things only ever match things; a different class costs `class_penalty` instead of being
  forbidden, because an open-vocabulary model often hesitates between close names
  ("dog"/"puppy") for the same object, and the track's class is a vote anyway.
- IoU is taken against the track's last seen mask, so an object hidden for a few frames is
  matched where it disappeared (plus its appearance embedding wherever it reappears).
  Those masks are labels in the run-length maps of the frames they were seen in
  (`video/last_masks.py`): one joint count per such frame gives the overlaps of all its tracks
  with all segments, at a cost in runs rather than in pixels times tracks.
- Age counts processed frames, not frame indices: with `--stride` or live frame drops, a frame
  that was never processed cannot make a track older.
- A track's class is the score-weighted vote over its segments (ties: lowest class id).

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
from streamseg.video.label_runs import expand_runs, label_runs
from streamseg.video.last_masks import LastMasks


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
        track_ids: (N,) int32 track id of each input segment, in segment order.
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
    if track_embeddings.shape[1] and track_embeddings.shape[1] == segment_embeddings.shape[1]:
        cosine = track_embeddings.astype(np.float64) @ segment_embeddings.astype(np.float64).T
        distance = np.clip(1.0 - cosine, 0.0, 1.0)
    else:
        distance = np.ones_like(iou)
    weight = config.iou_weight
    return weight * (1.0 - iou) + (1.0 - weight) * distance + config.class_penalty * class_differs


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

    def class_of(self, track_id: int) -> int | None:
        """Voted class of a live track (None if unknown or ended)."""
        for track in self._state.tracks:
            if track.id == track_id:
                return track.class_id
        return None

    def step(self, frame_index: int, segmentation: FrameSegmentation) -> TrackResult:
        """Assign the segments of one frame to tracks.

        Args:
            frame_index: the frame's index in the source (may jump: stride, dropped frames).
            segmentation: panoptic ids (H, W), segments, embeddings (N, D).
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
        live = [t for t in state.tracks if t.is_thing]
        if live and things:
            seg_ids = np.array([segments[i].id for i in things], np.int64)
            for track in live:
                if track.id not in self._last:
                    self._last.adopt(track.id, track.size, track.mask_counts, track.last_step)
            iou = self._last.iou([t.id for t in live], current, seg_ids)
            track_emb = _stack_embeddings(live, embeddings.shape[1])
            differs = np.array(
                [[t.class_id != segments[i].class_id for i in things] for t in live], bool
            )
            cost = assignment_cost(iou, track_emb, embeddings[things], differs, config)
            _, row_to_col, _ = lap.lapjv(cost, extend_cost=True, cost_limit=config.cost_limit)
            for row, col in enumerate(row_to_col):
                if col >= 0:
                    track_ids[things[col]] = live[row].id
        for i in things:
            if track_ids[i] == 0:
                track_ids[i] = state.next_id
                state.next_id += 1

        # Update (or create) the tracks of this frame's segments.
        frame_key = self._last.add_frame(current, state.steps)
        for i, segment in enumerate(segments):
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
            track.last_frame = int(frame_index)
            track.last_step = state.steps
            track.hits += 1
            track.size = list(panoptic.shape)
            # Several stuff segments of one class: the last one is the track's mask.
            self._last.point(track_id, frame_key, segment.id)
            self._stale.add(track_id)

        # End thing tracks unseen for more than max_age processed frames.
        kept = []
        for track in state.tracks:
            if track.is_thing and state.steps - track.last_step > config.max_age:
                self._last.forget(track.id)
                self._stale.discard(track.id)
                continue
            kept.append(track)
        state.tracks = kept
        # Frames older than any live thing track's are pointed at by stuff tracks only (never
        # matched by IoU): their masks go to the state's RLE now, so that at most max_age + 1
        # frames stay in memory however long the video.
        owed = self._last.release(state.steps - config.max_age, self._stale)
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
