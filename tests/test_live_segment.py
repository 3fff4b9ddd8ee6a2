"""A live run takes and segments its frames in its own thread (video/live_segment.py), within
the latency budget; every frame of a non-dropping run is processed."""

from __future__ import annotations

import threading
from pathlib import Path

from fake_segmenter import TwoStepFake
from live_server import StreamServer

from streamseg.config import RunConfig
from streamseg.video.live_decode import LiveSettings
from streamseg.video.live_run import run_live
from streamseg.video.run_setup import label_size_for
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
