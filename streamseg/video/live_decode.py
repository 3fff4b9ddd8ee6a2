"""Live sources: network streams, capture devices and standard input, read without falling behind.

`LiveFrameSource` decodes a live input in a background thread and hands frames to the model:
- live mode (`drop=True`): only the newest frames are kept; a frame that has waited longer than
  `max_latency` seconds since its packet was received is dropped *before* inference (and
  counted), so the pipeline never works on frames older than that however slow the model is;
- keep-all mode (`drop=False`): on standard input, a bounded queue that blocks the decoder, so
  every frame is processed (a piped file is read at the model's pace); on a real-time source
  (URL, device), which does not wait, the reader never blocks: frames wait in memory up to
  `buffer_mib`, and past that the oldest are dropped, counted and said in a warning.

A frame's arrival is the time its (last) packet came out of the demuxer, not when decoding
finished: a decoder that holds frames back (threads, reordering) does not make them look fresh.

Frames are numbered by every frame decoded (`Frame.index`), so dropped frames show as gaps in
the store's `frames/index`. Their time is the pts x time base, kept increasing across a
reconnect or a wrap of the pts (the source's clock restarting): a frame whose time would go back
continues after the last one by the wall time that passed (at least one frame interval).

A stream that ends, stalls (no data for `read_timeout` s) or fails is reopened with exponential
backoff when `reconnect` is set, until it has been gone for `reconnect_timeout` seconds.
"""

from __future__ import annotations

import collections
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from streamseg.config import LiveConfig
from streamseg.errors import UserError
from streamseg.video.frames import DecodedFrame, Scalers

# URL schemes FFmpeg opens as network streams.
NETWORK_SCHEMES = (
    "rtsp",
    "rtsps",
    "rtmp",
    "rtmps",
    "http",
    "https",
    "udp",
    "tcp",
    "srt",
    "rtp",
    "hls",
)
STDIN = "-"
# Most frames kept waiting in live mode whatever the rate (the age limit usually binds first).
LIVE_BUFFER_FRAMES = 64
# Probe little before the first frame (low start-up latency on live inputs). Not "fflags
# nobuffer": it loses the first frame of an MPEG-TS stream (the probed packets).
PROBE_OPTIONS = {"probesize": "32768", "analyzeduration": "500000"}
RTSP_SCHEMES = ("rtsp", "rtsps")
RTSP_TRANSPORTS = ("tcp", "udp")
# Packets whose frame has not come out of the decoder yet, remembered for their arrival time.
PENDING_PACKETS = 256


# The `live` section of `RunConfig`, under the name the live code has used since before it was
# one (video code and callers import it from here).
LiveSettings = LiveConfig


def source_kind(source: str | Path) -> str:
    """ "stdin", "network", "device" or "file" (anything else: files, folders, globs)."""
    text = os.fspath(source)
    if text == STDIN:
        return "stdin"
    scheme, sep, _ = text.partition("://")
    if sep and scheme.lower() in NETWORK_SCHEMES:
        return "network"
    if text.startswith("/dev/"):
        try:
            if stat.S_ISCHR(os.stat(text).st_mode):
                return "device"
        except OSError:
            return "device"  # a missing device: let the open say so
    return "file"


def is_live_source(source: str | Path) -> bool:
    """True for inputs `run_live` reads (stdin, network URLs, capture devices)."""
    return source_kind(source) != "file"


def live_default(source: str | Path, settings: LiveSettings) -> bool:
    """Whether stale frames are dropped: the setting, else on for network and devices."""
    if settings.live is not None:
        return settings.live
    return source_kind(source) in ("network", "device")


def container_options(source: str | Path, settings: LiveSettings) -> dict[str, str]:
    """The FFmpeg options a live input is opened with (the user's `source_options` win)."""
    options = dict(PROBE_OPTIONS)
    scheme = os.fspath(source).partition("://")[0].lower()
    if settings.rtsp_transport is not None and scheme in RTSP_SCHEMES:
        options["rtsp_transport"] = settings.rtsp_transport
    options.update({str(key): str(value) for key, value in settings.source_options.items()})
    return options


def check_live_settings(settings: LiveSettings) -> None:
    """UserError for live settings no run can use (before anything is opened)."""
    if settings.rtsp_transport is not None and settings.rtsp_transport not in RTSP_TRANSPORTS:
        raise UserError(f"--rtsp-transport: must be tcp or udp, got {settings.rtsp_transport!r}")
    if not settings.buffer_mib > 0:
        raise UserError(f"[live] buffer_mib: must be more than 0, got {settings.buffer_mib}")
    for key in settings.source_options:
        if not key or "=" in key:
            raise UserError(f"--source-option: not a KEY=VALUE option name: {key!r}")


def open_container(source: str | Path, settings: LiveSettings) -> Any:
    """av.open a live input (raises av.error.FFmpegError / OSError as they come)."""
    import av

    kind = source_kind(source)
    options = container_options(source, settings)
    if kind == "stdin":
        # A pipe: no timeout (reads block in Python); the format is probed unless given.
        return av.open(sys.stdin.buffer, format=settings.input_format, options=options)
    fmt = settings.input_format
    if kind == "device" and fmt is None:
        fmt = "v4l2"
    return av.open(
        os.fspath(source),
        format=fmt,
        options=options,
        timeout=(settings.open_timeout, settings.read_timeout),
    )


@dataclass
class LiveFrame:
    """A decoded frame waiting for the model, with the monotonic time its packet arrived."""

    decoded: DecodedFrame
    arrived: float
    nbytes: int = 0  # memory the decoded picture holds while it waits


class StreamClock:
    """Frame times that keep increasing across reconnects and pts wraps (see module doc)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._offset = 0.0
        self._last: float | None = None  # last time given
        self._last_wall = 0.0

    def time(self, raw: float, interval: float) -> float:
        """The time of a frame whose own time is `raw` s; `interval`: 1 / frame rate."""
        wall = self._clock()
        seconds = raw + self._offset
        if self._last is not None and seconds <= self._last:
            gap = max(interval, wall - self._last_wall)
            self._offset += self._last + gap - seconds
            seconds = self._last + gap
        self._last, self._last_wall = seconds, wall
        return seconds


@dataclass
class LiveStats:
    """Counters of a live source (read them while it runs)."""

    received: int = 0  # frames decoded
    dropped: int = 0  # frames dropped before inference (too old, or over the buffer)
    overflowed: int = 0  # of those: dropped because the keep-all buffer was full
    taken: int = 0  # frames handed to the model
    connects: int = 0  # successful opens (1 + reconnects)
    failures: int = 0  # opens that failed, stalls and stream errors
    ended: str | None = None  # why the source ended ("end of stream", "stopped", an error)
    warnings: list[str] = field(default_factory=list)


class LiveFrameSource:
    """Decode a live input in a thread; `take(n)` gives up to n fresh frames.

    Usage:
        source = LiveFrameSource("tcp://127.0.0.1:9000", LiveSettings(), drop=True)
        source.start()
        while batch := source.take(4):
            ...  # batch[i].decoded.convert(size, False), batch[i].arrived
        source.stop()
    """

    def __init__(
        self,
        source: str | Path,
        settings: LiveSettings,
        drop: bool,
        queue_size: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = os.fspath(source)
        self.settings = settings
        self.drop = drop
        self.stats = LiveStats()
        self.time_base: Fraction | None = None
        self.rate: Fraction | None = None
        self._clock = clock
        # Keep-all on a real-time source: never block its reader (bounded by memory instead).
        self._realtime = not drop and source_kind(self.source) != "stdin"
        self._capacity = LIVE_BUFFER_FRAMES if drop else max(1, queue_size)
        self._buffer: collections.deque[LiveFrame] = collections.deque()
        self._buffered_bytes = 0
        self._stream_clock = StreamClock(clock)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(target=self._run, name="live-source", daemon=True)

    # ---------------------------------------------------------------- consumer side
    def start(self) -> LiveFrameSource:
        self._thread.start()
        return self

    def take(self, count: int, wait: float = 0.1, budget: float | None = None) -> list[LiveFrame]:
        """Up to `count` frames, oldest first, none older than `budget` seconds (live mode).

        Args:
            budget: how long a frame may have waited when it is taken (default `max_latency`);
                the pipeline passes `max_latency` minus its expected processing time, so that
                a frame is done within `max_latency` of its arrival. The newest frame is kept
                whatever the budget (unless older than `max_latency`): there is always work.

        Blocks until at least one frame is there; returns [] once the source has ended and
        every frame was taken (or `stop()` was called). Re-raises a source error that came
        before any frame (e.g. the URL could not be opened).
        """
        with self._cond:
            while True:
                self._drop_stale(budget)
                if self._buffer:
                    frames = [self._pop_oldest() for _ in range(min(count, len(self._buffer)))]
                    self.stats.taken += len(frames)
                    self._cond.notify_all()
                    return frames
                if self._error is not None:
                    raise self._error
                if self._done or self._stop.is_set():
                    return []
                self._cond.wait(wait)

    def stop(self) -> None:
        """Stop reading (the thread ends after its current read) and wake the consumer."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _pop_oldest(self) -> LiveFrame:
        item = self._buffer.popleft()
        self._buffered_bytes -= item.nbytes
        return item

    def _drop_stale(self, budget: float | None = None) -> None:
        if not self.drop:
            return
        now = self._clock()
        limit = now - (self.settings.max_latency if budget is None else budget)
        while len(self._buffer) > 1 and self._buffer[0].arrived < limit:
            self._pop_oldest()
            self.stats.dropped += 1
        if self._buffer and self._buffer[0].arrived < now - self.settings.max_latency:
            self._pop_oldest()  # even alone, too old (the source stalled)
            self.stats.dropped += 1

    # ---------------------------------------------------------------- producer side
    def _push(self, decoded: DecodedFrame, arrived: float, nbytes: int = 0) -> bool:
        """Queue a frame whose packet arrived at `arrived`; False once stopped."""
        with self._cond:
            if not self.drop and not self._realtime:
                # A pipe: wait for room (the writer on the other end waits with us).
                while len(self._buffer) >= self._capacity and not self._stop.is_set():
                    self._cond.wait(0.1)
                if self._stop.is_set():
                    return False
            self._buffer.append(LiveFrame(decoded, arrived, nbytes))
            self._buffered_bytes += nbytes
            if self.drop:
                while len(self._buffer) > self._capacity:
                    self._pop_oldest()
                    self.stats.dropped += 1
                self._drop_stale()
            elif self._realtime:
                self._drop_overflow()
            self._cond.notify_all()
        return not self._stop.is_set()

    def _drop_overflow(self) -> None:
        """Keep-all mode on a real-time source: the oldest frames go once over `buffer_mib`."""
        limit = self.settings.buffer_mib * 2**20
        while len(self._buffer) > 1 and self._buffered_bytes > limit:
            self._pop_oldest()
            self.stats.dropped += 1
            self.stats.overflowed += 1
            if self.stats.overflowed == 1:
                self.stats.warnings.append(
                    f"{self.source}: the model is slower than this real-time source and "
                    f"{self.settings.buffer_mib:g} MiB of frames are waiting: dropping the "
                    "oldest (--live drops by age instead, see --max-latency)"
                )

    def _finish(self, reason: str, error: BaseException | None = None) -> None:
        with self._cond:
            self.stats.ended = reason
            if error is not None and self.stats.received == 0:
                self._error = error
            self._done = True
            self._cond.notify_all()

    def _run(self) -> None:
        settings = self.settings
        backoff = 0.25
        gone_since: float | None = None
        index = -1
        scalers = Scalers()
        while not self._stop.is_set():
            failure: str | None = None
            try:
                container = open_container(self.source, settings)
            except Exception as error:  # noqa: BLE001 - FFmpeg/OS errors of many kinds
                failure = f"{self.source}: cannot open ({_reason(error)})"
                container = None
            if container is not None:
                self.stats.connects += 1
                try:
                    with container:
                        got, index, failure = self._read(container, index, scalers)
                except Exception as error:  # noqa: BLE001
                    failure = f"{self.source}: stream error ({_reason(error)})"
                    got = False
                if got:
                    gone_since, backoff = None, 0.25
            if self._stop.is_set():
                self._finish("stopped")
                return
            if failure is not None:
                self.stats.failures += 1
                if len(self.stats.warnings) < 20:
                    self.stats.warnings.append(failure)
            can_retry = settings.reconnect and source_kind(self.source) != "stdin"
            now = self._clock()
            gone_since = now if gone_since is None else gone_since
            if not can_retry or now - gone_since >= settings.reconnect_timeout:
                if failure is None:
                    self._finish("end of stream")
                elif self.stats.received:
                    self._finish(f"source gone ({failure})")
                else:
                    self._finish(failure, UserError(failure))
                return
            # Exponential backoff, interruptible by stop().
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)
        self._finish("stopped")

    def _read(self, container: Any, index: int, scalers: Scalers) -> tuple[bool, int, str | None]:
        """Decode one connection until it ends. Returns (got frames, last index, failure)."""
        import av

        from streamseg.video.decode import _converter, _quarter_turns

        videos = [s for s in container.streams.video]
        if not videos:
            return False, index, f"{self.source}: no video stream"
        video = videos[0]
        self.time_base = video.time_base or Fraction(1, 90000)
        self.rate = video.average_rate or video.guessed_rate
        interval = float(1 / self.rate) if self.rate else 1 / 25
        got = False
        failure: str | None = None
        # pts -> when its packet came out of the demuxer (the decoder may hold frames back).
        arrivals: dict[int, float] = {}
        packets = container.demux(video)
        while not self._stop.is_set():
            try:
                packet = next(packets)
            except StopIteration:
                packet = None
            except (av.error.FFmpegError, OSError) as error:
                # A lost connection (or a stall past read_timeout): flush what the decoder holds.
                failure = f"{self.source}: stream lost ({_reason(error)})"
                packet = None
            received = self._clock()
            if packet is not None and packet.pts is not None:
                arrivals[packet.pts] = received
                if len(arrivals) > PENDING_PACKETS:
                    del arrivals[next(iter(arrivals))]
            try:
                frames = video.decode(packet)
            except av.error.FFmpegError:
                frames = []  # a damaged packet: live streams lose some; keep going
            for frame in frames:
                index += 1
                got = True
                self.stats.received += 1
                turns = _quarter_turns(frame.rotation)
                size = (frame.width, frame.height) if turns % 2 else (frame.height, frame.width)
                raw = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
                decoded = DecodedFrame(
                    index=index,
                    pts=frame.pts,
                    time=self._stream_clock.time(raw, interval),
                    source_size=size,
                    keyframe=bool(frame.key_frame),
                    corrupt=bool(frame.is_corrupt),
                    convert_image=_converter(frame, turns, scalers),
                )
                arrived = _arrival(arrivals, frame.pts, received)
                nbytes = sum(plane.buffer_size for plane in frame.planes)
                if not self._push(decoded, arrived, nbytes):
                    return got, index, None
            if packet is None or (packet.size == 0 and packet.pts is None):
                break
        return got, index, failure


def _arrival(arrivals: dict[int, float], pts: int | None, default: float) -> float:
    """When the packet of the frame with `pts` arrived (else `default` or an older packet's
    time). Forgets it and any packet before it in presentation order: frames come out of the
    decoder in that order, so those are done (or were lost)."""
    if pts is None:
        return default
    arrived = arrivals.pop(pts, None)
    for older in [key for key in arrivals if key < pts]:
        default = min(default, arrivals.pop(older))
    return default if arrived is None else arrived


def _reason(error: BaseException) -> str:
    return str(getattr(error, "strerror", None) or error or type(error).__name__)
