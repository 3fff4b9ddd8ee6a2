"""How long the next batch of a live run is expected to take (`BatchTimes`).

A live run takes a frame only if it can still be segmented within `max_latency` of its
arrival: frames older than `max_latency - expected batch time` are dropped before inference.
The estimate is the median seconds per frame of the last few batches, not a running mean:
the first batch (cold: lazy initialisation, first kernels) and single stalls (a page fault
storm, another process taking a core for a moment) would otherwise inflate it for many batches
after, and every inflated batch drops frames the model could have kept (issue 22).
"""

from __future__ import annotations

import collections
import statistics

# Recent batches the median is taken over: enough to outvote a few stalls, few enough to
# follow a lasting change of speed within a second or two of a live run.
WINDOW = 9


class BatchTimes:
    """Seconds per frame of recent batches; `expected(n)` is the time of a batch of n."""

    def __init__(self, window: int = WINDOW) -> None:
        self._per_frame: collections.deque[float] = collections.deque(maxlen=window)
        self._seen = 0

    def record(self, frames: int, seconds: float) -> None:
        """One batch of `frames` frames took `seconds` (the first batch is not counted)."""
        self._seen += 1
        if self._seen == 1 or frames < 1:
            return  # the cold first batch says nothing about the next ones
        self._per_frame.append(seconds / frames)

    def expected(self, frames: int) -> float:
        """Expected seconds of a batch of `frames` frames (0.0 before any warm batch)."""
        if not self._per_frame:
            return 0.0
        return statistics.median(self._per_frame) * frames
