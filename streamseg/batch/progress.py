"""Progress of a batch: workers send frame counts as Dask events, the client shows two bars
(videos finished, frames committed by all workers)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamseg.batch.manifest import BatchRecord

PROGRESS_TOPIC = "streamseg-batch-progress"
# Seconds between two progress events of one task (the client's frames bar).
PROGRESS_INTERVAL = 0.5


def progress_reporter(task: str) -> Callable[[int], None]:
    """A `run_video` progress callback that sends (task, frames done) to the client, at most
    every PROGRESS_INTERVAL seconds; silent outside a Dask worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return lambda frames: None
    last = [0.0]

    def report(frames: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_INTERVAL:
            last[0] = now
            # Called from run_video's writer thread: hand the event to the worker's event
            # loop (add_callback is the thread-safe way in).
            message = {"task": task, "frames": int(frames)}
            worker.loop.add_callback(worker.log_event, PROGRESS_TOPIC, message)

    return report


# Not frozen: it owns the tqdm bars and the frames seen per task, both updated as events come.
@dataclass
class ProgressBars:
    """The client's bars: videos (always) and frames (from the workers' events)."""

    enabled: bool
    total: int
    videos: Any = None
    frames: Any = None
    _seen: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.enabled:
            from tqdm import tqdm

            self.videos = tqdm(total=self.total, unit="video", desc="videos", position=0)
            self.frames = tqdm(unit="frame", desc="frames", position=1)

    def on_event(self, event: Any) -> None:
        """Count the frames of one worker event; a repeated or older count adds nothing."""
        _, message = event
        if self.frames is None or not isinstance(message, dict):
            return
        task, frames = str(message.get("task")), int(message.get("frames", 0))
        delta = frames - self._seen.get(task, 0)
        if delta > 0:
            self._seen[task] = frames
            self.frames.update(delta)

    def video_finished(self, record: BatchRecord) -> None:
        """Advance the videos bar, naming the video and how it ended."""
        if self.videos is not None:
            self.videos.set_postfix_str(f"{record.status}: {Path(record.input).name}")
            self.videos.update(1)

    def close(self) -> None:
        """Close both bars (the terminal gets its cursor lines back)."""
        for bar in (self.frames, self.videos):
            if bar is not None:
                bar.close()
