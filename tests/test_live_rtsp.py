"""`streamseg run rtsp://...` against a real RTSP server (GStreamer's, from Debian) on 127.0.0.1.

The server (tests/rtsp_server.py, run with Debian's /usr/bin/python3) serves a 240-frame, 24 fps,
256x256 shapes-world clip in real time; `streamseg run` reads it at its default settings with the
default model, over TCP and over UDP, several times in a row: every run must keep at least 95%
of the frames (issue 22: runs kept 4-8% by chance). Skipped where the Debian packages are
missing, except under CI=true (`.ci/run` installs them), where that is a failure.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DEBIAN_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).with_name("rtsp_server.py")
FRAMES = 240
FPS = 24
KEPT = 0.95  # least share of the served frames every run keeps
PACKAGES = (
    "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad python3-gi"
)


def _server_missing() -> str | None:
    """Why the RTSP server cannot run here, or None."""
    if not os.path.exists(DEBIAN_PYTHON):
        return f"no {DEBIAN_PYTHON}"
    check = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "assert Gst.ElementFactory.find('rtph264pay') and Gst.ElementFactory.find('h264parse')"
    )
    result = subprocess.run([DEBIAN_PYTHON, "-c", check], capture_output=True, timeout=60)
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {result.returncode}"
    return None


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = _server_missing()
    if missing is not None:
        message = f"GStreamer RTSP server unavailable ({missing}); Debian packages: {PACKAGES}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("rtsp-clip")
    subprocess.run(
        [sys.executable, "-m", "streamseg", "synth", "videos", "--out", str(folder), "--n", "1",
         "--size", "256", "--frames", str(FRAMES), "--fps", str(FPS)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    return folder / "videos" / "video_000000.mp4"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def rtsp_url(clip: Path) -> Iterator[str]:
    """rtsp://127.0.0.1:PORT/cam served by GStreamer until the module's tests are done."""
    port = _free_port()
    server = subprocess.Popen(
        [DEBIAN_PYTHON, str(SERVER), str(clip), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 30)
        line = server.stdout.readline().decode() if ready else ""
        if line.strip() != "ready":
            server.kill()
            _, stderr = server.communicate(timeout=10)
            raise AssertionError(f"RTSP server did not start: {line!r} {stderr.decode()}")
        yield f"rtsp://127.0.0.1:{port}/cam"
    finally:
        server.kill()
        server.communicate(timeout=10)


THREAD_CAPS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MALLOC_TRIM_THRESHOLD_",
    "__DASK_PARENT_PID",
)


def _run(url: str, out: Path, transport: str) -> dict:
    """`streamseg run URL` at its defaults (plus the transport); its --json summary."""
    # The environment a user's run gets: nothing inherited from the test process's Dask
    # LocalClusters of earlier tests, which leave MKL_NUM_THREADS=1 and OPENBLAS_NUM_THREADS=1
    # (torch takes MKL's: one thread) and glibc's MALLOC_TRIM_THRESHOLD_ in os.environ.
    env = {key: value for key, value in os.environ.items() if key not in THREAD_CAPS}
    result = subprocess.run(
        [sys.executable, "-m", "streamseg", "run", url, "--out", str(out),
         "--rtsp-transport", transport, "--json"],
        capture_output=True,
        env=env,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b""  # a live run's summary is on stderr, always
    return json.loads(result.stderr.decode().strip().splitlines()[-1])


def _check_runs(url: str, folder: Path, transport: str, runs: int) -> None:
    kept = []
    for run in range(runs):
        summary = _run(url, folder / f"{transport}-{run}.zarr", transport)
        kept.append((summary["frames"], summary["received"], summary["latency_max"]))
        time.sleep(0.5)  # the server tears the last session down
    # Every run, not the mean: issue 22 was a lottery between good and bad runs.
    assert all(frames >= KEPT * FRAMES for frames, _, _ in kept), (transport, kept)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_run_keeps_the_frames(rtsp_url: str, tmp_path: Path, transport: str) -> None:
    _check_runs(rtsp_url, tmp_path, transport, runs=1)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_rtsp_runs_in_a_row_keep_the_frames(rtsp_url: str, tmp_path: Path, transport: str) -> None:
    _check_runs(rtsp_url, tmp_path, transport, runs=4)
