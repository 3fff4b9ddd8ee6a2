"""Tracker: masks that move, cross, disappear and come back; stuff ids; votes; state round trip."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from streamseg.config import TrackerConfig
from streamseg.model.outputs import FrameSegmentation, Segment
from streamseg.video.rle import (
    compress_counts,
    decode_mask,
    decompress_counts,
    encode_mask,
    mask_to_counts,
)
from streamseg.video.track import (
    Tracker,
    TrackerState,
    assignment_cost,
    mask_iou_with_panoptic,
)

H, W = 20, 40


def _frame(objects: list[tuple[int, float, tuple[int, int, int, int], bool, list[float]]]):
    """objects: (class_id, score, (y0, y1, x0, x1), is_thing, embedding)."""
    panoptic = np.zeros((H, W), np.int32)
    segments, embeddings = [], []
    for k, (_, _, (y0, y1, x0, x1), _, _) in enumerate(objects, start=1):
        panoptic[y0:y1, x0:x1] = k
    for k, (cls, score, _, thing, emb) in enumerate(objects, start=1):
        area = int((panoptic == k).sum())
        segments.append(Segment(k, cls, score, area, (0, 0, 1, 1), thing))
        vector = np.asarray(emb, np.float32)
        embeddings.append(vector / np.linalg.norm(vector))
    emb = np.array(embeddings, np.float32).reshape(len(objects), -1 if objects else 0)
    return FrameSegmentation(panoptic=panoptic, segments=segments, embeddings=emb)


A = [1.0, 0.0, 0.0]
B = [0.0, 1.0, 0.0]


def test_mask_iou_exact() -> None:
    panoptic = np.zeros((4, 4), np.int32)
    panoptic[0:2, 0:2] = 1  # 4 px
    panoptic[2:4, 2:4] = 2  # 4 px
    mask = np.zeros((4, 4), bool)
    mask[0:2, 0:3] = True  # 6 px, 4 inside segment 1
    iou = mask_iou_with_panoptic([mask], panoptic, np.array([1, 2]))
    np.testing.assert_allclose(iou, [[4 / 6, 0.0]])


def test_assignment_cost_exact() -> None:
    config = TrackerConfig(iou_weight=0.5, class_penalty=0.3)
    iou = np.array([[0.5, 0.0]])
    tracks = np.array([[1.0, 0.0]], np.float32)
    segs = np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32)
    cost = assignment_cost(iou, tracks, segs, np.array([[False, True]]), config)
    # pair 0: 0.5*0.5 + 0.5*0 ; pair 1: 0.5*1 + 0.5*min(2,1) + 0.3
    np.testing.assert_allclose(cost, [[0.25, 1.3]])


def test_moving_objects_keep_ids_and_crossing() -> None:
    tracker = Tracker(TrackerConfig())
    # two objects moving toward each other by 2 px per frame, different appearance
    ids = []
    for t in range(8):
        left = (5, 12, 2 + 2 * t, 10 + 2 * t)
        right = (5, 12, 30 - 2 * t, 38 - 2 * t)
        seg = _frame([(0, 0.9, left, True, A), (0, 0.8, right, True, B)])
        result = tracker.step(t, seg)
        ids.append(tuple(result.track_ids.tolist()))
        assert result.labels.dtype == np.int32
        assert set(np.unique(result.labels)) <= {0, *result.track_ids.tolist()}
    assert all(pair == (1, 2) for pair in ids), ids


def test_swapped_segment_order_follows_the_objects() -> None:
    tracker = Tracker(TrackerConfig())
    tracker.step(0, _frame([(0, 0.9, (0, 5, 0, 5), True, A), (1, 0.9, (10, 15, 20, 25), True, B)]))
    # same places, listed in the other order: ids follow masks, not list positions
    result = tracker.step(
        1, _frame([(1, 0.9, (10, 15, 20, 25), True, B), (0, 0.9, (0, 5, 0, 5), True, A)])
    )
    assert result.track_ids.tolist() == [2, 1]
    assert result.labels[2, 2] == 1 and result.labels[12, 22] == 2


def test_disappear_and_come_back_within_and_after_max_age() -> None:
    config = TrackerConfig(max_age=2)
    tracker = Tracker(config)
    box = (5, 12, 5, 12)
    assert tracker.step(0, _frame([(0, 0.9, box, True, A)])).track_ids.tolist() == [1]
    tracker.step(1, _frame([]))
    tracker.step(2, _frame([]))
    # unseen for 2 processed frames (= max_age): same id
    assert tracker.step(3, _frame([(0, 0.9, box, True, A)])).track_ids.tolist() == [1]
    for t in range(4, 7):
        tracker.step(t, _frame([]))
    # unseen for 3 > max_age: the track ended, a new id starts
    assert tracker.step(7, _frame([(0, 0.9, box, True, A)])).track_ids.tolist() == [2]


def test_gaps_in_frame_indices_do_not_age_tracks() -> None:
    tracker = Tracker(TrackerConfig(max_age=1))
    box = (5, 12, 5, 12)
    tracker.step(0, _frame([(0, 0.9, box, True, A)]))
    # frame indices jump by 100 (dropped frames): still one processed frame apart
    result = tracker.step(100, _frame([(0, 0.9, box, True, A)]))
    assert result.track_ids.tolist() == [1]
    assert tracker.state.tracks[0].first_frame == 0 and tracker.state.tracks[0].last_frame == 100


def test_reappearance_elsewhere_matched_by_embedding() -> None:
    tracker = Tracker(TrackerConfig(max_age=5))
    tracker.step(0, _frame([(0, 0.9, (0, 5, 0, 5), True, A)]))
    tracker.step(1, _frame([]))
    # no overlap at all, same appearance: cost 0.5*1 + 0 = 0.5 <= 0.6 -> matched
    result = tracker.step(2, _frame([(0, 0.9, (10, 15, 30, 35), True, A)]))
    assert result.track_ids.tolist() == [1]
    # no overlap and another appearance: cost 0.5 + 0.5 = 1.0 -> a new track
    result = tracker.step(3, _frame([(0, 0.9, (0, 5, 0, 5), True, B)]))
    assert result.track_ids.tolist() == [2]


def test_cost_limit_inside_solver_not_after() -> None:
    """One track, two candidates: the solver picks the cheaper one under the limit."""
    tracker = Tracker(TrackerConfig(cost_limit=0.6))
    tracker.step(0, _frame([(0, 0.9, (0, 10, 0, 10), True, A)]))
    result = tracker.step(
        1, _frame([(0, 0.9, (0, 10, 30, 40), True, B), (0, 0.9, (0, 10, 1, 11), True, A)])
    )
    assert result.track_ids.tolist() == [2, 1]


def test_stuff_one_id_per_class_and_things_never_match_stuff() -> None:
    tracker = Tracker(TrackerConfig())
    r0 = tracker.step(
        0, _frame([(5, 0.9, (0, 20, 0, 20), False, A), (0, 0.9, (2, 8, 30, 36), True, B)])
    )
    assert r0.track_ids.tolist() == [1, 2]
    # two separate segments of stuff class 5 in one frame share one id; a thing of class 0
    # exactly where the stuff was still gets a new track
    r1 = tracker.step(
        1,
        _frame(
            [
                (5, 0.9, (0, 5, 0, 5), False, A),
                (5, 0.9, (15, 20, 30, 40), False, A),
                (0, 0.9, (0, 20, 10, 20), True, A),
            ]
        ),
    )
    assert r1.track_ids.tolist() == [1, 1, 3]


def test_class_vote_is_score_weighted() -> None:
    tracker = Tracker(TrackerConfig(class_penalty=0.1))
    box = (5, 12, 5, 12)
    tracker.step(0, _frame([(3, 0.5, box, True, A)]))
    tracker.step(1, _frame([(4, 0.25, box, True, A)]))
    result = tracker.step(2, _frame([(4, 0.125, box, True, A)]))
    assert result.track_ids.tolist() == [1]
    assert tracker.state.tracks[0].votes == {"3": 0.5, "4": 0.375}
    assert result.classes == {1: 3}
    tracker.step(3, _frame([(4, 0.25, box, True, A)]))
    assert tracker.class_of(1) == 4


def test_state_round_trip_gives_identical_continuation() -> None:
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(12):
        objects = []
        for k in range(3):
            y = int(rng.integers(0, 12))
            x = int(rng.integers(0, 30))
            emb = (np.eye(3)[k] + rng.normal(0, 0.1, 3)).tolist()
            objects.append((k, float(rng.uniform(0.3, 1.0)), (y, y + 6, x, x + 8), k < 2, emb))
        frames.append(_frame(objects))
    straight = Tracker(TrackerConfig())
    expected = [straight.step(t, f).labels for t, f in enumerate(frames)]
    first = Tracker(TrackerConfig())
    for t in range(5):
        first.step(t, frames[t])
    saved = first.state.to_json()
    # The hand-written serialization is exactly the dataclass's own (asdict) form.
    assert first.state.tracks and saved == json.dumps(asdict(first.state), separators=(",", ":"))
    resumed = Tracker(TrackerConfig(), TrackerState.from_json(saved))
    assert resumed.state.to_json() == saved
    for t in range(5, 12):
        np.testing.assert_array_equal(resumed.step(t, frames[t]).labels, expected[t])
    assert resumed.state.to_json() == straight.state.to_json()


def test_rle_exact_and_round_trip() -> None:
    mask = np.array([[0, 1, 1], [0, 1, 0]], bool)
    # column-major: 0,0 | 1,1 | 1,0 -> runs 0:2, 1:3, 0:1
    assert mask_to_counts(mask) == [2, 3, 1]
    assert mask_to_counts(np.ones((2, 2), bool)) == [0, 4]
    rng = np.random.default_rng(1)
    for _ in range(20):
        m = rng.random((17, 23)) < rng.random()
        rle = encode_mask(m)
        np.testing.assert_array_equal(decode_mask(rle), m)
    counts = [0, 100, 3, 70000, 2, 1]
    assert decompress_counts(compress_counts(counts)) == counts


def test_rle_matches_pycocotools_when_installed() -> None:
    import pytest

    mask_util = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(2)
    for _ in range(10):
        m = rng.random((31, 17)) < 0.4
        ours = encode_mask(m)
        theirs = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
        assert ours["counts"] == theirs["counts"].decode()
        assert ours["size"] == list(theirs["size"])
