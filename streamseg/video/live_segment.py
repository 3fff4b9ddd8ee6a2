"""`live_batches`: a live run's frames taken within the latency budget and segmented, batch by
batch, in the run's own thread.

```
take <= batch (latency budget) -> convert -> segment -> (live_run.py: track -> store writer, events)
```
`BatchTimes` learns the span from take to segmented, so that frames that cannot make
`max_latency` are dropped before inference. On a CPU, `ModelThreads` fits torch's thread
count to the cores other processes leave free before each batch.

Live runs stay in one thread on purpose. Session 7 ran a live run like a file run: the network
in one thread, the post-processing in another, and torch's count tuned by probing. It was
faster at 1080p (docs/BENCHMARKS.md section 10), but the RTSP test of four runs in a row at
256x256 (tests/test_live_rtsp.py, slow) then kept 87-92% of the frames instead of at least
95%. The probe spends batches on the slower count while the source does not wait, and the
batches waiting between the threads count against the latency budget. It was reverted; a file
run keeps both (segment_track.py). Session 9 tried the split without the probe: no faster at
batch 4 and slower at batch 1 at 1080p, the post-processing's thread waiting on the network's
for the GIL and the cores (docs/BENCHMARKS.md section 12).

A stop (`stopped()`, `max_frames`, the end of the source) ends the taking.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from streamseg.model.outputs import FrameSegmentation
from streamseg.model.precision import autocast
from streamseg.model.segmenter_like import SegmenterLike, segmenter_device, segmenter_input_size
from streamseg.video.frames import Frame
from streamseg.video.live_budget import BatchTimes
from streamseg.video.live_decode import LiveFrame, LiveFrameSource
from streamseg.video.live_threads import ModelThreads
from streamseg.video.run_setup import label_size_for


@dataclass(frozen=True)
class LiveBatchSettings:
    """What taking and segmenting need to know of the run."""

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
    """Batches of `source`, segmented in order in the caller's thread; see the module doc."""
    device = segmenter_device(segmenter)
    threads: ModelThreads | None = None  # made at the first batch, as the model starts
    taken = 0
    sizes: tuple[tuple[int, int], tuple[int, int]] | None = None  # input, label
    try:
        while not stopped():
            want = settings.batch_size
            if settings.max_frames is not None:
                want = min(want, settings.max_frames - taken)
                if want <= 0:
                    return
            # Frames must finish within max_latency of arriving: leave room for the expected
            # processing time of a batch.
            batch = source.take(want, budget=settings.max_latency - batch_times.expected(want))
            if not batch:
                return
            taken += len(batch)
            if sizes is None:
                source_size = batch[0].decoded.source_size
                sizes = (
                    segmenter_input_size(segmenter, *source_size),
                    label_size_for(source_size, settings.label_scale),
                )
                if str(device) == "cpu":
                    threads = ModelThreads.for_torch()
            if threads is not None:
                threads.update()
            took_at = time.monotonic()
            frames = [item.decoded.convert(sizes[0], settings.source_images) for item in batch]
            with autocast(device, settings.precision):
                segmentations = segmenter.segment([f.image for f in frames], output_size=sizes[1])
            yield SegmentedBatch(batch, frames, segmentations, took_at)
    finally:
        if threads is not None:
            threads.restore()
