"""Kill-and-resume: `python -m streamseg run` killed with SIGKILL after some committed frames,
rerun with the same command, compared array by array to an uninterrupted run."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fake_segmenter import make_blob_video

from streamseg.commands.run import FACTORY_ENV
from streamseg.video.store import open_store, read_progress

TESTS = Path(__file__).resolve().parent
# Bound on every wait of this test (the loops below stop there at the latest).
DEADLINE_SECONDS = 240


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamseg", "run", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
    )


def _kill_after(argv: list[str], env: dict[str, str], store: Path, frames: int) -> int:
    """Start the run, SIGKILL it once `frames` frames are committed; return the count then."""
    process = subprocess.Popen(
        [sys.executable, "-m", "streamseg", "run", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if (store / "progress.json").is_file() and read_progress(store).frames >= frames:
                break
            time.sleep(0.02)
        assert process.poll() is None, f"run ended before the kill: {process.stderr.read()}"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    return read_progress(store).frames


def _assert_same_store(a: Path, b: Path) -> None:
    ra, rb = open_store(a), open_store(b)
    assert ra.status == rb.status == "done"
    assert len(ra) == len(rb)
    np.testing.assert_array_equal(ra.labels(), rb.labels())
    for table in ("frames", "segments", "tracks"):
        ta, tb = getattr(ra, table), getattr(rb, table)
        assert ta.keys() == tb.keys()
        for column, values in tb.items():
            if values.dtype.kind == "f":
                np.testing.assert_allclose(ta[column], values, rtol=0, atol=1e-6)
            else:
                np.testing.assert_array_equal(ta[column], values, err_msg=f"{table}.{column}")


def _kill_and_resume(tmp_path: Path, argv: list[str], env: dict[str, str], slow_env: dict) -> None:
    straight = tmp_path / "straight.zarr"
    result = _run([*argv, "--out", str(straight), "--quiet"], env)
    assert result.returncode == 0, result.stderr
    killed = tmp_path / "killed.zarr"
    committed = _kill_after([*argv, "--out", str(killed), "--quiet"], slow_env, killed, 4)
    total = len(open_store(straight))
    assert 4 <= committed < total
    assert open_store(killed).status == "running" and len(open_store(killed)) == committed
    result = _run([*argv, "--out", str(killed), "--json"], env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["resumed_from"] == committed and summary["frames"] == total
    _assert_same_store(straight, killed)


def test_sigkill_then_rerun_equals_uninterrupted_run(tmp_path: Path) -> None:
    video = make_blob_video(tmp_path / "blobs.mp4", frames=24)
    preset = tmp_path / "p.toml"
    preset.write_text("[model]\nbatch_size = 2\n[store]\ncommit_frames = 2\n")
    argv = [str(video), "--pipeline", str(preset)]
    env = _env(**{FACTORY_ENV: "fake_segmenter:make_fake"})
    slow = _env(**{FACTORY_ENV: "fake_segmenter:make_fake", "FAKE_SEGMENTER_DELAY": "0.25"})
    _kill_and_resume(tmp_path, argv, env, slow)


@pytest.mark.slow  # three processes each loading torch and the model (~75 s on 2 busy cores)
@pytest.mark.skipif(
    importlib.util.find_spec("streamseg.model.vocab") is None, reason="needs model/vocab.py"
)
def test_sigkill_then_rerun_with_the_real_tiny_model(tmp_path: Path) -> None:
    video = make_blob_video(tmp_path / "blobs.mp4", frames=8)
    preset = tmp_path / "p.toml"
    preset.write_text("[model]\nbatch_size = 2\ndevice = 'cpu'\n[store]\ncommit_frames = 2\n")
    argv = [
        str(video),
        "--pipeline",
        str(preset),
        "--model",
        "tiny-convnext",
        "--vocab",
        "red square,blue square,grass",
        "--stuff",
        "grass",
    ]
    env = _env()
    env.pop(FACTORY_ENV, None)
    _kill_and_resume(tmp_path, argv, env, env)
