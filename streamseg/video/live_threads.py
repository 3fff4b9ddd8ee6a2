"""torch's CPU thread count during a live run, fitted to the cores other processes leave free.

torch runs each operator on all its intra-op threads and waits for the slowest at the end. When
another process takes one of the cores, one of those threads is descheduled for a whole time
slice at every such barrier, and a model that keeps up on an idle machine falls far behind: on
2 shared cores the default model at 256x256 was 1.75x faster with 2 threads than with 1 on free
cores, and 2x slower while another process was busy (issue 22; docs/LIVE.md). A live run
cannot wait for the machine to calm down, so `ModelThreads` measures, about twice a second, how
much CPU the rest of the machine used (`/proc/stat` minus this process) and sets torch to the
cores left over, at least one. Where `/proc/stat` cannot be read (not Linux) the count is left
alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

# Seconds between two looks at the machine's CPU use (/proc/stat counts in 10 ms ticks).
INTERVAL = 0.5
# Weight of the newest look in the smoothed use of other processes.
SMOOTHING = 0.5


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes have been busy since boot (Linux), or None."""
    try:
        with open("/proc/stat") as stat:
            values = [int(part) for part in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(values) < 5:
        return None
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def process_busy_seconds() -> float:
    """CPU seconds this process (all its threads) has used."""
    times = os.times()
    return times.user + times.system


def usable_cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class ModelThreads:
    """Sets torch's intra-op threads before each batch: the free cores, 1 to `most`.

    Usage:
        threads = ModelThreads.for_torch()
        while ...:
            threads.update()
            segment(batch)
        threads.restore()
    """

    def __init__(
        self,
        most: int,
        cores: int,
        set_threads: Callable[[int], None],
        machine_busy: Callable[[], float | None] = machine_busy_seconds,
        process_busy: Callable[[], float] = process_busy_seconds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.most = max(1, most)
        self.cores = max(1, cores)
        self.current = self.most
        self.others = 0.0  # smoothed cores used by other processes
        self._set = set_threads
        self._machine_busy = machine_busy
        self._process_busy = process_busy
        self._clock = clock
        self._last = self._sample()

    @classmethod
    def for_torch(cls) -> ModelThreads:
        import torch

        return cls(torch.get_num_threads(), usable_cores(), torch.set_num_threads)

    def _sample(self) -> tuple[float, float, float] | None:
        machine = self._machine_busy()
        if machine is None:
            return None
        return self._clock(), machine, self._process_busy()

    def update(self) -> int:
        """Look at the machine if it is time to, set the thread count; returns it."""
        if self._last is None or self.most == 1:
            return self.current
        now = self._clock()
        if now - self._last[0] < INTERVAL:
            return self.current
        sample = self._sample()
        if sample is None:
            return self.current
        elapsed = sample[0] - self._last[0]
        others = max(0.0, (sample[1] - self._last[1]) - (sample[2] - self._last[2])) / elapsed
        self._last = sample
        self.others = SMOOTHING * others + (1 - SMOOTHING) * self.others
        wanted = min(self.most, max(1, round(self.cores - self.others)))
        if wanted != self.current:
            self._set(wanted)
            self.current = wanted
        return self.current

    def restore(self) -> None:
        """Back to the count the run started with."""
        if self.current != self.most:
            self._set(self.most)
            self.current = self.most
