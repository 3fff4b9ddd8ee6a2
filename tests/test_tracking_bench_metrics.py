"""Identity metrics on tiny hand-built videos (expected values derived by hand in comments),
the benchmark's variants and scene options, and a small end-to-end run without a model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from streamseg.bench.tracking import TrackingBenchSettings, compared_trackers, run_tracking_bench
from streamseg.bench.tracking_data import processed_frames
from streamseg.bench.tracking_metrics import IdentityMetrics, match_frame
from streamseg.synthetic.cuts import SHOT_TRACK_STEP, render_cut_video
from streamseg.synthetic.video import small_video_config


def _row(*labels: int) -> np.ndarray:
    return np.array([labels], np.int64)


def test_match_frame_needs_iou_above_half() -> None:
    gt = _row(1, 1, 1, 1, 2, 2, 0, 0)
    # pred 7 covers gt 1's 4 px plus 1 px of gt 2: IoU 4/5 -> match; pred 8 covers 1 px of
    # gt 2 (2 px) and 2 px of background: IoU 1/(2 + 3 - 1) = 1/4 -> no match.
    pred = _row(7, 7, 7, 7, 7, 8, 8, 8)
    assert match_frame(gt, [1, 2], pred, [7, 8]) == {1: 7}
    # exactly half is not above half: gt 2 (2 px) vs pred 9 (2 px) sharing 1: IoU 1/3; gt
    # 1 vs a pred of 8 px covering it: 4/8 = 0.5 -> no match
    assert match_frame(gt, [1], _row(9, 9, 9, 9, 9, 9, 9, 9), [9]) == {}


def test_switch_fragmentation_and_idf1_by_hand() -> None:
    metrics = IdentityMetrics()
    metrics.start_video()
    gt = _row(1, 1, 0, 0)
    # frames: pred ids on gt 1's pixels: 5, 5, (absent gt: no pixels), missed, 6, 6
    metrics.update(0, gt, [1], _row(5, 5, 0, 0), [5])
    metrics.update(1, gt, [1], _row(5, 5, 0, 0), [5])
    metrics.update(2, _row(0, 0, 0, 0), [1], _row(0, 0, 0, 0), [])  # gt absent: no break
    metrics.update(3, gt, [1], _row(0, 0, 0, 0), [])  # present, unmatched
    metrics.update(4, gt, [1], _row(6, 6, 0, 0), [6])  # matched again, to another id
    metrics.update(5, gt, [1], _row(6, 6, 0, 0), [6])
    result = metrics.result()
    # one switch (5 -> 6), one fragmentation (tracked, gap at frame 3, tracked again)
    assert (result.id_switches, result.fragmentations) == (1, 1)
    # gt detections 5 (frames 0, 1, 3, 4, 5), pred detections 4; best one-to-one pairing:
    # gt 1 <-> 5 (2 frames) or <-> 6 (2 frames): IDTP 2, IDF1 = 2*2 / (5 + 4) = 4/9
    assert (result.gt_detections, result.pred_detections, result.matches) == (5, 4, 4)
    assert abs(result.idf1 - 4 / 9) < 1e-12
    assert abs(result.idp - 2 / 4) < 1e-12 and abs(result.idr - 2 / 5) < 1e-12


def test_two_objects_swapping_ids_and_a_track_across_a_cut() -> None:
    metrics = IdentityMetrics()
    metrics.start_video(cuts=[2])
    gt = _row(1, 1, 2, 2)
    metrics.update(0, gt, [1, 2], _row(5, 5, 6, 6), [5, 6])
    metrics.update(1, gt, [1, 2], _row(6, 6, 5, 5), [5, 6])  # swapped: 2 switches
    metrics.update(2, gt, [1, 2], _row(6, 6, 7, 7), [6, 7])  # after the cut: 6 continues
    result = metrics.result()
    # switches: frame 1 both gts change (2); frame 2 gt 2 goes 5 -> 7 (1): 3
    assert result.id_switches == 3
    # track 6 is in shot 0 and shot 1 -> 1 crossing; 5 only in shot 0, 7 only in shot 1
    assert result.cut_crossings == 1
    # pairs: (1,5):1 (1,6):2 (2,6):1 (2,5):1 (2,7):1 -> best: 1<->6 (2) + 2<->5 (1) = 3
    # (or 2<->7): IDTP 3, detections 6 + 6 -> IDF1 = 6/12
    assert abs(result.idf1 - 0.5) < 1e-12


def test_processed_frames_of_each_variant() -> None:
    assert processed_frames("stride4", 10, 0) == [0, 4, 8]
    assert processed_frames("plain", 3, 0) == [0, 1, 2]
    drops = processed_frames("drops", 200, 5)
    assert drops[0] == 0 and drops == sorted(set(drops)) and 0 < len(drops) < 200
    assert drops == processed_frames("drops", 200, 5)  # seeded


def test_cut_videos_renumber_the_tracks_of_each_shot() -> None:
    video = render_cut_video(3, small_video_config(64, 12), shots=3)
    assert video.cuts == (4, 8) and len(video.scenes) == 12
    for index, scene in enumerate(video.scenes):
        shot = int(index >= 4) + int(index >= 8)
        tracks = [s.track_id for s in scene.segments if s.isthing]
        assert all(t // SHOT_TRACK_STEP == shot for t in tracks)


def test_crowd_and_hidden_options() -> None:
    from streamseg.synthetic.video import render_video

    base = small_video_config(96, 30)
    plain = [{s.track_id for s in f.segments if s.isthing} for f in render_video(1, base)]
    crowd_video = render_video(1, replace(base, crowd=4))
    first = {s.track_id: s.category_id for s in crowd_video[0].segments if s.isthing}
    crowd = {t: c for t, c in first.items() if t not in plain[0]}
    assert len(crowd) == 4 and len(set(crowd.values())) == 1  # four things of one class
    hidden = [
        {s.track_id for s in f.segments if s.isthing}
        for f in render_video(2, replace(base, hidden_frames=10))
    ]
    plain = [{s.track_id for s in f.segments if s.isthing} for f in render_video(2, base)]
    # the same video but one thing missing, in at most 10 consecutive frames (seed 2: the
    # hidden thing is in view then)
    differing = [f for f in range(30) if hidden[f] != plain[f]]
    assert differing and differing[-1] - differing[0] < 10
    missing = {frozenset(plain[f] - hidden[f]) for f in differing}
    assert len(missing) == 1 and len(next(iter(missing))) == 1
    assert all(hidden[f] <= plain[f] for f in range(30))


def test_small_oracle_run_without_a_model() -> None:
    settings = TrackingBenchSettings(
        videos=1, frames=12, size=64, seed=7, sources=("oracle",), cost_frames=2,
        variants=("plain", "cuts"),
    )  # fmt: skip
    result = run_tracking_bench(settings, compared_trackers())
    for variant in ("plain", "cuts"):
        for name in ("before", "default", "leftovers"):
            scores = result["results"]["oracle"][variant][name]
            assert scores["frames"] == 12 and 0.0 <= scores["idf1"] <= 1.0
            # oracle masks: every frame's segments are the ground truth, so per-frame PQ is 1
            assert scores["vpq_by_window"]["1"] == 1.0
    assert result["results"]["oracle"]["cuts"]["default"]["cut_crossings"] == 0
    assert set(result["cost_1080p_ms"]) == {"before", "default", "leftovers"}
    # the tracker from before issue 18 reads the detections it was built for
    assert result["detections"] == {
        "before": "unmarked", "default": "marked", "leftovers": "marked"
    }  # fmt: skip
