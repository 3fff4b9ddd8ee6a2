"""`live_batches`: a live run's frames taken and segmented ahead of its tracking loop.

```
"model" thread: take <= batch (latency budget) -> convert -> network   (two steps, CPU)
                                                 -> segment            (otherwise)
"post" thread:  panoptic post-processing                               (two steps, CPU)
caller:         track -> store writer, events (live_run.py)
```
The same split as a file run's (segment_track.py), for the same reason: on a CPU the next
batch's forward overlaps this one's post-processing and tracking. Each hand-off is a queue of
one batch, so at most a batch or two wait between the threads; a frame's latency counts from
its arrival to the moment the caller receives it segmented, and `BatchTimes` learns that
whole span (take to segmented), so frames that cannot make `max_latency` are still dropped
before inference. torch's thread count is per thread: `ModelThreads` (fitted to the cores
other processes leave free) is created, updated and restored in the "model" thread.

The threads stop taking frames once `stopped()` is true or `max_frames` were taken; the
batches already taken are still segmented and handed over (a stop finishes the work in
flight, as before).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from streamseg.model.outputs import FrameSegmentation
from streamseg.model.precision import autocast
from streamseg.model.segmenter_like import SegmenterLike, segmenter_device, segmenter_input_size
from streamseg.video.frames import Frame
from streamseg.video.live_budget import BatchTimes
from streamseg.video.live_decode import LiveFrame, LiveFrameSource
from streamseg.video.live_threads import ModelThreads, usable_cores
from streamseg.video.prefetch import prefetch
from streamseg.video.segment_track import two_step_segmenter
from streamseg.video.thread_tuner import CappedThreads, ThreadTuner, lend_tuner, return_tuner


def label_size_for(source_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) of the stored labels of a `source_size` source at `label_scale`."""
    return max(1, round(source_size[0] * scale)), max(1, round(source_size[1] * scale))


@dataclass(frozen=True)
class LiveBatchSettings:
    """What the taking and segmenting threads need to know of the run."""

    batch_size: int
    max_latency: float
    max_frames: int | None  # frames to take in all (None: until the source ends)
    label_scale: float
    source_images: bool  # keep each frame's full-size picture (an overlay is written)
    precision: str = "fp32"


@dataclass(frozen=True)
class SegmentedBatch:
    """Frames taken together, converted and segmented at the label size.

    Attributes:
        taken: the source's frames (arrival times).
        frames: the converted frames, one per taken frame.
        segmentations: the model's output per frame, at the label size.
        took_at: monotonic time the batch was taken (its latency budget counts from here).
    """

    taken: list[LiveFrame]
    frames: list[Frame]
    segmentations: list[FrameSegmentation]
    took_at: float


def live_batches(
    source: LiveFrameSource,
    segmenter: SegmenterLike,
    settings: LiveBatchSettings,
    batch_times: BatchTimes,
    stopped: Callable[[], bool],
) -> Iterator[SegmentedBatch]:
    """Batches of `source` segmented in threads of their own, in order; see the module doc.

    Closing the iterator stops the threads: call `source.stop()` first, so that a thread
    waiting for a frame is woken.
    """
    two_steps = two_step_segmenter(segmenter)
    device = segmenter_device(segmenter)
    on_cpu = str(device).startswith("cpu")

    def network() -> Iterator[tuple[list[LiveFrame], list[Frame], Any, float, tuple[int, int]]]:
        threads: _CpuThreads | None = None  # started at the first batch (its size known)
        taken = 0
        sizes: tuple[tuple[int, int], tuple[int, int]] | None = None  # input, label
        try:
            while not stopped():
                want = settings.batch_size
                if settings.max_frames is not None:
                    want = min(want, settings.max_frames - taken)
                    if want <= 0:
                        return
                budget = settings.max_latency - batch_times.expected(want)
                batch = source.take(want, budget=budget)
                if not batch:
                    return
                taken += len(batch)
                if sizes is None:
                    source_size = batch[0].decoded.source_size
                    sizes = (
                        segmenter_input_size(segmenter, *source_size),
                        label_size_for(source_size, settings.label_scale),
                    )
                    if on_cpu:
                        threads = _CpuThreads.start(segmenter.model_id, sizes[1])
                if threads is not None:
                    threads.before_batch(len(batch))
                took_at = time.monotonic()
                frames = [item.decoded.convert(sizes[0], settings.source_images) for item in batch]
                images = [f.image for f in frames]
                with autocast(device, settings.precision):
                    if two_steps is not None:
                        outputs: Any = two_steps.run_network(images)
                    else:
                        outputs = segmenter.segment(images, output_size=sizes[1])
                yield batch, frames, outputs, took_at, sizes[1]
        finally:
            if threads is not None:
                threads.restore()

    def post() -> Iterator[SegmentedBatch]:
        for batch, frames, outputs, took_at, label_size in prefetch(
            network(), maxsize=1, name="model"
        ):
            if two_steps is not None:
                with autocast(device, settings.precision):
                    outputs = two_steps.segment_outputs(outputs, label_size)
            yield SegmentedBatch(batch, frames, outputs, took_at)

    if two_steps is None:
        return post()  # the network thread segments; the caller's thread does the rest
    return prefetch(post(), maxsize=1, name="post")


@dataclass(frozen=True)
class _CpuThreads:
    """torch's threads in the network's thread: at most the cores other processes leave free
    (`ModelThreads`), and under that the count the run's throughput favours (`ThreadTuner`;
    a file run at 1080p was faster with 1 thread than with 2, the post-processing thread
    beside it: docs/BENCHMARKS.md section 10)."""

    free: ModelThreads
    tuner: ThreadTuner

    work: tuple[object, ...]  # what the tuner's choice is remembered under

    @classmethod
    def start(cls, model_id: str, label_size: tuple[int, int]) -> _CpuThreads:
        import torch

        most = torch.get_num_threads()
        count = CappedThreads(most, torch.set_num_threads)
        work = ("live", model_id, label_size, most)
        tuner = lend_tuner(work, most, count.tune)
        return cls(ModelThreads(most, usable_cores(), count.cap), tuner, work)

    def before_batch(self, frames: int) -> None:
        self.free.update()
        self.tuner.before_batch(frames)

    def restore(self) -> None:
        return_tuner(self.work, self.tuner)
        self.free.restore()
