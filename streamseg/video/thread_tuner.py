"""`ThreadTuner`: torch's CPU thread count for a file run, chosen by the run's own throughput.

On a CPU the network shares the cores with the rest of the run (post-processing, tracking,
the store writer, decoding). torch runs each operator on all its intra-op threads and waits
for the slowest at the end, so a thread that loses its core to another stage stalls the whole
operator. Which is faster depends on the frame size: with the post-processing in a thread of
its own, a file run of the default model on 2 cores took 52.6 ms per frame with 1 torch thread
against 62.4 with 2 at 1080p, and 52.7 against 47.5 at 256x256, where the network is most of
the work (docs/BENCHMARKS.md section 10). Neither count is right for every video, so the run
measures both.

The tuner runs in the thread that calls the network (torch's count is per thread: it must be
set there). Before each batch it reads the clock: the time between two batch starts is the
pipeline's period, since the bounded queues behind the network make it wait for the slowest
stage. After `warmup` batches it tries each candidate for `probe` batches, twice, in turn
(A B A B, so that a slow spell of the machine does not decide alone), and keeps the one with
the lowest mean seconds per frame (a mean, not a median: the periodic slow batch of a commit
belongs to the cost). It probes again every `recheck` batches, since what else runs on the
machine changes. Runs of the same kind of work (model, label size, ceiling) in one process
share a tuner (`lend_tuner` / `return_tuner`): the next run goes on
where the last one stopped, with its choice or in the middle of its probe, so a batch job's
short videos do not each pay for a whole probe (2 + 32 batches).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

# Batches before the first probe (first calls allocate and warm caches).
WARMUP = 2
# Batches per candidate per round; the first batch after a switch is not counted. Single
# batches vary by +-30% (a commit's burst in the writer every few batches): a mean over
# 2 x 7 batches per candidate separates counts 10% apart.
PROBE = 8
# Rounds of trying every candidate (A B A B).
ROUNDS = 2
# Batches between two probes.
RECHECK = 256


# Idle tuners by kind of work; a run borrows one (no two runs share one at a time).
_IDLE: dict[tuple[object, ...], ThreadTuner] = {}
_IDLE_LOCK = threading.Lock()


def lend_tuner(
    work: tuple[object, ...], most: int, set_threads: Callable[[int], None]
) -> ThreadTuner:
    """The tuner the last run of this kind of work left (or a new one), set up for a new run
    whose thread count `set_threads` sets; give it back with `return_tuner`."""
    with _IDLE_LOCK:
        tuner = _IDLE.pop(work, None)
    if tuner is None or tuner.most != max(1, most):
        return ThreadTuner(most, set_threads)
    tuner.begin(set_threads)
    return tuner


def return_tuner(work: tuple[object, ...], tuner: ThreadTuner) -> None:
    """Put the thread count back to `most` and keep the tuner for the next run of `work`."""
    tuner.restore()
    with _IDLE_LOCK:
        _IDLE[work] = tuner


def thread_candidates(most: int) -> tuple[int, ...]:
    """Counts worth trying with `most` threads: all of them, and one core left to the rest
    of the pipeline (one candidate when `most` is 1)."""
    most = max(1, most)
    return (most,) if most == 1 else (most, most - 1)


class ThreadTuner:
    """Sets torch's intra-op thread count before each batch; see the module doc.

    Usage (in the thread that runs the network):
        tuner = ThreadTuner(torch.get_num_threads(), torch.set_num_threads)
        for batch in batches:
            tuner.before_batch(len(batch))
            forward(batch)
        tuner.restore()
    """

    def __init__(
        self,
        most: int,
        set_threads: Callable[[int], None],
        clock: Callable[[], float] = time.monotonic,
        warmup: int = WARMUP,
        probe: int = PROBE,
        rounds: int = ROUNDS,
        recheck: int = RECHECK,
    ) -> None:
        self.most = max(1, most)
        self.candidates = thread_candidates(self.most)
        self.current = self.most
        self.chosen: int | None = None  # the count the last probe kept
        self._set = set_threads
        self._clock = clock
        self._probe = max(2, probe)
        self._rounds = max(1, rounds)
        self._recheck = max(1, recheck)
        self._until_probe = max(0, warmup)
        # (count, counted) of each coming batch of a running probe
        self._plan: list[tuple[int, bool]] = []
        self._choose_next = False  # the probe's last batch has started
        self._samples: dict[int, list[float]] = {c: [] for c in self.candidates}
        # the previous batch: its start, frames, thread count, and whether it is a sample
        self._last: tuple[float, int, int, bool] | None = None
        self._cold = False  # a run's first batch (pipeline filling up): no sample

    def before_batch(self, frames: int) -> int:
        """Record the previous batch's period, set the count for this batch; returns it."""
        now = self._clock()
        if self._last is not None:
            began, last_frames, count, counted = self._last
            if counted and last_frames > 0:
                self._samples[count].append((now - began) / last_frames)
        if self._choose_next:
            self._choose_next = False
            self._choose()
            self._until_probe = self._recheck
        if len(self.candidates) > 1 and not self._plan and self._until_probe == 0:
            self._start_probe()
        counted = False
        if self._plan:
            count, counted = self._plan.pop(0)
            self._use(count)
            self._choose_next = not self._plan
            counted = counted and not self._cold
        elif self._until_probe > 0:
            self._until_probe -= 1
        self._last = (now, frames, self.current, counted)
        self._cold = False
        return self.current

    def begin(self, set_threads: Callable[[int], None]) -> None:
        """A new run goes on with this tuner: its count is set with `set_threads` (the
        thread may be another), and the gap since the last run's batch is no period."""
        self._set = set_threads
        self._last = None
        self._cold = True
        self._set(self.current)

    def restore(self) -> None:
        """Back to `most` (torch's count is also the default of threads started later); the
        tuner's own state (choice, probe) is kept for `begin`."""
        if self.current != self.most:
            self._set(self.most)

    def _start_probe(self) -> None:
        self._samples = {c: [] for c in self.candidates}
        for _ in range(self._rounds):
            for count in self.candidates:
                # The first batch after a switch is not a sample: its period still holds
                # work queued behind the previous count.
                self._plan.append((count, False))
                self._plan.extend((count, True) for _ in range(self._probe - 1))

    def _choose(self) -> None:
        means = {c: statistics.fmean(s) for c, s in self._samples.items() if s}
        if not means:
            return
        # lowest seconds per frame; a tie goes to the earlier candidate (more threads)
        self.chosen = min(means, key=lambda c: (means[c], self.candidates.index(c)))
        self._use(self.chosen)

    def _use(self, count: int) -> None:
        if count != self.current:
            self._set(count)
            self.current = count
