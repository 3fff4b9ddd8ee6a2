"""`streamseg render`: an overlay redrawn from a store equals the one drawn during the run."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import videos
from fake_segmenter import GROUND, FakeSegmenter, make_blob_video

from streamseg.cli import main
from streamseg.commands.render import default_overlay_path
from streamseg.config import ModelSettings, RunConfig
from streamseg.errors import UserError
from streamseg.video import render
from streamseg.video.draw import track_color
from streamseg.video.pipeline import run_video
from streamseg.video.render_store import render_store
from streamseg.video.store import open_store


def _decode(path: Path) -> tuple[list[float], list[np.ndarray], list[str]]:
    with av.open(str(path)) as container:
        kinds = [stream.type for stream in container.streams]
        frames = list(container.decode(video=0))
        return (
            [float(f.time) for f in frames],
            [f.to_ndarray(format="rgb24") for f in frames],
            kinds,
        )


def _drawn_frames(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Record every picture an OverlayWriter hands to the encoder (drawn, not yet encoded)."""
    drawn: list[np.ndarray] = []
    original = render.draw_overlay

    def draw(*args, **kwargs):
        picture = original(*args, **kwargs)
        drawn.append(picture.copy())
        return picture

    monkeypatch.setattr(render, "draw_overlay", draw)
    return drawn


@pytest.fixture(scope="module")
def run_with_overlay(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, list]:
    """A 24-frame blob video segmented (fake segmenter) into a store, with the run's overlay
    and the pictures drawn for it."""
    directory = tmp_path_factory.mktemp("render")
    video = make_blob_video(directory / "blobs.mp4", frames=24)
    store = directory / "blobs.zarr"
    overlay = directory / "during_run.mp4"
    config = RunConfig(model=ModelSettings(batch_size=4))
    with pytest.MonkeyPatch.context() as monkeypatch:
        drawn = _drawn_frames(monkeypatch)
        run_video(video, store, config=config, segmenter=FakeSegmenter(), overlay=overlay)
    return video, store, overlay, drawn


def test_redrawn_overlay_equals_the_run_overlay(
    run_with_overlay: tuple[Path, Path, Path, list],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    video, store, during_run, run_drawn = run_with_overlay
    out = tmp_path / "redrawn.mp4"
    calls: list[tuple[int, int]] = []
    drawn = _drawn_frames(monkeypatch)
    summary = render_store(store, out, video=video, progress=lambda d, t: calls.append((d, t)))
    assert summary.frames == 24 and not summary.audio
    assert calls[-1] == (24, 24)
    times, images, kinds = _decode(out)
    run_times, run_images, _ = _decode(during_run)
    assert kinds == ["video"]
    reader = open_store(store)
    np.testing.assert_allclose(times, reader.frames["time"], atol=1e-4)
    np.testing.assert_allclose(times, run_times, atol=1e-9)
    # Same labels, same drawing: the same pictures reach the encoder, to the bit.
    assert len(drawn) == len(run_drawn) == 24
    for a, b in zip(drawn, run_drawn, strict=True):
        np.testing.assert_array_equal(a, b)
    # Encoded, they stay the same within H.264's losses. libx264 here does not give the same
    # bytes for the same pictures from run to run (it differed in ~40% of runs, also on one
    # encoder thread), so the decoded pictures are compared on average.
    for a, b in zip(images, run_images, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() <= 1.0
    # The ground far from its name box shows the ground blended with its track's colour.
    labels = reader.labels(0)
    ground_track = int(labels[44, 3])
    expected = 0.5 * np.array(GROUND) + 0.5 * np.array(track_color(ground_track))
    assert np.abs(images[0][42:46, 1:5].reshape(-1, 3).mean(0) - expected).max() < 12


def test_render_command_defaults_to_the_recorded_video(
    run_with_overlay: tuple[Path, Path, Path, list], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, store, _, _ = run_with_overlay
    out = tmp_path / "cli.mp4"
    assert main(["render", str(store), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 24 and summary["out"] == str(out)
    times, _, _ = _decode(out)
    assert len(times) == 24
    assert not list(tmp_path.glob(".*partial*"))
    assert default_overlay_path("a/clip.zarr") == Path("a/clip_overlay.mp4")
    assert default_overlay_path("a/clip.zarr/") == Path("a/clip_overlay.mp4")


def test_render_copies_audio_and_keeps_vfr_times(tmp_path: Path) -> None:
    video = videos.make_video(tmp_path / "tone.mkv", times=videos.VFR_TIMES, audio=True)
    store = tmp_path / "tone.zarr"
    run_video(video, store, config=RunConfig(), segmenter=FakeSegmenter())
    out = tmp_path / "tone.mp4"
    summary = render_store(store, out)
    assert summary.audio and summary.frames == len(videos.VFR_TIMES)
    times, _, kinds = _decode(out)
    assert kinds == ["video", "audio"]
    np.testing.assert_allclose(times, videos.VFR_TIMES, atol=1e-4)


def test_render_refuses_another_video_and_keeps_the_old_overlay(
    run_with_overlay: tuple[Path, Path, Path, list], tmp_path: Path
) -> None:
    _, store, overlay, _ = run_with_overlay
    out = tmp_path / "keep.mp4"
    # An earlier overlay that streamseg wrote (a file it did not write is refused up front).
    earlier = overlay.read_bytes()
    out.write_bytes(earlier)
    other_size = videos.make_video(tmp_path / "other.mp4", width=32, height=24)
    with pytest.raises(UserError, match="other.mp4: does not match the store"):
        render_store(store, out, video=other_size)
    # Same size, other timing (25 fps, the store's video is 12.5 fps).
    other_timing = videos.make_video(tmp_path / "timing.mp4", frames=30)
    with pytest.raises(UserError, match="timing.mp4: does not match the store"):
        render_store(store, out, video=other_timing)
    short = make_blob_video(tmp_path / "short.mp4", frames=10)
    with pytest.raises(UserError, match="short.mp4: ends before the store"):
        render_store(store, out, video=short)
    assert out.read_bytes() == earlier
    assert not list(tmp_path.glob(".*partial*"))
    with pytest.raises(UserError, match="missing.zarr"):
        render_store(tmp_path / "missing.zarr", out)
    assert main(["render", str(tmp_path / "missing.zarr"), "--out", str(out)]) == 2
