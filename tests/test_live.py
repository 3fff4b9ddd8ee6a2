"""Live sources: a stream served on 127.0.0.1 by the test, stdin, reconnect, stop, rollover.

The served stream is the moving-blobs video as MPEG-TS at 25 fps (pts step 3600 in the 90 kHz
clock); the segmenter is the colour-threshold fake, made slower than the source where the test
needs drops. Every wait is bounded.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from fake_segmenter import FakeSegmenter
from live_server import TICKS, StreamServer, write_ts

from streamseg.config import RunConfig
from streamseg.errors import UserError
from streamseg.video.frames import DecodedFrame
from streamseg.video.live_decode import LiveFrameSource, LiveSettings, source_kind
from streamseg.video.live_run import numbered_store, run_live
from streamseg.video.store import open_store, read_progress

TESTS = Path(__file__).resolve().parent


def _config(batch_size: int = 2) -> RunConfig:
    return RunConfig().with_overrides(model={"batch_size": batch_size})


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env["STREAMSEG_SEGMENTER_FACTORY"] = "fake_segmenter:make_fake"
    env.update(extra)
    return env


def test_source_kinds() -> None:
    assert source_kind("-") == "stdin"
    assert source_kind("rtsp://cam.local/stream") == "network"
    assert source_kind("TCP://127.0.0.1:9000") == "network"
    assert source_kind("/dev/video7") == "device"
    assert source_kind("clip.mp4") == "file"
    assert numbered_store(Path("out/cam.zarr"), 3) == Path("out/cam-0003.zarr")


def _decoded(index: int) -> DecodedFrame:
    return DecodedFrame(index, index, index / 25, (2, 2), False, False, lambda size: None)


def test_stale_frames_are_dropped_before_inference() -> None:
    """Fake clock: frames older than max_latency at take time are dropped and counted."""
    now = [0.0]
    source = LiveFrameSource("-", LiveSettings(max_latency=1.0), drop=True, clock=lambda: now[0])
    for index in range(5):  # arrive at t = 0.0, 0.5, 1.0, 1.5, 2.0
        now[0] = index * 0.5
        source._push(_decoded(index), now[0])
    now[0] = 2.25  # frames that arrived before 1.25 s are too old
    taken = source.take(2)
    assert [item.decoded.index for item in taken] == [3, 4]
    assert source.stats.dropped == 3
    assert source.stats.taken == 2
    # a budget for the processing time: only frames that can still finish in time, and
    # always the newest one (unless older than max_latency itself)
    for index in range(5, 8):  # arrive at t = 2.5, 3.0, 3.5
        now[0] = 2.5 + (index - 5) * 0.5
        source._push(_decoded(index), now[0])
    now[0] = 3.75
    assert [item.decoded.index for item in source.take(4, budget=0.5)] == [7]
    assert source.stats.dropped == 5
    source._push(_decoded(8), now[0])  # arrives at 3.75
    now[0] = 4.8  # older than max_latency: dropped even alone
    source.stop()
    assert source.take(4, budget=0.0) == []
    assert source.stats.dropped == 6


def test_pipe_mode_keeps_every_frame() -> None:
    now = [0.0]
    source = LiveFrameSource("-", LiveSettings(max_latency=0.1), drop=False, clock=lambda: now[0])
    for index in range(3):
        source._push(_decoded(index), now[0])
    now[0] = 100.0
    assert [item.decoded.index for item in source.take(8)] == [0, 1, 2]
    assert source.stats.dropped == 0


def test_keep_all_on_a_network_source_keeps_reading_while_the_model_waits() -> None:
    """--no-live on a real-time source: the reader does not wait for the model (a camera or an
    RTSP server does not wait either): all 60 frames are received while none is taken, then
    every one is there, in order, none dropped."""
    server = StreamServer([60])
    source = LiveFrameSource(
        server.url, LiveSettings(read_timeout=3.0), drop=False, queue_size=4
    ).start()
    try:
        deadline = time.monotonic() + 20
        while source.stats.ended is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert source.stats.received == 60 and source.stats.ended == "end of stream"
        taken = []
        while batch := source.take(8):
            taken.extend(item.decoded.index for item in batch)
        assert taken == list(range(60)) and source.stats.dropped == 0
    finally:
        source.stop()
        source.join(5)
        server.join()


def test_live_stream_with_slow_model_drops_and_keeps_times(tmp_path: Path) -> None:
    """60 frames at 25 fps, a model at ~7 fps: frames are dropped, latency stays bounded,
    every processed frame keeps its own timestamp, and the events feed says the same."""
    server = StreamServer([60])
    feed = io.StringIO()
    summary = run_live(
        server.url,
        tmp_path / "cam.zarr",
        config=_config(batch_size=2),
        live=LiveSettings(max_latency=0.4, read_timeout=3.0),
        segmenter=FakeSegmenter(delay=0.3),
        events=feed,
        handle_signals=False,
    )
    server.join()
    reader = open_store(tmp_path / "cam.zarr")
    frames = reader.frames
    assert summary.received == 60
    assert summary.dropped > 0
    assert summary.frames + summary.dropped == 60
    assert reader.num_frames == summary.frames
    index = frames["index"]
    assert np.all(np.diff(index) >= 1) and np.any(np.diff(index) > 1)  # gaps = drops
    # true timestamps: pts = index x 3600 in the 90 kHz clock (plus the muxer's offset)
    offset = frames["pts"][0] - index[0] * TICKS
    np.testing.assert_array_equal(frames["pts"], index * TICKS + offset)
    np.testing.assert_allclose(frames["time"], frames["pts"] / 90000, atol=1e-9)
    live = reader.attrs["live"]
    assert live["dropped"] == summary.dropped and live["received"] == 60
    # bounded: without dropping the last frame would wait ~6 s behind the source
    assert summary.latency_max < 2.0
    lines = [json.loads(line) for line in feed.getvalue().splitlines()]
    frame_lines = [line for line in lines if line["type"] == "frame"]
    assert [line["index"] for line in frame_lines] == index.tolist()
    assert [line["row"] for line in frame_lines] == list(range(reader.num_frames))
    assert lines[-1] == {
        "type": "end",
        "reason": "end of stream",
        "frames": summary.frames,
        "dropped": summary.dropped,
        "received": 60,
    }
    red = [s for s in frame_lines[0]["segments"] if s["class"] == "red"]
    assert red and red[0]["is_thing"]


def _run_reconnecting(server: StreamServer, tmp_path: Path, read_timeout: float):
    """Run the fake segmenter on `server` with reconnects (1 s to reconnect), wait for the
    server, and open the store: (summary, reader)."""
    summary = run_live(
        server.url,
        tmp_path / "cam.zarr",
        config=_config(),
        live=LiveSettings(
            live=False, reconnect=True, reconnect_timeout=1.0, read_timeout=read_timeout
        ),
        segmenter=FakeSegmenter(),
        handle_signals=False,
    )
    server.join()
    return summary, open_store(tmp_path / "cam.zarr")


def test_reconnect_after_disconnect(tmp_path: Path) -> None:
    """The server drops the connection after 12 frames and serves 12 more to the next one."""
    server = StreamServer([12, 12], pace=False)
    summary, reader = _run_reconnecting(server, tmp_path, read_timeout=3.0)
    assert summary.connects == 2
    assert reader.num_frames == 24 == summary.frames
    pts = reader.frames["pts"]
    np.testing.assert_array_equal(np.diff(pts), np.full(23, TICKS))
    # the blue square keeps one track across the reconnect
    segments = reader.segments
    blue = segments["track_id"][segments["class_id"] == 1]
    assert len(blue) == 24 and len(set(blue.tolist())) == 1


def test_times_keep_increasing_when_a_reconnect_restarts_the_pts(tmp_path: Path) -> None:
    """The second connection starts its pts at 0 again: the store keeps the pts as sent, and
    frames/time goes on increasing (the tracker ages tracks by it)."""
    server = StreamServer([12, 12], pace=False, restart_pts=True)
    summary, reader = _run_reconnecting(server, tmp_path, read_timeout=3.0)
    assert summary.connects == 2 and reader.num_frames == 24
    pts, times = reader.frames["pts"], reader.frames["time"]
    assert pts[12] < pts[11]  # the source's clock restarted
    assert np.all(np.diff(times) > 0)
    # within each connection the times step by the frame interval, as the pts do
    np.testing.assert_allclose(np.diff(times[:12]), 1 / 25, atol=1e-6)
    np.testing.assert_allclose(np.diff(times[12:]), 1 / 25, atol=1e-6)
    assert times[12] - times[11] >= 1 / 25 - 1e-6


def test_unreachable_source_is_a_user_error(tmp_path: Path) -> None:
    server = StreamServer([])  # listens, closes at once
    server.join()
    with pytest.raises(UserError, match="cannot open|stream"):
        run_live(
            server.url,
            tmp_path / "x.zarr",
            config=_config(),
            live=LiveSettings(open_timeout=2.0, read_timeout=2.0),
            segmenter=FakeSegmenter(),
            handle_signals=False,
        )
    assert not (tmp_path / "x.zarr").exists()


def test_rollover_by_duration_continues_track_ids(tmp_path: Path) -> None:
    server = StreamServer([30], pace=False)
    summary = run_live(
        server.url,
        tmp_path / "cam.zarr",
        config=_config(batch_size=4),
        live=LiveSettings(live=False, segment_duration=0.38, read_timeout=3.0),
        segmenter=FakeSegmenter(),
        handle_signals=False,
    )
    server.join()
    paths = [tmp_path / f"cam-000{k}.zarr" for k in (1, 2, 3)]
    assert summary.stores == [str(p) for p in paths]
    readers = [open_store(p) for p in paths]
    assert [r.num_frames for r in readers] == [10, 10, 10]
    assert [int(r.frames["index"][0]) for r in readers] == [0, 10, 20]
    assert all(r.status == "done" for r in readers)
    blue = [set(r.segments["track_id"][r.segments["class_id"] == 1].tolist()) for r in readers]
    assert blue[0] == blue[1] == blue[2] and len(blue[0]) == 1


def test_live_overlay_is_a_growing_ts(tmp_path: Path) -> None:
    server = StreamServer([8], pace=False)
    summary = run_live(
        server.url,
        tmp_path / "cam.zarr",
        config=_config(),
        live=LiveSettings(live=False, read_timeout=3.0),
        segmenter=FakeSegmenter(),
        overlay=tmp_path / "overlay.ts",
        handle_signals=False,
    )
    server.join()
    with av.open(str(tmp_path / "overlay.ts")) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == summary.frames == 8
    assert (frames[0].height, frames[0].width) == (48, 64)


def test_live_overlay_fragmented_mp4_through_run_video(tmp_path: Path) -> None:
    """run_video takes a URL too (the live path); an .mp4 overlay is fragmented MP4."""
    from streamseg.video.pipeline import run_video

    server = StreamServer([6], pace=False)
    summary = run_video(
        server.url,
        tmp_path / "cam.zarr",
        config=_config(),
        segmenter=FakeSegmenter(),
        overlay=tmp_path / "overlay.mp4",
    )
    server.join()
    data = (tmp_path / "overlay.mp4").read_bytes()
    assert b"moof" in data and b"mvex" in data  # movie fragments, index up front
    with av.open(str(tmp_path / "overlay.mp4")) as container:
        assert len(list(container.decode(video=0))) == summary.frames == 6


@pytest.mark.parametrize("container", ["mpegts", "matroska"])
def test_stdin_pipe_with_events(tmp_path: Path, container: str) -> None:
    """`streamseg run - --events` reads MPEG-TS or Matroska from a pipe: every frame is
    processed (no drops in pipe mode), one JSON line per frame on stdout, summary on stderr."""
    data = io.BytesIO()
    write_ts(data, 0, 16, pace=False, container=container)
    out = tmp_path / "pipe.zarr"
    result = subprocess.run(
        [sys.executable, "-m", "streamseg", "run", "-", "--out", str(out), "--json", "--events"],
        input=data.getvalue(),
        env=_env(),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [line["index"] for line in lines if line["type"] == "frame"] == list(range(16))
    assert lines[-1]["type"] == "end" and lines[-1]["frames"] == 16
    summary = json.loads(result.stderr.decode().strip().splitlines()[-1])
    assert summary["frames"] == 16 and summary["dropped"] == 0
    reader = open_store(out)
    assert reader.frames["index"].tolist() == list(range(16))
    times = reader.frames["time"]
    np.testing.assert_allclose(np.diff(times), np.full(15, 0.04), atol=1e-3)
    # the blob video's segments: red (thing), blue (thing), ground (stuff) on frame 0
    first = lines[0]["segments"]
    assert sorted(s["class"] for s in first) == ["blue", "ground", "red"]
    segments = reader.segments
    in_store = segments["track_id"][segments["frame"] == 0]
    assert sorted(s["track_id"] for s in first) == sorted(in_store.tolist())
    assert len(set(in_store.tolist())) == 3


def _wait_for_frames(store: Path, count: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (store / "progress.json").exists() and read_progress(store).frames >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{store}: fewer than {count} frames committed in {seconds} s")


def _json_summary(stderr: bytes) -> dict:
    """The --json summary of a live run: the last line of its stderr (stdout is for events)."""
    return json.loads(stderr.decode().strip().splitlines()[-1])


def test_sigint_stops_cleanly_and_second_sigint_exits_at_once(tmp_path: Path) -> None:
    server = StreamServer([600, 600, 600])  # 24 s each: far longer than the test waits
    out = tmp_path / "cam.zarr"
    process = subprocess.Popen(
        [sys.executable, "-m", "streamseg", "run", server.url, "--out", str(out), "--json"],
        env=_env(FAKE_SEGMENTER_DELAY="0.05"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_frames(out, 4)
        running = open_store(out)  # readable while written: the committed frames only
        assert running.status == "running" and running.num_frames >= 4
        assert running.labels().shape == (running.num_frames, 48, 64)
        assert running.frames["index"].shape == (running.num_frames,)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr.decode()
    assert stdout == b""  # the summary is on stderr, always
    summary = _json_summary(stderr)
    assert summary["ended"] == "interrupted"
    reader = open_store(out)
    assert reader.status == "done"
    assert reader.num_frames == summary["frames"] >= 4
    assert reader.labels().shape[0] == reader.num_frames
    assert reader.attrs["live"]["state"] == "interrupted"

    # SIGTERM: the same clean stop.
    third = tmp_path / "cam3.zarr"
    process = subprocess.Popen(
        [sys.executable, "-m", "streamseg", "run", server.url, "--out", str(third), "--json"],
        env=_env(FAKE_SEGMENTER_DELAY="0.05"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_frames(third, 2)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr.decode()
    assert _json_summary(stderr)["ended"] == "terminated"
    reader = open_store(third)
    assert reader.status == "done" and reader.attrs["live"]["state"] == "terminated"

    # Second run, two SIGINTs: exits at once (130), the store consistent up to its last commit.
    second = tmp_path / "cam2.zarr"
    process = subprocess.Popen(
        [sys.executable, "-m", "streamseg", "run", server.url, "--out", str(second)],
        env=_env(FAKE_SEGMENTER_DELAY="2"),  # a batch takes 2 s: the first stop must wait
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_frames(second, 1)
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    server.stop.set()
    assert process.returncode == 130
    reader = open_store(second)
    assert reader.num_frames >= 1
    assert reader.labels().shape[0] == reader.num_frames


def test_reconnect_after_stall(tmp_path: Path) -> None:
    """The server stops sending but keeps the connection open: after --read-timeout the
    reader hangs up and reconnects, and gets the rest."""
    server = StreamServer([12, 12], pace=False, stall=True)
    summary, reader = _run_reconnecting(server, tmp_path, read_timeout=1.0)
    assert summary.connects == 2
    assert "stream lost" in " ".join(summary.warnings)
    pts = reader.frames["pts"]
    assert pts[-1] - pts[0] == 23 * TICKS  # the last frame of the second part arrived
    assert reader.num_frames in (23, 24)  # the frame in flight at the stall may be lost


def test_max_frames_stops_a_live_run(tmp_path: Path) -> None:
    server = StreamServer([40], pace=False)
    summary = run_live(
        server.url,
        tmp_path / "cam.zarr",
        config=_config(batch_size=4),
        live=LiveSettings(live=False, max_frames=10, read_timeout=3.0),
        segmenter=FakeSegmenter(),
        handle_signals=False,
    )
    server.stop.set()
    server.join()
    assert summary.ended == "max frames"
    reader = open_store(tmp_path / "cam.zarr")
    assert reader.frames["index"].tolist() == list(range(10))
    assert reader.status == "done"


def test_measure_live_rate_accounts_for_every_frame() -> None:
    from streamseg.bench.live import measure_live_rate

    rate = measure_live_rate(
        FakeSegmenter(delay=0.2), size=(48, 64), input_fps=25.0, seconds=1.2, max_latency=0.3
    )
    assert rate.received == 30
    assert rate.processed + rate.dropped == 30
    assert rate.dropped > 0 and rate.processed > 0
    assert rate.processed_fps > 0


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streamseg.cli import main

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    assert main(["run", str(video), "--segment-duration", "5", "--out", "x.zarr"]) == 2
    assert "apply to live sources" in capsys.readouterr().err
    assert main(["run", "-", "--vocab", "a,b"]) == 2
    assert "needs --out" in capsys.readouterr().err
    existing = tmp_path / "cam.zarr"
    existing.mkdir()
    (existing / "file").write_text("not a store")
    assert main(["run", "tcp://127.0.0.1:9", "--out", str(existing), "--vocab", "a"]) == 2
    assert "exists (a live run writes a new store each run)" in capsys.readouterr().err


def test_udp_stream(tmp_path: Path) -> None:
    """MPEG-TS datagrams to udp://127.0.0.1:PORT; UDP has no end of stream, so the run ends
    when no data came for --read-timeout (the source is gone)."""
    import socket
    import threading

    data = io.BytesIO()
    write_ts(data, 0, 50, pace=False)
    payload = data.getvalue()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()

    def send() -> None:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        time.sleep(0.3)  # the reader binds the port first
        size = 188 * 7  # whole TS packets per datagram, as FFmpeg sends them
        chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
        began = time.monotonic()
        for number, chunk in enumerate(chunks):
            sender.sendto(chunk, ("127.0.0.1", port))
            time.sleep(max(0.0, began + 2.0 * (number + 1) / len(chunks) - time.monotonic()))
        sender.close()

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    summary = run_live(
        f"udp://127.0.0.1:{port}",
        tmp_path / "udp.zarr",
        config=_config(),
        live=LiveSettings(read_timeout=1.0),
        segmenter=FakeSegmenter(),
        handle_signals=False,
    )
    thread.join(timeout=10)
    assert summary.received > 0 and summary.ended.startswith("source gone")
    pts = open_store(tmp_path / "udp.zarr").frames["pts"]
    assert np.all(np.diff(pts) > 0) and np.all(pts % TICKS == 0)
