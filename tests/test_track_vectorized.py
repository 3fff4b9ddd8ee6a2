"""The tracker on label-map runs gives exactly what the per-track-mask tracker gave: same track
ids, labels, classes and state JSON, over long random and designed sequences (splits, merges,
occlusions, stuff, many segments, label size changes, dense maps), read lazily or often,
resumed anywhere, and resumed from a state written by the previous version."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from track_reference import ReferenceTracker

from streamseg.config import TrackerConfig
from streamseg.model.outputs import FrameSegmentation, Segment
from streamseg.video import label_runs as label_runs_module
from streamseg.video.label_runs import (
    expand_runs,
    joint_counts,
    label_areas,
    label_runs,
    mask_counts_of_label,
    pair_runs,
    reorder_runs,
)
from streamseg.video.last_masks import LastMasks
from streamseg.video.rle import mask_to_counts
from streamseg.video.track import LEGACY_TRACKER, Tracker, TrackerState, mask_iou_with_panoptic

# The reference is the tracker before issue 18: these tests compare it with the legacy settings
# (processed-frame ages, no motion, no cut detection), and compare the state JSON without the
# fields issue 18 added (last_time, box, velocity), which the reference does not keep.
NEW_TRACK_FIELDS = ("last_time", "box", "velocity")


def _legacy(**fields: object) -> TrackerConfig:
    return replace(LEGACY_TRACKER, **fields)


def _old_fields(text: str) -> str:
    """A state's JSON without the fields added by issue 18."""
    data = json.loads(text)
    for track in data["tracks"]:
        for name in NEW_TRACK_FIELDS:
            track.pop(name, None)
    return json.dumps(data, separators=(",", ":"))


FIXTURE = Path(__file__).resolve().parent / "data" / "tracker_state_v1.json"


def _segmentation(
    panoptic: np.ndarray,
    parts: list[tuple[int, int, float, bool, np.ndarray]],
    dim: int,
) -> FrameSegmentation:
    """parts: (segment id, class, score, is_thing, embedding) in list order."""
    segments, embeddings = [], []
    for seg_id, cls, score, thing, emb in parts:
        area = int((panoptic == seg_id).sum())
        segments.append(Segment(int(seg_id), int(cls), float(score), area, (0, 0, 1, 1), thing))
        embeddings.append(emb[:dim] / max(float(np.linalg.norm(emb[:dim])), 1e-6))
    emb = np.array(embeddings, np.float32).reshape(len(parts), dim)
    return FrameSegmentation(panoptic=panoptic, segments=segments, embeddings=emb)


def _scene(
    seed: int,
    count: int,
    shapes: list[tuple[int, int]],
    *,
    things: int = 8,
    stuff: int = 3,
    ids_from: int = 1,
    dtype: type = np.int32,
) -> list[tuple[int, FrameSegmentation]]:
    """Random moving boxes and discs over stuff bands: hidden streaks, splits, merges,
    class flips, shuffled ids and list order, absent segments, embedding dims that change,
    frame-index gaps and a label size that changes every few frames.

    Returns:
        (frame index, segmentation) per frame.
    """
    rng = np.random.default_rng(seed)
    dim = 6
    base = rng.normal(size=(things + stuff, dim))
    centre = rng.uniform(0, 1, (things, 2))
    speed = rng.normal(0, 0.04, (things, 2))
    radius = rng.uniform(0.08, 0.3, (things, 2))
    classes = rng.integers(0, 5, things + stuff)
    classes[things:] = 10 + np.arange(stuff) % max(stuff - 1, 1)  # two stuff bands share one
    disc = rng.random(things) < 0.5
    hidden = np.zeros(things, int)
    frames = []
    index = 0
    for t in range(count):
        h, w = shapes[(t // 7) % len(shapes)]
        yy, xx = np.mgrid[0:h, 0:w]
        drawn: list[tuple[np.ndarray, int, bool, np.ndarray]] = []
        edges = np.sort(rng.uniform(0, 1, stuff - 1)) if stuff > 1 else []
        bands = np.searchsorted(edges, (yy + 0.3 * xx * rng.uniform(-1, 1)) / h)
        for k in range(stuff):
            if rng.random() < 0.85:
                drawn.append((bands == k, int(classes[things + k]), False, base[things + k]))
        for k in rng.permutation(things):
            if hidden[k] > 0:
                hidden[k] -= 1
                continue
            if rng.random() < 0.08:
                hidden[k] = int(rng.integers(1, 6))  # an occlusion of a few frames
                continue
            cy, cx = (centre[k] + speed[k] * t) % 1.0
            ry, rx = radius[k] * (h, w)
            if disc[k]:
                mask = ((yy - cy * h) / ry) ** 2 + ((xx - cx * w) / rx) ** 2 <= 1
            else:
                mask = (np.abs(yy - cy * h) <= ry) & (np.abs(xx - cx * w) <= rx)
            cls = int(classes[k]) if rng.random() > 0.1 else int(rng.integers(0, 5))
            emb = base[k] + rng.normal(0, 0.15, dim)
            if rng.random() < 0.1:  # split in two segments
                left = mask & (xx < cx * w)
                drawn += [(left, cls, True, emb), (mask & ~left, cls, True, emb)]
            elif rng.random() < 0.1 and drawn and drawn[-1][2]:  # merged with the one before
                previous = drawn.pop()
                drawn.append((previous[0] | mask, previous[1], True, previous[3]))
            else:
                drawn.append((mask, cls, True, emb))
        ids = ids_from + rng.permutation(max(3 * len(drawn), 1))[: len(drawn)]
        panoptic = np.zeros((h, w), dtype)
        for (mask, _, _, _), seg_id in zip(drawn, ids, strict=True):
            panoptic[mask] = seg_id
        parts = [
            (int(seg_id), cls, float(rng.uniform(0.2, 1.0)), thing, emb)
            for (_, cls, thing, emb), seg_id in zip(drawn, ids, strict=True)
            if (panoptic == seg_id).any() or rng.random() < 0.2  # now and then an absent one
        ]
        order = rng.permutation(len(parts))
        frame_dim = dim if rng.random() > 0.1 else int(rng.choice([0, 3]))
        frames.append((index, _segmentation(panoptic, [parts[i] for i in order], frame_dim)))
        index += int(rng.choice([1, 1, 1, 2, 5]))
    return frames


def _noise(seed: int, count: int, shape: tuple[int, int]) -> list[tuple[int, FrameSegmentation]]:
    """Maps of independent random pixels (about as many runs as pixels)."""
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(count):
        panoptic = rng.integers(0, 7, shape).astype(np.int32)
        parts = [
            (k, int(rng.integers(0, 3)), 0.5, k > 2, rng.normal(size=4))
            for k in range(1, 7)
            if (panoptic == k).any()
        ]
        frames.append((t, _segmentation(panoptic, parts, 4)))
    return frames


def _assert_same_as_reference(
    frames: list[tuple[int, FrameSegmentation]],
    config: TrackerConfig,
    resume_at: tuple[int, ...] = (),
    read_every: int = 3,
) -> None:
    """The new tracker, read every `read_every` frames and never (snapshots only, serialized at
    the end), and trackers resumed from its JSON at `resume_at`, against the reference."""
    reference = ReferenceTracker(config)
    read = Tracker(config)
    lazy = Tracker(config)
    resumed: list[Tracker] = []
    snapshots = []
    for t, (index, segmentation) in enumerate(frames):
        if t in resume_at:
            resumed.append(Tracker(config, TrackerState.from_json(read.state.to_json())))
        expected = reference.step(index, segmentation)
        for tracker in (read, lazy, *resumed):
            got = tracker.step(index, segmentation)
            assert got.track_ids.tolist() == expected.track_ids.tolist(), t
            assert got.labels.dtype == np.int32 and got.labels.shape == expected.labels.shape
            np.testing.assert_array_equal(got.labels, expected.labels)
            assert got.classes == expected.classes
        if t % read_every == 0:
            assert _old_fields(read.state.to_json()) == _old_fields(reference.state.to_json()), t
        if t % 4 == 1:
            snapshots.append((lazy.snapshot(), _old_fields(reference.state.to_json())))
    for snapshot, expected_json in snapshots:
        assert _old_fields(snapshot.to_json()) == expected_json
    final = _old_fields(reference.state.to_json())
    for tracker in (read, lazy, *resumed):
        assert _old_fields(tracker.state.to_json()) == final


@pytest.mark.parametrize(
    ("seed", "run_pixels"), [(0, 8), (1, 8), (2, 8), (0, 1), (1, 1), (0, 10**9), (1, 10**9)]
)
def test_random_scenes_equal_the_reference(
    seed: int, run_pixels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_pixels: maps kept as runs always (1), as pixels always (10**9), or by density."""
    monkeypatch.setattr(label_runs_module, "DENSE_RUN_PIXELS", run_pixels)
    shapes = [(24, 32), (24, 32), (12, 16), (36, 20)]
    frames = _scene(seed, 70, shapes, things=9, stuff=3)
    _assert_same_as_reference(frames, _legacy(max_age=6), resume_at=(11, 40))


@pytest.mark.parametrize(
    "config",
    [
        _legacy(max_age=0),
        _legacy(max_age=1, cost_limit=0.9),
        _legacy(max_age=30, class_penalty=0.05, iou_weight=0.8),
    ],
)
def test_configs_equal_the_reference(config: TrackerConfig) -> None:
    frames = _scene(5, 50, [(20, 30), (10, 15)], things=6, stuff=2)
    _assert_same_as_reference(frames, config, resume_at=(17,), read_every=1)


def test_many_segments_and_wide_ids_equal_the_reference() -> None:
    """Hundreds of segments, ids past uint8 and uint16, input dtypes other than int32."""
    frames = _scene(3, 14, [(40, 60)], things=140, stuff=4, ids_from=250)
    frames += _scene(4, 10, [(40, 60)], things=30, stuff=2, ids_from=70_000, dtype=np.int64)
    frames += _scene(6, 10, [(40, 60)], things=20, stuff=2, dtype=np.uint8)
    _assert_same_as_reference(frames, _legacy(max_age=4), resume_at=(12, 20))


def test_dense_maps_equal_the_reference() -> None:
    _assert_same_as_reference(_noise(0, 12, (17, 23)), _legacy(), resume_at=(5,))


def _boxes(shape, boxes) -> FrameSegmentation:
    """boxes: (segment id, class, is_thing, (y0, y1, x0, x1), embedding), painted in order."""
    panoptic = np.zeros(shape, np.int32)
    for seg_id, _, _, (y0, y1, x0, x1), _ in boxes:
        panoptic[y0:y1, x0:x1] = seg_id
    parts = [(i, c, 0.9, thing, np.asarray(e, float)) for i, c, thing, _, e in boxes]
    return _segmentation(panoptic, parts, 3)


def test_designed_occlusion_split_merge_and_resize_equal_the_reference() -> None:
    a, b, c = [1, 0, 0], [0, 1, 0], [0, 0, 1]
    sky = (9, 5, False, (0, 4, 0, 40), c)
    frames = []
    for t in range(8):  # A passes behind B (hidden for frames 3..5), comes out the far side
        boxes = [sky, (4, 1, True, (8, 16, 18, 26), b)]
        if not 3 <= t <= 5:
            boxes.insert(1, (7, 0, True, (9, 15, 2 + 4 * t, 8 + 4 * t), a))
        frames.append(_boxes((20, 40), boxes))
    # B splits into two segments, then the halves merge again
    frames.append(
        _boxes((20, 40), [sky, (2, 1, True, (8, 16, 18, 22), b), (3, 1, True, (8, 16, 22, 26), b)])
    )
    frames.append(_boxes((20, 40), [(5, 1, True, (8, 16, 18, 26), b)]))
    # the label size halves (masks seen at the old size give IoU 0), then comes back
    frames.append(
        _boxes((10, 20), [(1, 1, True, (4, 8, 9, 13), b), (2, 5, False, (0, 2, 0, 20), c)])
    )
    frames.append(_boxes((20, 40), [(5, 1, True, (8, 16, 18, 26), b)]))
    # two stuff segments of one class: the later one is the track's mask
    frames.append(
        _boxes((20, 40), [(3, 5, False, (0, 4, 0, 9), c), (8, 5, False, (15, 20, 30, 40), c)])
    )
    # the stuff leaves for longer than max_age: its mask's RLE is made as its frame goes
    frames += [_boxes((20, 40), [(5, 1, True, (8, 16, 18, 26), b)])] * 3
    indexed = list(enumerate(frames))
    for config in (_legacy(), _legacy(max_age=1)):
        _assert_same_as_reference(indexed, config, resume_at=(4, 9, 11), read_every=1)


def _fixture_frame(frame: dict) -> FrameSegmentation:
    """A frame of tests/data/tracker_state_v1.json, built as when the file was written:
    objects (class, score, (y0, y1, x0, x1), is_thing, embedding) painted in order as ids
    1, 2, ...; embeddings normalized in float32."""
    panoptic = np.zeros(frame["shape"], np.int32)
    for seg_id, (_, _, (y0, y1, x0, x1), _, _) in enumerate(frame["objects"], start=1):
        panoptic[y0:y1, x0:x1] = seg_id
    segments, embeddings = [], []
    for seg_id, (cls, score, _, thing, emb) in enumerate(frame["objects"], start=1):
        area = int((panoptic == seg_id).sum())
        segments.append(Segment(seg_id, cls, score, area, (0, 0, 1, 1), thing))
        vector = np.asarray(emb, np.float32)
        embeddings.append(vector / np.linalg.norm(vector))
    emb = np.array(embeddings, np.float32).reshape(len(segments), 3)
    return FrameSegmentation(panoptic=panoptic, segments=segments, embeddings=emb)


def test_resumes_a_state_written_by_the_previous_version() -> None:
    """tests/data/tracker_state_v1.json: a state and what followed it, written by the tracker
    with one boolean mask per track (before label-map runs)."""
    data = json.loads(FIXTURE.read_text())
    frames = [_fixture_frame(frame) for frame in data["frames"]]
    config = _legacy(**data["config"])
    for make in (Tracker, ReferenceTracker):
        tracker = make(config, TrackerState.from_json(data["state"]))
        assert _old_fields(tracker.state.to_json()) == data["state"]
        for t, segmentation in enumerate(frames[data["resume_at"] :]):
            result = tracker.step(data["resume_at"] + t, segmentation)
            assert result.track_ids.tolist() == data["track_ids"][t]
            np.testing.assert_array_equal(result.labels, data["labels"][t])
        assert _old_fields(tracker.state.to_json()) == data["final_state"]


def _random_map(
    rng: np.random.Generator, shape: tuple[int, int], labels: int, block: int = 20
) -> np.ndarray:
    """Random labels in blocks of 3 x `block` pixels, some single pixels (block 1: noise)."""
    small = rng.integers(0, labels, (shape[0] // 3 + 1, shape[1] // block + 1))
    big = np.repeat(np.repeat(small, 3, axis=0), block, axis=1)[: shape[0], : shape[1]]
    dots = rng.random(shape) < 0.01
    big[dots] = rng.integers(0, labels, int(dots.sum()))
    return big.astype(np.int32)


@pytest.mark.parametrize("blocks", [(20, 20), (20, 1), (1, 1)])
def test_runs_counts_equal_pixel_counts(blocks: tuple[int, int]) -> None:
    """Maps kept as runs (blocks of 20) and as pixels (noise, block 1), alone and mixed."""
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (1, 9), (9, 1), (13, 17), (30, 41), (40, 200)]:
        a = _random_map(rng, shape, 5, blocks[0])
        b = _random_map(rng, shape, 7, blocks[1])
        ra, rb = label_runs(a), label_runs(b)
        if shape == (40, 200):
            assert (ra.dense, rb.dense) == (blocks[0] == 1, blocks[1] == 1)
        np.testing.assert_array_equal(expand_runs(ra), a)
        np.testing.assert_array_equal(expand_runs(reorder_runs(ra)), a)
        np.testing.assert_array_equal(expand_runs(reorder_runs(reorder_runs(ra))), a)
        values_a, values_b, lengths = pair_runs(ra, rb)
        assert lengths.sum() == a.size and (lengths > 0).all()
        rows, columns = np.array([4, 0, 9, 4]), np.array([6, 1, 1, 0, 11])
        joint, areas = joint_counts(ra, rows, rb, columns)
        expected = [[int(((a == r) & (b == c)).sum()) for c in columns] for r in rows]
        assert joint.tolist() == expected
        assert areas.tolist() == [int((a == r).sum()) for r in rows]
        assert label_areas(rb, columns).tolist() == [int((b == c).sum()) for c in columns]
        by_columns = label_runs(a, column_major=True)
        for label in range(-1, 7):
            assert mask_counts_of_label(by_columns, label) == mask_to_counts(a == label)
    empty = label_runs(np.zeros((0, 5), np.int32), column_major=True)
    assert mask_counts_of_label(empty, 1) == mask_to_counts(np.zeros((0, 5), bool)) == []
    assert expand_runs(label_runs(np.zeros((0, 5), np.int32))).shape == (0, 5)


def test_last_masks_iou_equals_boolean_mask_iou_and_frames_are_released() -> None:
    rng = np.random.default_rng(1)
    maps = [_random_map(rng, (15, 22), 6) for _ in range(3)]
    masks = LastMasks()
    keys = [masks.add_frame(label_runs(m), step) for step, m in enumerate(maps)]
    pointers = {10: (0, 1), 11: (0, 3), 12: (1, 3), 13: (2, 5), 14: (2, 40)}
    for track_id, (frame, label) in pointers.items():
        masks.point(track_id, keys[frame], label)
    current = _random_map(rng, (15, 22), 6)
    segment_ids = np.array([2, 5, 1, 77])
    got = masks.iou(list(pointers), label_runs(current), segment_ids)
    boolean = [maps[frame] == label for frame, label in pointers.values()]
    np.testing.assert_array_equal(got, mask_iou_with_panoptic(boolean, current, segment_ids))
    other_size = masks.iou(list(pointers), label_runs(current[:5]), segment_ids)
    assert not other_size.any()
    for track_id, (frame, label) in pointers.items():
        assert masks.counts(track_id) == mask_to_counts(maps[frame] == label)
    # Frame 0 goes; the owed RLE of track 10 comes back, track 11's was not wanted.
    owed = masks.release(1, wanted={10, 13})
    assert owed == {10: mask_to_counts(maps[0] == 1)}
    assert 10 not in masks and 11 not in masks and 12 in masks
    masks.forget(12)
    masks.release(0, wanted=set())
    assert masks.iou([13], label_runs(current), segment_ids).shape == (1, 4)
    assert len(masks._frames) == 1  # frame 1 had no one left, frame 0 was released
