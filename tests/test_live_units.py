"""The parts of a live run that decide what is kept (issue 22), with exact values: the batch
time estimate, torch's thread count under a busy machine, arrival at packet receipt, frame
times across a pts reset, the keep-all buffer of a real-time source, the source options."""

from __future__ import annotations

import argparse

import pytest

from streamseg.commands.run_live import add_live_arguments, check_live_flags, with_live_flags
from streamseg.config import LiveConfig, RunConfig
from streamseg.errors import UserError
from streamseg.video.frames import DecodedFrame
from streamseg.video.live_budget import BatchTimes
from streamseg.video.live_decode import (
    LiveFrameSource,
    StreamClock,
    _arrival,
    check_live_settings,
    container_options,
)
from streamseg.video.live_threads import ModelThreads


def _decoded(index: int) -> DecodedFrame:
    return DecodedFrame(index, index, index / 25, (2, 2), False, False, lambda size: None)


def test_batch_times_skip_the_cold_batch_and_outvote_a_stall() -> None:
    times = BatchTimes(window=5)
    assert times.expected(4) == 0.0
    times.record(4, 3.0)  # cold first batch: not counted
    assert times.expected(4) == 0.0
    for seconds in (0.4, 0.4, 2.4, 0.4):  # one stall among 0.1 s per frame
        times.record(4, seconds)
    assert times.expected(4) == pytest.approx(0.4)
    assert times.expected(1) == pytest.approx(0.1)
    times.record(0, 1.0)  # an empty batch says nothing
    assert times.expected(2) == pytest.approx(0.2)


class _Machine:
    """Fake /proc/stat and os.times: busy seconds of the machine and of this process."""

    def __init__(self) -> None:
        self.now = 0.0
        self.machine = 0.0
        self.ours = 0.0

    def spend(self, seconds: float, ours: float, others: float) -> None:
        self.now += seconds
        self.ours += ours * seconds
        self.machine += (ours + others) * seconds


def test_model_threads_follow_the_cores_other_processes_leave() -> None:
    machine = _Machine()
    calls: list[int] = []
    threads = ModelThreads(
        2,
        2,
        calls.append,
        machine_busy=lambda: machine.machine,
        process_busy=lambda: machine.ours,
        clock=lambda: machine.now,
    )
    machine.spend(0.2, ours=2.0, others=0.0)
    assert threads.update() == 2 and calls == []  # too soon to look
    machine.spend(0.4, ours=2.0, others=0.0)
    assert threads.update() == 2 and calls == []  # idle machine: all cores
    machine.spend(1.0, ours=1.0, others=1.0)  # another process takes a core
    assert threads.update() == 2  # smoothed: 0.5 of a core so far (rounds to 2 left)
    machine.spend(1.0, ours=1.0, others=1.0)
    assert threads.update() == 1 and calls == [1]  # 0.75: one core left
    for _ in range(3):
        machine.spend(1.0, ours=1.0, others=0.0)  # it went away
        threads.update()
    assert threads.current == 2 and calls == [1, 2]
    machine.spend(1.0, ours=0.5, others=1.5)
    machine.spend(1.0, ours=0.5, others=1.5)
    threads.update()
    threads.update()
    assert calls[-1] == 1
    threads.restore()
    assert calls[-1] == 2 and threads.current == 2


def test_model_threads_leave_the_count_alone_without_proc_stat() -> None:
    calls: list[int] = []
    threads = ModelThreads(4, 4, calls.append, machine_busy=lambda: None, clock=lambda: 10.0)
    assert threads.update() == 4
    threads.restore()
    assert calls == []


def test_arrival_is_the_packets_time_and_forgets_older_packets() -> None:
    # Packets in decode order I0 P3 B1 B2 (pts), received at 1.0, 1.1, 1.2, 1.3.
    arrivals = {0: 1.0, 3: 1.1, 1: 1.2, 2: 1.3}
    assert _arrival(arrivals, 0, 9.0) == 1.0
    assert _arrival(arrivals, 1, 9.0) == 1.2
    assert _arrival(arrivals, 2, 9.0) == 1.3
    assert _arrival(arrivals, 3, 9.0) == 1.1
    assert arrivals == {}
    # A frame whose packet is unknown: the oldest of the packets it outlived, else the default.
    arrivals = {5: 2.0, 6: 2.1, 9: 2.5}
    assert _arrival(arrivals, 7, 9.0) == 2.0
    assert arrivals == {9: 2.5}
    assert _arrival(arrivals, None, 3.0) == 3.0


def test_stream_clock_keeps_times_increasing_across_a_pts_reset() -> None:
    wall = [100.0]
    clock = StreamClock(lambda: wall[0])
    assert clock.time(5.0, 0.04) == 5.0
    wall[0] = 100.04
    assert clock.time(5.04, 0.04) == pytest.approx(5.04)
    wall[0] = 103.0  # reconnect 2.96 s later; the source starts its clock at 0 again
    assert clock.time(0.0, 0.04) == pytest.approx(8.0)
    wall[0] = 103.04
    assert clock.time(0.04, 0.04) == pytest.approx(8.04)
    wall[0] = 103.05  # a wrap right after: at least one frame interval on
    assert clock.time(0.0, 0.04) == pytest.approx(8.08)


def test_keep_all_on_a_real_time_source_buffers_and_drops_the_oldest_when_full() -> None:
    mib = 2**20
    source = LiveFrameSource(
        "rtsp://127.0.0.1:9/cam", LiveConfig(buffer_mib=1.0), drop=False, queue_size=2
    )
    for index in range(5):  # never blocks (queue_size 2 is for pipes), 0.3 MiB each
        assert source._push(_decoded(index), float(index), int(0.3 * mib))
    assert source.stats.overflowed == 2 and source.stats.dropped == 2
    assert len(source.stats.warnings) == 1 and "dropping the oldest" in source.stats.warnings[0]
    assert [item.decoded.index for item in source.take(8)] == [2, 3, 4]
    source.stop()


def test_source_options_and_transport() -> None:
    settings = LiveConfig(rtsp_transport="tcp", source_options={"probesize": "65536", "x": "1"})
    options = container_options("rtsp://cam/s", settings)
    assert options["rtsp_transport"] == "tcp"
    assert options["probesize"] == "65536" and options["x"] == "1"  # the user's win
    assert "rtsp_transport" not in container_options("tcp://127.0.0.1:9000", settings)
    with pytest.raises(UserError, match="--rtsp-transport"):
        check_live_settings(LiveConfig(rtsp_transport="http"))
    with pytest.raises(UserError, match="buffer_mib"):
        check_live_settings(LiveConfig(buffer_mib=0))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("--out")
    add_live_arguments(parser)
    return parser.parse_args(list(argv))


def test_live_flags_reach_the_config() -> None:
    args = _args(
        "rtsp://cam/s",
        "--out",
        "c.zarr",
        "--rtsp-transport",
        "udp",
        "--source-option",
        "buffer_size=4194304",
        "--source-option",
        "max_delay=500000",
    )
    live = with_live_flags(RunConfig(), args).live
    assert live.rtsp_transport == "udp"
    assert live.source_options == {"buffer_size": "4194304", "max_delay": "500000"}
    with pytest.raises(UserError, match="KEY=VALUE"):
        with_live_flags(RunConfig(), _args("rtsp://cam/s", "--source-option", "nokey"))
    with pytest.raises(UserError, match="apply to live sources"):
        check_live_flags(_args("clip.mp4", "--rtsp-transport", "tcp"), live_source=False)
