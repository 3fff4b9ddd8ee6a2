"""Tracker: masks that move, cross, disappear and come back; stuff ids; votes; state round trip."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

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
    LEGACY_TRACKER,
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
    for k, (cls, score, (y0, y1, x0, x1), thing, emb) in enumerate(objects, start=1):
        area = int((panoptic == k).sum())
        box = (x0, y0, x1 - x0, y1 - y0)  # the drawn box: the tracker's motion term reads it
        segments.append(Segment(k, cls, score, area, box, thing))
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
    # processed-frame ages are the legacy rule (max_age_seconds 0) since issue 18
    config = replace(LEGACY_TRACKER, max_age=2)
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


def test_gaps_in_frame_indices_do_not_age_tracks_under_the_legacy_rule() -> None:
    tracker = Tracker(replace(LEGACY_TRACKER, max_age=1))
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


def test_box_iou_and_class_agreement_exact() -> None:
    from streamseg.video.label_runs import label_runs
    from streamseg.video.track import box_iou, class_agreement

    # boxes (0,0,2,2) and (1,0,2,2): intersection 1x2 = 2, union 4 + 4 - 2 = 6
    assert box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 2, 2], [5, 5, 1, 1]])).tolist() == [
        [2 / 6, 0.0]
    ]
    before = np.array([[1, 1, 2, 2]], np.int32)
    after = np.array([[1, 3, 3, 3]], np.int32)
    # classes: before 1->class 0, 2->class 5; after 1->class 0, 3->class 5 (lookups hold +1)
    previous_classes = np.array([0, 1, 6])
    classes = np.array([0, 1, 0, 6])
    # pixels: same, 1 (class 0) vs 3 (class 5) differs, same, same -> 3/4
    agreement = class_agreement(label_runs(before), previous_classes, label_runs(after), classes)
    assert agreement == 0.75


def test_ages_are_video_time_whatever_the_stride() -> None:
    config = TrackerConfig(max_age_seconds=1.0)
    box = (5, 12, 5, 12)
    for stride in (1, 4):
        tracker = Tracker(config)
        tracker.step(0, _frame([(0, 0.9, box, True, A)]), time=0.0)
        for t in range(stride, 30, stride):  # 30 frames at 30 fps = 1.0 s unseen
            tracker.step(t, _frame([]), time=t / 30)
        assert tracker.step(30, _frame([(0, 0.9, box, True, A)]), time=1.0).track_ids[0] == 1
        tracker = Tracker(config)
        tracker.step(0, _frame([(0, 0.9, box, True, A)]), time=0.0)
        # one frame 1.5 s later (a reconnect gap): the track ended
        assert tracker.step(1, _frame([(0, 0.9, box, True, A)]), time=1.5).track_ids[0] == 2


def test_a_cut_ends_every_thing_track() -> None:
    tracker = Tracker(TrackerConfig(cut_threshold=0.5))
    shot_a = [(0, 0.9, (5, 12, 5, 12), True, A), (40, 1.0, (0, 20, 20, 40), False, B)]
    tracker.step(0, _frame(shot_a))
    assert tracker.step(1, _frame(shot_a)).track_ids.tolist() == [2, 1]  # stuff numbered first
    # the same thing where it was, but the stuff changed class over the whole frame: a cut
    shot_b = [(0, 0.9, (5, 12, 5, 12), True, A), (41, 1.0, (0, 20, 0, 40), False, B)]
    result = tracker.step(2, _frame(shot_b))
    assert result.track_ids[0] == 4  # 3 is the new stuff class
    # without cut detection the thing keeps its id
    legacy = Tracker(LEGACY_TRACKER)
    legacy.step(0, _frame(shot_a))
    assert legacy.step(2, _frame(shot_b)).track_ids[0] == 2


def test_motion_follows_a_fast_object_over_skipped_frames() -> None:
    """A 12 px wide thing moving 4 px per second, IoU alone in the cost: from frame 0 to 1 it
    keeps IoU 8/16 (cost 0.5, matched); frame 2 is skipped, and at frame 3 its last mask
    overlaps it by 4/20 (cost 0.8: a new track without motion), while its last box moved by
    its velocity covers it exactly (cost 0)."""
    config = replace(TrackerConfig(), iou_weight=1.0)
    results = {}
    for name, cfg in (("motion", config), ("legacy", replace(config, motion=False))):
        tracker = Tracker(cfg)
        tracker.step(0, _frame([(0, 0.9, (5, 11, 0, 12), True, A)]), time=0.0)
        assert (
            tracker.step(1, _frame([(0, 0.9, (5, 11, 4, 16), True, A)]), time=1.0).track_ids[0] == 1
        )
        results[name] = tracker.step(3, _frame([(0, 0.9, (5, 11, 12, 24), True, A)]), time=3.0)
    assert results["motion"].track_ids.tolist() == [1]
    assert results["legacy"].track_ids.tolist() == [2]


def test_a_state_without_the_new_fields_loads() -> None:
    tracker = Tracker(TrackerConfig())
    tracker.step(0, _frame([(0, 0.9, (5, 12, 5, 12), True, A)]))
    data = json.loads(tracker.state.to_json())
    for track in data["tracks"]:
        for name in ("last_time", "box", "velocity"):
            del track[name]
    resumed = Tracker(TrackerConfig(), TrackerState.from_json(json.dumps(data)))
    # unknown last_time becomes the next frame's time: not ended by a far-off clock
    result = resumed.step(1000, _frame([(0, 0.9, (5, 12, 5, 12), True, A)]))
    assert result.track_ids.tolist() == [1]


def _unknown(frame: FrameSegmentation, *rows: int) -> FrameSegmentation:
    """`frame` with the embeddings of `rows` zeroed (appearance unknown)."""
    frame.embeddings[list(rows)] = 0.0
    return frame


def test_an_unknown_appearance_is_judged_on_overlap_alone() -> None:
    """A 6x6 thing moves 2 px right: mask IoU 24/48 = 0.5. Its embedding is then unknown
    (zeros): cost 1 - 0.5 = 0.5 <= 0.6, the same track; the rule before counted the unknown
    as distance 1: 0.5 * 0.5 + 0.5 * 1 = 0.75 > 0.6, a new track."""
    ids = {}
    for neutral in (True, False):
        tracker = Tracker(
            replace(TrackerConfig(), motion=False, unknown_appearance_neutral=neutral)
        )
        tracker.step(0, _frame([(0, 0.9, (5, 11, 5, 11), True, A)]), time=0.0)
        moved = _unknown(_frame([(0, 0.9, (5, 11, 7, 13), True, A)]), 0)
        ids[neutral] = tracker.step(1, moved, time=0.1).track_ids.tolist()
    assert ids == {True: [1], False: [2]}
    cost = assignment_cost(
        np.array([[0.5, 0.5]]),
        np.array([[1.0, 0.0]], np.float32),
        np.array([[0.0, 0.0], [0.0, 1.0]], np.float32),
        np.array([[False, False]]),
        TrackerConfig(),
    )
    # unknown: 1 - 0.5; known: 0.5 * 0.5 + 0.5 * (1 - 0)
    np.testing.assert_allclose(cost, [[0.5, 0.75]])


def test_a_lost_track_comes_back_as_the_one_segment_of_its_class() -> None:
    """Seen at the left, gone one frame, back at the far right (no overlap, appearance unknown):
    the only lost track of class 0 and the only new segment of class 0 pair up; with two lost
    tracks of that class nothing says which, and a new track starts."""
    far = (5, 11, 30, 36)

    def run(config: TrackerConfig, first: list) -> list[int]:
        tracker = Tracker(replace(config, motion=False))
        tracker.step(0, _frame(first), time=0.0)
        tracker.step(1, _frame([]), time=0.1)
        return tracker.step(
            2, _unknown(_frame([(0, 0.9, far, True, A)]), 0), time=0.2
        ).track_ids.tolist()

    one = [(0, 0.9, (5, 11, 0, 6), True, A)]
    two = one + [(0, 0.9, (12, 18, 0, 6), True, B)]
    assert run(TrackerConfig(), one) == [1]
    assert run(replace(TrackerConfig(), reid_unique_class=False), one) == [2]
    assert run(TrackerConfig(), two) == [3]
    # known appearances farther apart than reid_distance (A vs B: distance 1) do not pair
    tracker = Tracker(replace(TrackerConfig(), motion=False))
    tracker.step(0, _frame(one), time=0.0)
    tracker.step(1, _frame([]), time=0.1)
    assert tracker.step(2, _frame([(0, 0.9, far, True, B)]), time=0.2).track_ids.tolist() == [2]


def test_box_overlap_exact() -> None:
    from streamseg.video.track import box_overlap

    # (0,0,2,2) and (1,0,4,4): intersection 1x2 = 2, smaller area 4 -> 0.5; an empty box -> 0
    result = box_overlap(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 4, 4], [0, 0, 0, 3]]))
    assert result.tolist() == [[0.5, 0.0]]


def test_a_sliver_touching_its_tracks_box_keeps_the_id() -> None:
    """Round 3: a thing at the bottom border (rows 14-19, cols 5-14, box (5, 14, 10, 6)) shows
    one pixel in the next frame at row 19, col 15: beside its last box, not in it, and with an
    unknown appearance (zero embedding). Boxes grown by 0.02 * 40 = 0.8 px overlap by
    1.6 x 2.6 = 4.16 of the grown sliver's 2.6 x 2.6 = 6.76: cost 1 - 0.615 = 0.385 < 0.6,
    the same track; without the margin the boxes do not overlap (cost 1): a new track."""
    results = {}
    for margin in (0.0, TrackerConfig().unknown_box_margin):
        tracker = Tracker(replace(TrackerConfig(), unknown_box_margin=margin))
        tracker.step(0, _frame([(0, 0.9, (14, 20, 5, 15), True, A)]), time=0.0)
        sliver = _frame([(0, 0.9, (19, 20, 15, 16), True, A)])
        sliver.embeddings[:] = 0.0  # appearance unknown
        results[margin] = tracker.step(1, sliver, time=1 / 12).track_ids.tolist()
    assert TrackerConfig().unknown_box_margin == 0.02
    assert results == {0.0: [2], 0.02: [1]}


def test_a_predicted_box_past_the_border_keeps_a_strip_in_view() -> None:
    from streamseg.video.track import _clip_boxes

    boxes = np.array([[5.0, 25.0, 10.0, 4.0], [-12.0, 3.0, 10.0, 5.0], [30.0, -2.0, 20.0, 6.0]])
    np.testing.assert_allclose(
        _clip_boxes(boxes, (20, 40)),
        [[5.0, 19.0, 10.0, 1.0], [0.0, 3.0, 1.0, 5.0], [30.0, 0.0, 10.0, 4.0]],
    )


def test_default_cut_threshold_ends_tracks_when_half_the_frame_changes_class() -> None:
    """Stuff over the right half (400 of 800 px) changes class: agreement 0.5 - a cut with the
    round-3 default 0.6, none with round 2's 0.4."""
    shot_a = [(0, 0.9, (5, 12, 5, 12), True, A), (40, 1.0, (0, 20, 20, 40), False, B)]
    shot_b = [(0, 0.9, (5, 12, 5, 12), True, A), (41, 1.0, (0, 20, 20, 40), False, B)]
    ids = {}
    for threshold in (TrackerConfig().cut_threshold, 0.4):
        tracker = Tracker(replace(TrackerConfig(), cut_threshold=threshold))
        tracker.step(0, _frame(shot_a))
        ids[threshold] = tracker.step(1, _frame(shot_b)).track_ids[0]
    assert ids == {0.6: 4, 0.4: 2}  # 3 is the new stuff class's id
