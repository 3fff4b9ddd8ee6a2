"""Batch jobs that fail fast (issue 20): a deterministic `UserError` comes back as a failed
result (Dask retries only exceptions), a finished store made with other settings is not
reported done, and planning / stitching tasks get a worker thread of their own when the
segmenting tasks are limited by resources."""

from __future__ import annotations

from pathlib import Path

import pytest
import videos
from fake_segmenter import FakeSegmenter, make_blob_video

from streamseg.batch.cluster import worker_threads
from streamseg.batch.spec import RunSpec
from streamseg.batch.tasks import plan_video, process_video, settings_mismatch, stitch_video
from streamseg.config import ModelSettings, RunConfig
from streamseg.video.pipeline import run_video


def _spec(score_threshold: float = 0.5, device: str = "cpu") -> RunSpec:
    config = RunConfig(
        model=ModelSettings(batch_size=4, score_threshold=score_threshold, device=device)
    )
    return RunSpec(config=config, segmenter_factory=FakeSegmenter)


def test_a_non_video_fails_once_without_raising(tmp_path: Path) -> None:
    text = videos.make_not_a_video(tmp_path / "notes.mp4")
    result = process_video(str(text), str(tmp_path / "out" / "notes.zarr"), _spec())
    assert result["status"] == "failed" and result["frames"] == 0
    assert result["error"].startswith("UserError: ") and "notes.mp4: not a video" in result["error"]
    assert not (tmp_path / "out" / "notes.zarr").exists()


def test_planning_a_non_video_gives_its_error_line(tmp_path: Path) -> None:
    text = videos.make_not_a_video(tmp_path / "notes.mp4")
    planned = plan_video(str(text), shard_seconds=2.0, overlap_frames=2)
    assert isinstance(planned, str) and planned.startswith("UserError: ")
    assert "notes.mp4: not a video" in planned


def test_stitching_after_a_failed_shard_fails_with_its_error(tmp_path: Path) -> None:
    failed = {"status": "failed", "frames": 0, "seconds": 0.1, "error": "UserError: a.mp4: broken"}
    done = {"status": "done", "frames": 10, "seconds": 1.0}
    result = stitch_video(
        [str(tmp_path / "s0.zarr"), str(tmp_path / "s1.zarr")],
        str(tmp_path / "a.zarr"),
        [done, failed],
        _spec(),
        0.5,
    )
    assert result["status"] == "failed" and result["error"] == "UserError: a.mp4: broken"
    assert not (tmp_path / "a.zarr").exists()


def test_a_finished_store_with_other_settings_is_not_done(tmp_path: Path) -> None:
    video = make_blob_video(tmp_path / "blobs.mp4", frames=8)
    out = tmp_path / "blobs.zarr"
    made = _spec(score_threshold=0.5)
    run_video(video, out, config=made.config, segmenter=FakeSegmenter())
    # Same output settings (the device does not change what a store holds): done.
    assert settings_mismatch(out, made) is None
    assert settings_mismatch(out, _spec(score_threshold=0.5, device="cuda")) is None
    skipped = process_video(str(video), str(out), _spec(score_threshold=0.5, device="cuda"))
    assert skipped["status"] == "skipped" and skipped["frames"] == 8
    # Another score threshold: refused with a line naming the setting, not "skipped".
    other = _spec(score_threshold=0.7)
    mismatch = settings_mismatch(out, other)
    assert mismatch is not None and "model.score_threshold" in mismatch
    assert str(out) in mismatch
    result = process_video(str(video), str(out), other)
    assert result["status"] == "failed" and "model.score_threshold" in result["error"]


@pytest.mark.parametrize(
    ("threads", "resources", "expected"),
    [(1, None, 1), (1, {}, 1), (1, {"GPU": 1.0}, 2), (3, {"GPU": 1.0}, 4)],
)
def test_light_tasks_get_a_thread_beside_the_gpu_tasks(
    threads: int, resources: dict[str, float] | None, expected: int
) -> None:
    assert worker_threads(threads, resources) == expected
