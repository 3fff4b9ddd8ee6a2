"""A CPU run pipelines the network and the panoptic post-processing of a two-step segmenter
(`TwoStepSegmenter`): the next batch's forward in the "model" thread while this one is
post-processed in the "post" thread (issue 17). The output must not depend on it."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch
from fake_segmenter import FakeSegmenter, ForwardingWrapper, TwoStepFake, blob_frame

from streamseg.config import ModelSettings
from streamseg.model.segmenter_like import TwoStepSegmenter
from streamseg.video.frames import Frame
from streamseg.video.segment_track import SegmentAndTrack
from streamseg.video.segments import SegmentFilter
from streamseg.video.track import Tracker


def _stage(segmenter: object, size: tuple[int, int] = (48, 64)) -> SegmentAndTrack:
    names = list(FakeSegmenter().vocabulary.names)
    return SegmentAndTrack(
        segmenter=segmenter,  # type: ignore[arg-type]
        tracker=Tracker(),
        segment_filter=SegmentFilter.from_settings(ModelSettings(), names),
        names=names,
        label_size=size,
    )


def _batches(count: int, size: int = 4) -> list[list[Frame]]:
    frames = [
        Frame(index=i, pts=i, time=i / 12.5, image=blob_frame(i), source_size=(48, 64))
        for i in range(count)
    ]
    return [frames[i : i + size] for i in range(0, count, size)]


def _same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for a_batch, b_batch in zip(a, b, strict=True):
        for x, y in zip(a_batch, b_batch, strict=True):
            assert x.frame.index == y.frame.index
            np.testing.assert_array_equal(x.labels, y.labels)
            assert x.rows == y.rows and x.track_names == y.track_names


def test_two_threads_give_the_same_tracks_as_one_after_the_other() -> None:
    serial = list(_stage(TwoStepFake())(_batches(22), lookahead=0))
    segmenter = TwoStepFake()
    split = list(_stage(segmenter)(_batches(22), lookahead=1))
    _same(serial, split)
    assert segmenter.threads == {"network": {"model"}, "post": {"post"}, "segment": set()}


def test_torch_threads_are_set_in_the_network_thread_and_given_back() -> None:
    before = torch.get_num_threads()
    segmenter = TwoStepFake()
    # a label size no other test uses: a new kind of work, so a new tuner (runs of one kind
    # share theirs)
    list(_stage(segmenter, (47, 64))(_batches(8), lookahead=1))
    assert segmenter.torch_threads[0] == before  # the caller's count to start with
    assert torch.get_num_threads() == before
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert seen == [before]  # threads started later get the caller's count too


def test_a_forwarding_wrapper_stays_one_step() -> None:
    inner = TwoStepFake()
    wrapper = ForwardingWrapper(inner)
    assert isinstance(wrapper, TwoStepSegmenter)  # by its forwarded names...
    list(_stage(wrapper)(_batches(8), lookahead=1))
    assert wrapper.calls == 2  # ...but its own `segment` is what runs
    assert inner.threads["network"] == set() and inner.threads["segment"] == {"model"}


def test_real_model_two_steps_equal_segment() -> None:
    from streamseg.model.segmenter import Segmenter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        segmenter = Segmenter.from_pretrained("tiny-convnext", device="cpu")
    segmenter.set_vocabulary("red square,blue square,grass", cache_dir=None)
    assert issubclass(Segmenter, TwoStepSegmenter)
    frames = [blob_frame(i) for i in range(3)]
    whole = segmenter.segment(frames, output_size=(96, 128))
    halves = segmenter.segment_outputs(segmenter.run_network(frames), (96, 128))
    for a, b in zip(whole, halves, strict=True):
        np.testing.assert_array_equal(a.panoptic, b.panoptic)
        assert a.segments == b.segments
        np.testing.assert_array_equal(a.embeddings, b.embeddings)
    serial = list(_stage(segmenter, (96, 128))(_batches(12, 3), lookahead=0))
    split = list(_stage(segmenter, (96, 128))(_batches(12, 3), lookahead=1))
    _same(serial, split)


def _failing_on_second_call(step: str, original):  # noqa: ANN001, ANN202
    calls = [0]

    def failing(*args):  # noqa: ANN002, ANN202
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError(f"{step} failed")
        return original(*args)

    return failing


@pytest.mark.parametrize("lookahead", [1, 2])
@pytest.mark.parametrize("step", ["run_network", "segment_outputs"])
def test_an_error_in_either_step_reaches_the_consumer(lookahead: int, step: str) -> None:
    segmenter = TwoStepFake()
    setattr(segmenter, step, _failing_on_second_call(step, getattr(segmenter, step)))
    with pytest.raises(RuntimeError, match=f"{step} failed"):
        list(_stage(segmenter)(_batches(16), lookahead=lookahead))


def test_the_next_run_goes_on_with_the_same_tuner() -> None:
    from streamseg.video.thread_tuner import PROBE, ROUNDS, WARMUP, lend_tuner

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # two candidates, 2 and 1, whatever the machine
    try:
        segmenter = TwoStepFake()
        stage = _stage(segmenter)
        batches = WARMUP + 2 * PROBE * ROUNDS + 2  # a whole probe
        list(stage(_batches(4 * batches), lookahead=1))
        work = ("file", segmenter.model_id, stage.label_size, 2)
        tuner = lend_tuner(work, 2, lambda count: None)  # the run's tuner, left idle
        assert tuner.chosen in (1, 2)
        chosen = tuner.chosen
        from streamseg.video.thread_tuner import return_tuner

        return_tuner(work, tuner)
        following = TwoStepFake()
        list(_stage(following)(_batches(8), lookahead=1))
        assert following.torch_threads[0] == chosen  # the next run starts from the choice
    finally:
        torch.set_num_threads(before)
