"""The tracker as it was before the overlaps were counted on label-map runs: one boolean mask per
track, IoU by one bincount per track. Kept only as the reference the tracker must equal
(tests/test_track_vectorized.py); the decisions it encodes are documented in
streamseg/video/track.py.
"""

from __future__ import annotations

import lap
import numpy as np

from streamseg.config import TrackerConfig
from streamseg.model.outputs import FrameSegmentation
from streamseg.video.rle import counts_to_mask, mask_to_counts
from streamseg.video.track import TrackerState, TrackResult, TrackState, assignment_cost


def _iou(masks: list[np.ndarray], panoptic: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
    """(K, N) IoU of K boolean masks with the segments `segment_ids` of `panoptic`."""
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


def _embedding_matrix(tracks: list[TrackState], dim: int) -> np.ndarray:
    if dim == 0 or any(len(t.embedding) != dim for t in tracks):
        return np.zeros((len(tracks), 0), np.float32)
    return np.array([t.embedding for t in tracks], np.float32)


def _mixed(old: list[float], new: np.ndarray, momentum: float) -> list[float]:
    mixed = np.float32(momentum) * np.asarray(old, np.float32) + np.float32(1 - momentum) * new
    norm = np.float32(np.linalg.norm(mixed))
    if norm > 0:
        mixed = mixed / norm
    return [float(v) for v in mixed.astype(np.float32)]


class ReferenceTracker:
    """Same interface as `streamseg.video.track.Tracker` (step, state)."""

    def __init__(self, config: TrackerConfig, state: TrackerState | None = None):
        self.config = config
        self._state = TrackerState() if state is None else state
        self._masks: dict[int, np.ndarray] = {}
        self._stale: set[int] = set()

    @property
    def state(self) -> TrackerState:
        for track in self._state.tracks:
            if track.id in self._stale:
                track.mask_counts = mask_to_counts(self._masks[track.id])
        self._stale.clear()
        return self._state

    def step(self, frame_index: int, segmentation: FrameSegmentation) -> TrackResult:
        state, config = self._state, self.config
        panoptic = np.asarray(segmentation.panoptic)
        segments = segmentation.segments
        count = len(segments)
        embeddings = np.asarray(segmentation.embeddings, np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != count:
            embeddings = np.zeros((count, 0), np.float32)
        track_ids = np.zeros(count, np.int32)
        by_id = {track.id: track for track in state.tracks}

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

        live = [t for t in state.tracks if t.is_thing]
        if live and things:
            seg_ids = np.array([segments[i].id for i in things], np.int64)
            masks = [self._mask(t, panoptic.shape) for t in live]
            iou = _iou(masks, panoptic, seg_ids)
            track_emb = _embedding_matrix(live, embeddings.shape[1])
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

        for i, segment in enumerate(segments):
            track_id = int(track_ids[i])
            mask = panoptic == segment.id
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
                track.embedding = _mixed(track.embedding, embedding, config.embedding_momentum)
            key = str(segment.class_id)
            track.votes[key] = float(
                np.float32(track.votes.get(key, 0.0)) + np.float32(segment.score)
            )
            track.last_frame = int(frame_index)
            track.last_step = state.steps
            track.hits += 1
            track.size = list(panoptic.shape)
            self._masks[track_id] = mask
            self._stale.add(track_id)

        kept = []
        for track in state.tracks:
            if track.is_thing and state.steps - track.last_step > config.max_age:
                self._masks.pop(track.id, None)
                self._stale.discard(track.id)
                continue
            kept.append(track)
        state.tracks = kept
        state.steps += 1

        lut = np.zeros(
            max(int(panoptic.max()), max((s.id for s in segments), default=0)) + 1, np.int32
        )
        for i, segment in enumerate(segments):
            lut[segment.id] = track_ids[i]
        labels = lut[panoptic] if panoptic.size else np.zeros(panoptic.shape, np.int32)
        classes = {int(t): by_id[int(t)].class_id for t in track_ids}
        return TrackResult(labels=labels.astype(np.int32), track_ids=track_ids, classes=classes)

    def _mask(self, track: TrackState, shape: tuple[int, ...]) -> np.ndarray:
        mask = self._masks.get(track.id)
        if mask is None:
            mask = counts_to_mask(track.mask_counts, track.size[0], track.size[1])
            self._masks[track.id] = mask
        if mask.shape != tuple(shape):
            return np.zeros(shape, bool)
        return mask
