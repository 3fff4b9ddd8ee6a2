"""A live run takes and segments its frames in its own thread (video/live_segment.py), within
the latency budget; every frame of a non-dropping run is processed."""

from __future__ import annotations

import threading
from pathlib import Path

from fake_segmenter import TwoStepFake
from live_server import StreamServer

from streamseg.config import RunConfig
from streamseg.video.live_budget import BatchTimes
from streamseg.video.live_decode import LiveSettings
from streamseg.video.live_run import run_live
from streamseg.video.live_segment import label_size_for
from streamseg.video.store import open_store


def _run(tmp_path: Path, name: str, segmenter: object, frames: int = 24, **live: object):
    server = StreamServer([frames], pace=False)
    summary = run_live(
        server.url,
        tmp_path / f"{name}.zarr",
        config=RunConfig().with_overrides(model={"batch_size": 2}),
        live=LiveSettings(live=False, read_timeout=3.0, **live),
        segmenter=segmenter,  # type: ignore[arg-type]
        handle_signals=False,
    )
    server.stop.set()
    server.join()
    return summary, open_store(tmp_path / f"{name}.zarr")


def test_a_live_run_segments_in_its_own_thread(tmp_path: Path) -> None:
    # live runs stay in one thread (live_segment.py): a two-step segmenter's `segment` runs
    # in the caller's thread, its halves are not called apart
    segmenter = TwoStepFake()
    summary, store = _run(tmp_path, "one", segmenter)
    assert summary.frames == 24
    assert segmenter.threads == {
        "network": set(),
        "post": set(),
        "segment": {threading.current_thread().name},
    }
    assert store.frames["index"].tolist() == list(range(24))


def test_max_frames_with_two_steps(tmp_path: Path) -> None:
    summary, store = _run(tmp_path, "max", TwoStepFake(), frames=40, max_frames=7)
    assert summary.ended == "max frames"
    assert store.frames["index"].tolist() == list(range(7))


def test_label_size_for() -> None:
    assert label_size_for((1080, 1920), 1.0) == (1080, 1920)
    assert label_size_for((1080, 1920), 0.5) == (540, 960)
    assert label_size_for((3, 3), 0.1) == (1, 1)


def test_batch_times_from_two_threads() -> None:
    times = BatchTimes(window=5)
    stop = threading.Event()
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            while not stop.is_set():
                times.expected(2)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    asker = threading.Thread(target=ask)
    asker.start()
    for i in range(20000):
        times.record(1, 0.01 * (i % 3 + 1))
    stop.set()
    asker.join()
    assert errors == []
    assert times.expected(2) == 0.04  # median of the last 5 (0.02 0.03 0.01 0.02 0.03) x 2
