"""`SegmentAndTrack`: the model call, the segment filter and the tracker of one run.

File runs (pipeline.py) and live runs (live_run.py) feed it batches of decoded frames; each
frame comes out as a `TrackedFrame`, what the store, the overlay and the event feed need.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from streamseg.model.network_outputs import NetworkOutputs
from streamseg.model.outputs import FrameSegmentation
from streamseg.model.precision import autocast
from streamseg.model.segmenter_like import SegmenterLike, TwoStepSegmenter, segmenter_device
from streamseg.video.frames import Frame
from streamseg.video.prefetch import prefetch
from streamseg.video.segments import SegmentFilter, SegmentRow, segment_rows
from streamseg.video.thread_tuner import lend_tuner, return_tuner
from streamseg.video.track import Tracker
from streamseg.video.track_vectors import row_embeddings


def two_step_segmenter(segmenter: SegmenterLike) -> TwoStepSegmenter | None:
    """The segmenter as two steps, where they are worth a thread each: a CPU device (on
    CUDA the post-processing's host copy would wait behind the next batch's kernels)."""
    # The class, not the instance: a wrapper that changes `segment` and hands every other
    # name to the segmenter it wraps (`__getattr__`) must keep its `segment`.
    if not issubclass(type(segmenter), TwoStepSegmenter):
        return None
    device = segmenter_device(segmenter)
    return segmenter if str(device).startswith("cpu") else None  # type: ignore[return-value]


@dataclass(frozen=True)
class TrackedFrame:
    """One frame after filtering and tracking.

    Attributes:
        frame: the decoded frame (its `source_image` is drawn in an overlay).
        labels: (H, W) int32 track id per label pixel, 0 = none.
        rows: the frame's segments-table rows (frame column 0; a block renumbers them).
        track_names: {track id: class name} of the tracks present.
        embeddings: (len(rows), D) float16, each row's CLIP embedding (track_vectors.py);
            None from a segmenter that gives none.
    """

    frame: Frame
    labels: np.ndarray
    rows: list[SegmentRow]
    track_names: dict[int, str]
    embeddings: np.ndarray | None = None


@dataclass(frozen=True)
class SegmentAndTrack:
    """Segment batches of frames at `label_size` in `precision`, filter, track."""

    segmenter: SegmenterLike
    tracker: Tracker
    segment_filter: SegmentFilter
    names: list[str]  # class names of the vocabulary
    label_size: tuple[int, int]  # (H, W) of the stored labels
    precision: str = "fp32"

    def segment(self, frames: Sequence[Frame]) -> list[FrameSegmentation]:
        """The model's segmentations of `frames` (their `image`), at `label_size`."""
        with autocast(segmenter_device(self.segmenter), self.precision):
            return self.segmenter.segment([f.image for f in frames], output_size=self.label_size)

    def track(self, frame: Frame, segmentation: FrameSegmentation) -> TrackedFrame:
        """Filter one frame's segmentation and step the tracker with it."""
        segmentation = self.segment_filter(segmentation)
        result = self.tracker.step(frame.index, segmentation, time=frame.time)
        rows = segment_rows(0, segmentation.segments, result)
        embeddings = np.asarray(segmentation.embeddings)
        has_vectors = embeddings.ndim == 2 and len(embeddings) == len(segmentation.segments)
        return TrackedFrame(
            frame=frame,
            labels=result.labels,
            rows=rows,
            track_names={t: self._name(c) for t, c in result.classes.items()},
            embeddings=row_embeddings(
                np.array([s.area for s in segmentation.segments], np.int64),
                embeddings,
                result.track_ids,
                np.array([row[1] for row in rows], np.int64),
            )
            if has_vectors
            else None,
        )

    def _name(self, class_id: int) -> str:
        return self.names[class_id] if 0 <= class_id < len(self.names) else f"#{class_id}"

    def __call__(
        self, batches: Iterable[Sequence[Frame]], lookahead: int = 1
    ) -> Iterator[list[TrackedFrame]]:
        """Each batch segmented and tracked, in order (the tracker state follows each batch).

        Args:
            lookahead: batches the model may segment ahead, in a thread of its own, while
                this one is tracked and handed to the store and overlay (torch releases the
                GIL while it computes, so the two overlap); 0 = one after the other. At most
                `lookahead` finished batches wait, so memory stays bounded. The tracker only
                ever runs here, in order, so the output does not depend on it.

        On a CPU, a segmenter with two steps (`TwoStepSegmenter`) runs its network in one
        thread and its post-processing in another, so that the next batch's forward overlaps
        this one's panoptic inference; the network's thread picks torch's thread count by the
        run's throughput (thread_tuner.py). At 1080p on 2 cores that run was 1.26x faster
        than one model thread with 2 torch threads (docs/BENCHMARKS.md section 10).
        """
        segmented: Iterable[tuple[Sequence[Frame], list[FrameSegmentation]]]
        two_steps = two_step_segmenter(self.segmenter)
        if lookahead > 0 and two_steps is not None:
            segmented = self._segment_in_two_threads(two_steps, batches, lookahead)
        else:
            segmented = ((batch, self.segment(batch)) for batch in batches)
            if lookahead > 0:
                segmented = prefetch(segmented, maxsize=lookahead, name="model")
        for batch, segmentations in segmented:
            yield [self.track(f, s) for f, s in zip(batch, segmentations, strict=True)]

    def _segment_in_two_threads(
        self, segmenter: TwoStepSegmenter, batches: Iterable[Sequence[Frame]], lookahead: int
    ) -> Iterator[tuple[Sequence[Frame], list[FrameSegmentation]]]:
        import torch  # only a torch segmenter has two steps

        device = segmenter_device(self.segmenter)
        most = torch.get_num_threads()  # the caller's count: the tuner's ceiling

        def network() -> Iterator[tuple[Sequence[Frame], NetworkOutputs]]:
            # torch's thread count is per thread: set here, where the network runs
            torch.set_num_threads(most)
            work = ("file", self.segmenter.model_id, self.label_size, most)
            tuner = lend_tuner(work, most, torch.set_num_threads)
            try:
                for batch in batches:
                    tuner.before_batch(len(batch))
                    with autocast(device, self.precision):
                        yield batch, segmenter.run_network([f.image for f in batch])
            finally:
                return_tuner(work, tuner)

        def post(
            items: Iterable[tuple[Sequence[Frame], NetworkOutputs]],
        ) -> Iterator[tuple[Sequence[Frame], list[FrameSegmentation]]]:
            for batch, outputs in items:
                with autocast(device, self.precision):
                    yield batch, segmenter.segment_outputs(outputs, self.label_size)

        forwarded = prefetch(network(), maxsize=lookahead, name="model")
        return prefetch(post(forwarded), maxsize=lookahead, name="post")
