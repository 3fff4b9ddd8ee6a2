"""Capacity mode of `streamseg bench`: the replaying stand-in segmenter gives back exactly what
was recorded (so a replayed run equals the real one on the recorded frames), and a small
capacity run reports every key (no timing thresholds: speeds live in docs/BENCHMARKS.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_segmenter import FakeSegmenter, blob_frame, make_blob_video

from streamseg.bench.capacity import (
    CAPACITY,
    CAPACITY_OVERLAY,
    END_TO_END_OVERLAY,
    LIVE_CAPACITY,
    capacity_stages,
    summarize,
)
from streamseg.bench.gpu_report import bench_row
from streamseg.bench.replay import ReplaySegmenter, record_batch
from streamseg.bench.sync_debug import check_syncs
from streamseg.cli import main
from streamseg.commands.bench import bench_stages
from streamseg.config import ModelSettings, RunConfig
from streamseg.errors import UserError
from streamseg.model.segmenter_like import ResizingSegmenter, segmenter_input_size
from streamseg.video.decode import iter_frames
from streamseg.video.pipeline import run_video
from streamseg.video.store import StoreReader

CAPACITY_KEYS = {
    "recorded_frames",
    "segments_per_frame",
    "forward_fps",
    "model_fps",
    "end_to_end_fps",
    "end_to_end_overlay_fps",
    "capacity_fps",
    "capacity_overlay_fps",
    "live_fps",
    "live_capacity_fps",
    "bound",
}


def _assert_same(got: object, want: object) -> None:
    np.testing.assert_array_equal(got.panoptic, want.panoptic)  # type: ignore[attr-defined]
    assert got.panoptic.dtype == want.panoptic.dtype  # type: ignore[attr-defined]
    assert got.segments == want.segments  # type: ignore[attr-defined]
    np.testing.assert_array_equal(got.embeddings, want.embeddings)  # type: ignore[attr-defined]


def test_replay_returns_the_recorded_outputs_exactly_and_cyclically() -> None:
    fake = FakeSegmenter()
    frames = [blob_frame(i) for i in range(3)]
    want = fake.segment(frames, output_size=(24, 32))
    replay = record_batch(fake, frames, (24, 32))
    assert fake.calls == [3, 3]  # the recording is one real call of the whole batch
    assert replay.model_id == "replay:fake-colour@sha256:0"
    assert replay.vocabulary is fake.vocabulary and replay.output_size == (24, 32)
    # 7 frames in batches of 2, 4, 1: the recording, in order, round and round
    got = replay.segment(frames[:2], (24, 32)) + replay.segment(frames + frames[:1])
    got += replay.segment(frames[:1], (24, 32))
    assert len(got) == 7 and replay.frames_replayed == 7
    for index, segmentation in enumerate(got):
        _assert_same(segmentation, want[index % 3])
    # copies: changing an output changes neither the recording nor the next replay
    got[0].panoptic[:] = 99
    got[0].embeddings[:] = 0
    got[0].segments.clear()
    _assert_same(replay.recorded[0], want[0])
    _assert_same(replay.segment(frames[:3])[2], want[0])


def test_replay_refuses_what_it_cannot_replay() -> None:
    fake = FakeSegmenter()
    replay = record_batch(fake, [blob_frame(0)], (24, 32))
    with pytest.raises(ValueError, match="recorded at"):
        replay.segment([blob_frame(0)], output_size=(48, 64))
    with pytest.raises(ValueError, match="another vocabulary"):
        replay.set_vocabulary("cat,dog")
    assert replay.set_vocabulary("red,blue,ground") is fake.vocabulary
    assert replay.set_vocabulary(fake.vocabulary) is fake.vocabulary
    with pytest.raises(ValueError, match="nothing recorded"):
        ReplaySegmenter([], vocabulary=fake.vocabulary)
    sizes = fake.segment([blob_frame(0)], (24, 32)) + fake.segment([blob_frame(0)], (12, 16))
    with pytest.raises(ValueError, match="several sizes"):
        ReplaySegmenter(sizes, vocabulary=fake.vocabulary)


def test_replay_decodes_at_the_recorded_models_input_size() -> None:
    class Resizing(FakeSegmenter):
        def input_size(self, height: int, width: int) -> tuple[int, int]:
            return height // 2, width // 2

    replay = record_batch(Resizing(), [blob_frame(0)], (48, 64))
    assert isinstance(replay, ResizingSegmenter)
    assert segmenter_input_size(replay, 48, 64) == (24, 32)
    # a stand-in without a test-time resize: decoded at the source size
    assert record_batch(FakeSegmenter(), [blob_frame(0)], (48, 64)).input_size(48, 64) == (48, 64)


def test_replayed_run_video_equals_the_real_run_on_the_recorded_frames(tmp_path: Path) -> None:
    """A video as long as the recorded batch: the replayed run_video writes the very store the
    real one writes (labels, segments, tracks)."""
    video = make_blob_video(tmp_path / "blobs.mp4", frames=6)
    frames = [frame.image for frame in iter_frames(video)]
    config = RunConfig(model=ModelSettings(batch_size=6))
    real = run_video(video, tmp_path / "real.zarr", config=config, segmenter=FakeSegmenter())
    replay = record_batch(FakeSegmenter(), frames, (48, 64))
    replayed = run_video(video, tmp_path / "replay.zarr", config=config, segmenter=replay)
    assert replayed.frames == real.frames == 6 and replayed.tracks == real.tracks
    assert replayed.segments == real.segments > 0
    want, got = StoreReader(tmp_path / "real.zarr"), StoreReader(tmp_path / "replay.zarr")
    np.testing.assert_array_equal(got.labels(), want.labels())
    for name, column in want.segments.items():
        np.testing.assert_array_equal(got.segments[name], column, err_msg=name)


def test_capacity_cli_json_reports_every_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["bench", "--model", "tiny-convnext", "--size", "64x64", "--frames", "3"]
        + ["--batch-size", "2", "--repeats", "1", "--device", "cpu", "--threads", "1"]
        + ["--capacity", "--live", "--sync-debug", "--json"]
    )
    assert code == 0
    text = capsys.readouterr().out
    result = json.loads(text)
    names = ("end_to_end", END_TO_END_OVERLAY, CAPACITY, CAPACITY_OVERLAY)
    assert sorted(result["stages"]) == sorted(names)
    for name in names:
        stage = result["stages"][name]
        assert stage["frames"] == 3 and stage["seconds"] > 0, name
        assert stage["fps"] == pytest.approx(3 / stage["seconds"])
    capacity = result["capacity"]
    assert set(capacity) == CAPACITY_KEYS
    assert capacity["recorded_frames"] == 2 and len(capacity["segments_per_frame"]) == 2
    assert capacity["forward_fps"] == pytest.approx(1 / result["forward_seconds_per_frame"])
    assert capacity["model_fps"] > 0  # measured (as the warm-up of the real runs), not listed
    for key, name in (
        ("end_to_end_fps", "end_to_end"),
        ("end_to_end_overlay_fps", END_TO_END_OVERLAY),
        ("capacity_fps", CAPACITY),
        ("capacity_overlay_fps", CAPACITY_OVERLAY),
    ):
        assert capacity[key] == result["stages"][name]["fps"], key
    assert capacity["bound"] in ("model", "pipeline")
    # live with the model and with the replay, both at the bench size
    for key, live in (("live_fps", result["live"]), ("live_capacity_fps", result["live_capacity"])):
        assert live["size"] == [64, 64] and live["processed"] >= 1
        assert live["processed"] + live["dropped"] == live["received"]
        assert capacity[key] == live["processed_fps"] > 0
    # no CUDA here: the sync check says so instead of pretending
    assert result["sync_debug"]["checked"] is False and result["sync_debug"]["raised"] is False
    # .ci/gpu.sh's report reads this very output
    (tmp_path / "bench-tiny.json").write_text(text)
    row = bench_row(tmp_path / "bench-tiny.json")
    assert row.ok and row.capacity_fps == capacity["capacity_fps"]
    assert row.forward_fps == pytest.approx(capacity["forward_fps"])
    assert row.live_capacity_fps == capacity["live_capacity_fps"] and row.sync_checked is False


def test_capacity_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["bench", "--model", "tiny-convnext", "--size", "64x64", "--frames", "2"]
        + ["--batch-size", "2", "--repeats", "1", "--device", "cpu", "--threads", "1"]
        + ["--stages", "capacity"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "capacity (replayed)" in out and "bound by:" in out


def test_stage_selection() -> None:
    assert bench_stages(None, capacity=True, live=False) == capacity_stages()
    assert capacity_stages(live=True)[-2:] == ("live", LIVE_CAPACITY)
    assert bench_stages("decode", capacity=True, live=False) == ("decode", *capacity_stages())
    assert bench_stages("capacity", capacity=False, live=False) == ("capacity",)
    assert "live" in bench_stages(None, capacity=False, live=False)
    with pytest.raises(UserError, match="--live"):
        bench_stages(None, capacity=False, live=True)


def test_summary_bound_and_missing_stages() -> None:
    recorded = FakeSegmenter().segment([blob_frame(0)], (24, 32))
    summary = summarize(recorded, 10.0, {CAPACITY: 40.0, "end_to_end": 8.0}, None, None)
    assert summary.bound == "model" and summary.segments_per_frame == [3]
    assert summary.end_to_end_fps == 8.0 and summary.capacity_overlay_fps is None
    assert summary.model_fps is None
    assert summarize(recorded, 50.0, {CAPACITY: 40.0}, None, None).bound == "pipeline"
    # the whole model call decides, not the forward alone
    assert summarize(recorded, 50.0, {CAPACITY: 40.0, "model": 30.0}, None, None).bound == "model"
    assert summarize(recorded, 50.0, {}, None, None).bound is None


def test_sync_check_is_skipped_off_cuda() -> None:
    calls: list[int] = []
    check = check_syncs(lambda: calls.append(1), "cpu")
    assert not check.checked and not calls and "not a CUDA device" in (check.note or "")
