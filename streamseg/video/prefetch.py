"""Run an iterator in a background thread, handing its items over through a bounded queue.

`prefetch(iter_frames(...), maxsize=8)` lets decoding run ahead of inference (PyAV and
swscale release the GIL while they work) while never holding more than `maxsize` items, so
memory stays flat however long the video. Errors raised by the producer re-raise in the
consumer; a consumer that stops early (break, exception, close) stops the producer, and the
source iterator is closed in the thread that ran it (a generator cannot be closed from
another thread while it runs).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

# How often a blocked producer checks whether the consumer has gone (seconds).
_POLL_SECONDS = 0.1


class _End:
    """Queue marker: the producer finished (with `error` if it raised)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def prefetch(items: Iterable[T], maxsize: int = 8, name: str = "prefetch") -> Iterator[T]:
    """Yield `items` in order, produced ahead by a daemon thread (at most `maxsize` waiting).

    Args:
        items: any iterable (typically a generator such as `iter_frames(...)`).
        maxsize: queue bound (>= 1): the most items produced but not yet consumed.
        name: thread name (shows in debuggers and thread dumps).
    """
    if maxsize < 1:
        raise ValueError(f"maxsize must be >= 1, got {maxsize}")
    handoff: queue.Queue[object] = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def put(item: object) -> bool:
        """Put unless the consumer stopped; False once it has."""
        while not stop.is_set():
            try:
                handoff.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    break
        except BaseException as error:  # noqa: BLE001 - handed to the consumer to re-raise
            put(_End(error))
            return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        put(_End())

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
