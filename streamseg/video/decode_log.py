"""FFmpeg's own error log, counted per file while it decodes.

FFmpeg conceals most damage: an overwritten slice or a lost Matroska cluster decodes "fine"
(smeared or missing frames) and PyAV raises nothing; the only trace is FFmpeg's log. PyAV
drops that log by default (`av.logging.get_level()` is None). While at least one file is
being decoded this module sets the level to ERROR (only if nobody set one) and routes the
messages, and puts the default back when the last file is done: no verbose logging, nothing
printed.

Routing is per file and thread-safe:
- messages logged on the thread that calls the demuxer or decoder are caught by a
  thread-local `av.logging.Capture` around that one call (exact attribution: a call never
  spans a `yield`, so captures of interleaved generators never nest wrongly);
- messages from FFmpeg's own worker threads (slice and frame threading decode there) reach
  one process-wide `Capture(local=False)` and go to the file whose decoder has that name
  (e.g. "h264"); when several such files decode at once, to the one whose call collects them.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# Messages kept as examples per file (the count keeps counting).
MAX_SAMPLES = 5
# PyAV folds identical consecutive messages into one line with this suffix.
_REPEATED = re.compile(r" \(repeated (\d+) more times\)$")


@dataclass
class DecoderLog:
    """FFmpeg's error messages of one file.

    Attributes:
        codec: the decoder's name as FFmpeg names its messages ("h264"); worker-thread
            messages are matched on it.
        errors: error-level messages from the demuxer and decoder of this file.
        samples: the first MAX_SAMPLES of them, "name: message".
    """

    codec: str
    errors: int = 0
    samples: list[str] = field(default_factory=list)

    def add(self, level: int, name: str, message: str) -> None:
        import av.logging

        if level > av.logging.ERROR:
            return
        text = message.strip()
        repeated = _REPEATED.search(text)
        count = 1 + (int(repeated.group(1)) if repeated else 0)
        self.errors += count
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(f"{name}: {_REPEATED.sub('', text)}")


class _Router:
    """The process-wide part: the log level and the worker-thread capture, held while any
    file decodes (reference counted), and the files decoding now."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: list[DecoderLog] = []
        self.shared: object | None = None  # the entered Capture(local=False)
        self.shared_logs: list[tuple[int, str, str]] = []
        self.owns_level = False

    def enter(self, log: DecoderLog) -> None:
        import av.logging

        with self.lock:
            if not self.active:
                if av.logging.get_level() is None:
                    av.logging.set_level(av.logging.ERROR)
                    self.owns_level = True
                self.shared = av.logging.Capture(local=False)
                self.shared_logs = self.shared.__enter__()  # type: ignore[attr-defined]
            self.active.append(log)

    def leave(self, log: DecoderLog) -> None:
        import av.logging

        self.collect(log)
        with self.lock:
            self.active = [other for other in self.active if other is not log]
            if not self.active and self.shared is not None:
                self.shared.__exit__(None, None, None)  # type: ignore[attr-defined]
                self.shared = None
                if self.owns_level:
                    av.logging.set_level(None)
                    self.owns_level = False

    def collect(self, caller: DecoderLog) -> None:
        """Give the worker-thread messages logged so far to their files."""
        with self.lock:
            logs = self.shared_logs
            taken = logs[:]
            # Only what was read: the callback may append meanwhile (it holds the GIL per
            # append, so nothing is lost).
            del logs[: len(taken)]
            active = list(self.active)
            owns_level = self.owns_level
        for level, name, message in taken:
            owners = [log for log in active if log.codec == name]
            if owners:
                owner = caller if caller in owners else owners[0]
                owner.add(level, name, message)
            if not owns_level:
                _forward(level, name, message)


_ROUTER = _Router()


@contextmanager
def decoding(log: DecoderLog) -> Iterator[DecoderLog]:
    """While a file decodes (may span yields): its decoder's worker-thread messages go to
    `log`, and FFmpeg's log is on at error level."""
    _ROUTER.enter(log)
    try:
        yield log
    finally:
        _ROUTER.leave(log)


@contextmanager
def call(log: DecoderLog | None) -> Iterator[None]:
    """Around one demuxer or decoder call (never across a yield): what FFmpeg logs on this
    thread during it goes to `log`, with the worker-thread messages collected so far."""
    if log is None:
        yield
        return
    import av.logging

    with av.logging.Capture(local=True) as logs:
        try:
            yield
        finally:
            for level, name, message in logs:
                log.add(level, name, message)
                if not _ROUTER.owns_level:
                    _forward(level, name, message)
            _ROUTER.collect(log)


def _forward(level: int, name: str, message: str) -> None:
    """A message to Python logging as PyAV would have sent it, when someone else turned
    FFmpeg's log on (they asked to see it)."""
    import av.logging

    logger = logging.getLogger("libav." + name if name else "libav.generic")
    logger.log(av.logging.adapt_level(level), message.strip())
