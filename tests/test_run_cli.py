"""`streamseg run` / `streamseg info` through the real entry point (fake segmenter via the
STREAMSEG_SEGMENTER_FACTORY test hook): summaries, presets + flag overrides, bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import videos
from fake_segmenter import make_blob_video

from streamseg.cli import main
from streamseg.commands.run import FACTORY_ENV
from streamseg.video.store import open_store


@pytest.fixture(autouse=True)
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FACTORY_ENV, "fake_segmenter:make_fake")


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_blob_video(tmp_path_factory.mktemp("v") / "blobs.mp4", frames=12)


def test_run_then_info(tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.zarr"
    assert main(["run", str(blobs), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{out}: 12 frames (48x64 labels)")
    assert "3 tracks" in lines[0] and captured.err == ""
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "frames:   12 (48x64 labels, 0.000-0.880 s)" in text
    assert "red: 1 tracks, 10 segments" in text and "ground: 1 tracks" in text
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["status"] == "done" and info["tracks"] == 3 and info["frames"] == 12
    # the same command again: nothing to do
    assert main(["run", str(blobs), "--out", str(out), "--quiet"]) == 0
    assert "already done" in capsys.readouterr().out


def test_json_summary_and_default_out(
    tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(blobs.read_bytes())
    assert main(["run", str(video), "--json", "--max-frames", "5", "--label-scale", "0.5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["store"] == str(tmp_path / "clip.zarr")
    assert summary["frames"] == 5 and summary["label_size"] == [24, 32]
    assert summary["status"] == "done" and summary["resumed_from"] == 0


def test_pipeline_preset_and_flag_overrides(
    tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preset = tmp_path / "p.toml"
    preset.write_text('[model]\nbatch_size = 2\nkeep = ["blue"]\n[decode]\nmax_frames = 6\n')
    out = tmp_path / "a.zarr"
    assert main(["run", str(blobs), "--out", str(out), "--pipeline", str(preset), "--quiet"]) == 0
    reader = open_store(out)
    assert len(reader) == 6 and reader.tracks["class_id"].tolist() == [1]
    assert reader.attrs["settings"]["model"]["batch_size"] == 2
    out = tmp_path / "b.zarr"
    argv = ["run", str(blobs), "--out", str(out), "--pipeline", str(preset), "--max-frames", "3"]
    assert main([*argv, "--quiet"]) == 0
    assert len(open_store(out)) == 3
    assert main(["run", str(blobs), "--out", str(out), "--pipeline", "default", "--quiet"]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nbatch_sise = 2\n")
    capsys.readouterr()
    assert main(["run", str(blobs), "--out", str(tmp_path / "c.zarr"), "--pipeline", str(bad)]) == 2
    assert "batch_sise" in capsys.readouterr().err


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_inputs_one_line_exit_2(
    tmp_path: Path, blobs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out", str(tmp_path / "o.zarr")]
    not_video = videos.make_not_a_video(tmp_path / "text.mp4")
    assert str(not_video) in _error(["run", str(not_video), *out], capsys)
    empty = videos.make_empty(tmp_path / "empty.mp4")
    assert str(empty) in _error(["run", str(empty), *out], capsys)
    missing = tmp_path / "missing.mp4"
    assert str(missing) in _error(["run", str(missing), *out], capsys)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    err = _error(["run", str(blobs), "--out", str(blocker / "s.zarr")], capsys)
    assert "cannot write" in err
    assert "not a store" in _error(["run", str(blobs), "--out", str(blocker)], capsys)
    overlay = str(blocker / "o.mp4")
    err = _error(
        ["run", str(blobs), "--out", str(tmp_path / "n.zarr"), "--overlay", overlay], capsys
    )
    assert "o.mp4: cannot write" in err and not (tmp_path / "n.zarr").exists()
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "not writable" in _error(["run", str(blobs), "--out", str(locked / "s")], capsys)
    # a store from another video
    store = tmp_path / "s.zarr"
    assert main(["run", str(blobs), "--out", str(store), "--quiet"]) == 0
    other = make_blob_video(tmp_path / "other.mp4", frames=5)
    err = _error(["run", str(other), "--out", str(store)], capsys)
    assert "another video" in err and "--overwrite" in err
    assert main(["run", str(other), "--out", str(store), "--overwrite", "--quiet"]) == 0
    assert len(open_store(store)) == 5
    assert "no such store" in _error(["info", str(tmp_path / "nothing.zarr")], capsys)
