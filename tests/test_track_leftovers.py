"""Round 4 of issue 18: the second look at the tracks and segments the assignment left apart
(video/track_leftovers.py), on hand-computed counts and on small tracker runs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from streamseg.config import TrackerConfig
from streamseg.model.outputs import FrameSegmentation, Segment
from streamseg.video.last_masks import MaskOverlaps
from streamseg.video.track import LEFTOVERS_TRACKER, LEGACY_TRACKER, Tracker
from streamseg.video.track_leftovers import absorbed_rows, match_on_geometry, pieces_of_tracks

H, W = 20, 40
A = [1.0, 0.0, 0.0]
B = [0.0, 1.0, 0.0]


def _frame(objects: list[tuple[int, tuple[int, int, int, int], list[float]]]):
    """Thing segments; objects: (class_id, (y0, y1, x0, x1), embedding), score 0.9."""
    panoptic = np.zeros((H, W), np.int32)
    segments, embeddings = [], []
    for k, (cls, (y0, y1, x0, x1), emb) in enumerate(objects, start=1):
        panoptic[y0:y1, x0:x1] = k
        box = (x0, y0, x1 - x0, y1 - y0)
        segments.append(Segment(k, cls, 0.9, (y1 - y0) * (x1 - x0), box, True))
        embeddings.append(np.asarray(emb, np.float32))
    return FrameSegmentation(panoptic=panoptic, segments=segments, embeddings=np.array(embeddings))


def test_match_on_geometry_exact() -> None:
    iou = np.array(
        [
            [0.9, 0.3, 0.0],  # row 0 was assigned by the first stage: not offered
            [0.0, 0.3, 0.05],
            [0.0, 0.2, 0.0],
        ]
    )
    # Rows 1, 2 and columns 1, 2 are left. Pairs at IoU >= 0.1: (1, 1) 0.3, (2, 1) 0.2;
    # (1, 2) at 0.05 is below. One column for two rows: the larger IoU wins.
    assert match_on_geometry(iou, [1, 2], [1, 2], 0.1) == {1: 1}
    assert match_on_geometry(iou, [2], [1, 2], 0.2) == {2: 1}  # exactly at the limit
    assert match_on_geometry(iou, [2], [1, 2], 0.25) == {}
    assert match_on_geometry(iou, [], [1], 0.1) == {}


def test_pieces_of_tracks_exact() -> None:
    overlaps = MaskOverlaps(
        intersections=np.array([[30, 6, 0], [0, 2, 10]]),
        mask_areas=np.array([40, 12]),
        segment_areas=np.array([32, 10, 20]),
    )
    # Tracks 0 and 1 are assigned; segments 1 and 2 are left. Segment 1: 6 / 10 inside
    # track 0, 2 / 10 inside track 1; segment 2: 0 / 20 and 10 / 20.
    assert pieces_of_tracks(overlaps, [0, 1], [1, 2], [5, 7], [5, 5, 7], 0.5) == {1: 0, 2: 1}
    assert pieces_of_tracks(overlaps, [0, 1], [1, 2], [5, 7], [5, 5, 7], 0.6) == {1: 0}
    assert pieces_of_tracks(overlaps, [0, 1], [1, 2], [5, 7], [5, 5, 7], 0.61) == {}
    # Another class than the track it lies in: not a piece of it.
    assert pieces_of_tracks(overlaps, [0, 1], [1, 2], [5, 7], [5, 6, 7], 0.5) == {2: 1}


def test_absorbed_rows_exact() -> None:
    overlaps = MaskOverlaps(
        intersections=np.array([[40, 0], [9, 1], [8, 0]]),
        mask_areas=np.array([40, 10, 0]),
        segment_areas=np.array([50, 5]),
    )
    # Track 0 holds segment 0. Track 1's last mask: 9 of 10 pixels inside segment 0.
    # Track 2's mask has another size (area 0): never absorbed.
    assert absorbed_rows(overlaps, [1, 2], {0: 0}, [3, 3, 3], 0.8) == [1]
    assert absorbed_rows(overlaps, [1, 2], {0: 0}, [3, 3, 3], 0.95) == []
    assert absorbed_rows(overlaps, [1], {0: 0}, [3, 4, 3], 0.8) == []  # another class


def test_a_class_flicker_keeps_the_track() -> None:
    """Same mask, the class and the embedding flip: cost 0.5 * 0 + 0.5 * 1 + 0.3 = 0.8 >
    0.6, left apart by the first stage; the geometry stage takes it at IoU 1."""
    ids = {}
    for name, config in (
        ("default", LEFTOVERS_TRACKER),
        ("without", replace(LEFTOVERS_TRACKER, geometry_match_iou=0.0)),
    ):
        tracker = Tracker(config)
        tracker.step(0, _frame([(0, (5, 11, 5, 15), A)]), time=0.0)
        ids[name] = tracker.step(1, _frame([(1, (5, 11, 5, 15), B)]), time=0.1).track_ids
    assert ids["default"].tolist() == [1]
    assert ids["without"].tolist() == [2]


def test_a_second_piece_gets_its_objects_label() -> None:
    """A 6x10 thing, then the model splits it into a 6x6 and a 6x4 piece of its class. The
    6x6 piece is assigned (IoU 0.6); the 6x4 one overlaps the track's last mask entirely, has
    an orthogonal embedding (first stage: cost 0.5 * 0.6 + 0.5 = 0.8) and, its track taken,
    no geometry partner: a piece, labelled with the track."""
    results = {}
    for name, config in (
        ("default", LEFTOVERS_TRACKER),
        ("without", replace(LEFTOVERS_TRACKER, piece_containment=0.0)),
    ):
        tracker = Tracker(config)
        tracker.step(0, _frame([(0, (5, 11, 5, 15), A)]), time=0.0)
        results[name] = tracker.step(
            1, _frame([(0, (5, 11, 5, 11), A), (0, (5, 11, 11, 15), B)]), time=0.1
        )
    assert results["default"].track_ids.tolist() == [1, 1]
    assert set(np.unique(results["default"].labels).tolist()) == {0, 1}
    assert results["without"].track_ids.tolist() == [1, 2]


def test_a_track_that_was_a_piece_ends_when_its_object_is_one_segment() -> None:
    """Two pieces of one object start two tracks; the next frame has one segment over both:
    the left piece's track takes it (IoU 0.6 and the same embedding), the right piece's track
    has its whole last mask inside that segment: it ends."""
    for config, live in (
        (LEFTOVERS_TRACKER, [1]),
        (replace(LEFTOVERS_TRACKER, absorb_containment=0.0), [1, 2]),
    ):
        tracker = Tracker(config)
        tracker.step(0, _frame([(0, (5, 11, 5, 11), A), (0, (5, 11, 11, 15), A)]), time=0.0)
        assert tracker.step(1, _frame([(0, (5, 11, 5, 15), A)]), time=0.1).track_ids[0] == 1
        assert [t.id for t in tracker.state.tracks] == live


def test_round_four_is_off_by_default_and_in_the_legacy_tracker() -> None:
    for config in (TrackerConfig(), LEGACY_TRACKER):
        assert config.geometry_match_iou == 0.0
        assert config.piece_containment == 0.0
        assert config.absorb_containment == 0.0
    assert LEGACY_TRACKER.geometry_match_iou == 0.0
    assert LEGACY_TRACKER.piece_containment == 0.0
    assert LEGACY_TRACKER.absorb_containment == 0.0
    assert LEGACY_TRACKER.leftover_agreement == 0.0


def test_the_leftover_stages_wait_for_a_frame_that_kept_its_classes() -> None:
    """The class flicker of `test_a_class_flicker_keeps_the_track`, with the thing covering the
    whole frame: every pixel changed class (agreement 0 < 0.8), so the geometry stage does not
    run (with cut detection off, nothing else ends the track); with the gate off it does."""
    full = (0, H, 0, W)
    ids = {}
    for name, gate in (("gated", 0.8), ("ungated", 0.0)):
        tracker = Tracker(replace(LEFTOVERS_TRACKER, cut_threshold=0.0, leftover_agreement=gate))
        tracker.step(0, _frame([(0, full, A)]), time=0.0)
        ids[name] = tracker.step(1, _frame([(1, full, B)]), time=0.1).track_ids.tolist()
    assert ids == {"gated": [2], "ungated": [1]}


def test_a_track_paired_by_any_stage_is_not_paired_again() -> None:
    """Later stages (re-id, unique-class re-id) read who is still unpaired from the segments'
    track ids, so a track the geometry stage paired is not given a second segment."""
    from streamseg.video.track import TrackState, _unpaired

    def track(track_id: int) -> TrackState:
        return TrackState(
            id=track_id, is_thing=True, votes={"0": 1.0}, first_frame=0, last_frame=0,
            last_step=0, hits=1, embedding=[], size=[4, 4], mask_counts=[16],
        )  # fmt: skip

    live = [track(5), track(7), track(9)]
    things = [0, 2, 3]  # segment 1 is stuff
    # segment 0 paired with 7 by the assignment, segment 3 with 5 by a later stage
    track_ids = np.array([7, 100, 0, 5], np.int32)
    rows, cols = _unpaired(live, things, track_ids)
    assert rows == [2]  # only track 9 is still unpaired
    assert cols == [1]  # things[1] = segment 2
