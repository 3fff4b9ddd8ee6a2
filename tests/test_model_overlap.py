"""The model segments the next batch in a thread of its own while this one is tracked and
stored (issue 17, overlap). The output must not depend on it, and memory stays bounded."""

from __future__ import annotations

import threading

import numpy as np
from fake_segmenter import FakeSegmenter, blob_frame

from streamseg.config import ModelSettings
from streamseg.video.frames import Frame
from streamseg.video.segment_track import SegmentAndTrack
from streamseg.video.segments import SegmentFilter
from streamseg.video.track import Tracker


class _ThreadRecorder(FakeSegmenter):
    """The fake segmenter, noting which thread ran each call and how far it ran ahead."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []
        self.started = 0

    def segment(self, frames, output_size=None):  # noqa: ANN001, ANN201 - test double
        self.threads.append(threading.current_thread().name)
        self.started += 1
        return super().segment(frames, output_size)


def _frames(count: int) -> list[Frame]:
    return [
        Frame(index=i, pts=i, time=i / 12.5, image=blob_frame(i), source_size=(48, 64))
        for i in range(count)
    ]


def _stage(segmenter: FakeSegmenter) -> SegmentAndTrack:
    names = list(segmenter.vocabulary.names)
    return SegmentAndTrack(
        segmenter=segmenter,
        tracker=Tracker(),
        segment_filter=SegmentFilter.from_settings(ModelSettings(), names),
        names=names,
        label_size=(48, 64),
    )


def _run(lookahead: int) -> tuple[list, _ThreadRecorder, list[int]]:
    segmenter = _ThreadRecorder()
    stage = _stage(segmenter)
    frames = _frames(22)
    batches = [frames[i : i + 4] for i in range(0, len(frames), 4)]
    out, ahead = [], []
    for tracked in stage(batches, lookahead=lookahead):
        # how many batches the model had started when this one was handed on
        ahead.append(segmenter.started - (len(out) + 1))
        out.append(tracked)
    return out, segmenter, ahead


def test_overlap_gives_the_same_tracks_as_one_after_the_other() -> None:
    serial, serial_model, _ = _run(0)
    overlapped, overlapped_model, ahead = _run(2)
    assert len(serial) == len(overlapped) == 6
    for a_batch, b_batch in zip(serial, overlapped, strict=True):
        for a, b in zip(a_batch, b_batch, strict=True):
            assert a.frame.index == b.frame.index
            np.testing.assert_array_equal(a.labels, b.labels)
            assert a.rows == b.rows and a.track_names == b.track_names
    main = threading.current_thread().name
    assert set(serial_model.threads) == {main}
    assert set(overlapped_model.threads) == {"model"}
    # bounded: the model never runs more than lookahead + 1 batches ahead of the consumer
    assert max(ahead) <= 3
