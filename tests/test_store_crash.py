"""Random SIGKILLs: `streamseg run` killed at random moments (also while it finishes the store)
and shard stitching killed mid-way each resume, by rerunning the same command, to a store whose
labels, pyramid, time coordinate and tables are byte for byte those of an uninterrupted run.

The default suite delivers a few kills; the `slow` test delivers the 50 of issue 19.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fake_segmenter import FakeSegmenter, make_blob_video

from streamseg.commands.run import FACTORY_ENV
from streamseg.config import ModelSettings, RunConfig, StoreSettings
from streamseg.video.store import open_store, read_progress

TESTS = Path(__file__).resolve().parent
DEADLINE_SECONDS = 120  # bound on every process of these tests
FRAMES = 16


@dataclass(frozen=True)
class Kill:
    """What one SIGKILL hit: whether the process was still running, and whether every frame
    was committed by then (the kill fell in `finish`, or after it)."""

    delivered: bool
    all_committed: bool
    seconds: float  # from the start (or from `after`) to the kill or the process's end


def _env(delay: float = 0.0) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env[FACTORY_ENV] = "fake_segmenter:make_fake"
    env["FAKE_SEGMENTER_DELAY"] = str(delay)
    return env


def _kill_at(
    argv: list[str], env: dict[str, str], at: float | None, store: Path, after: str = ""
) -> Kill:
    """Run argv, SIGKILL it `at` seconds after its start (None: once every frame is committed,
    i.e. in or after `finish`); with `after` (a glob beside `store`), `at` counts from when
    a file matching it appears."""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    began = time.monotonic()
    waiting = bool(after)
    try:
        while process.poll() is None and time.monotonic() - began < DEADLINE_SECONDS:
            if waiting and list(store.parent.glob(after)):
                waiting, began = False, time.monotonic()
            if at is not None and not waiting and time.monotonic() - began >= at:
                break
            if at is None and (store / "progress.json").is_file():
                if read_progress(store).frames >= FRAMES:
                    break
            time.sleep(0.005)
        delivered = process.poll() is None
        seconds = time.monotonic() - began
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    stderr = process.stderr.read().decode() if process.stderr else ""
    process.stderr and process.stderr.close()
    if not delivered:
        assert process.returncode == 0, stderr
    committed = (store / "progress.json").is_file() and read_progress(store).frames >= FRAMES
    return Kill(delivered, committed, seconds)


def _run_to_the_end(argv: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=DEADLINE_SECONDS)
    assert result.returncode == 0, result.stderr


def _arrays(path: Path) -> dict[str, tuple[str, bytes]]:
    """Every array a store's readers see, at its committed length: name -> (dtype, bytes)."""
    import zarr

    reader = open_store(path)
    assert reader.status == "done"
    group = zarr.open_group(path, mode="r", use_consolidated=False)
    names = ["labels", "time", *(f"pyramid/{k}" for k in range(1, 4))]
    arrays = {}
    for name in names:
        if name in group:
            values = np.asarray(group[name][: reader.num_frames])
            arrays[name] = (values.dtype.str, values.tobytes())
    for table in ("frames", "segments", "tracks"):
        for column, values in getattr(reader, table).items():
            arrays[f"{table}/{column}"] = (values.dtype.str, values.tobytes())
    return arrays


def _assert_identical(a: Path, b: Path) -> None:
    want, got = _arrays(a), _arrays(b)
    assert want.keys() == got.keys()
    differing = [name for name in want if want[name] != got[name]]
    assert not differing, f"{b} differs from {a} in {differing}"


def kill_runs_and_resume(tmp_path: Path, kills: int, seed: int) -> list[Kill]:
    """Deliver `kills` SIGKILLs to `streamseg run` on stores that are then resumed; each store
    is compared with an uninterrupted run's. Returns what each kill hit."""
    rng = random.Random(seed)
    tmp_path.mkdir(exist_ok=True)
    video = make_blob_video(tmp_path / "blobs.mp4", frames=FRAMES)
    preset = tmp_path / "p.toml"
    preset.write_text("[model]\nbatch_size = 2\n[store]\ncommit_frames = 2\n")
    base = [sys.executable, "-m", "streamseg", "run", str(video), "--pipeline", str(preset)]
    straight = tmp_path / "straight.zarr"
    began = time.monotonic()
    _run_to_the_end([*base, "--out", str(straight), "--quiet"], _env(delay=0.05))
    span = time.monotonic() - began  # kills fall anywhere in a run of this length
    hits: list[Kill] = []
    store_number = 0
    while sum(k.delivered for k in hits) < kills and len(hits) < 3 * kills:
        store = tmp_path / f"killed-{store_number}.zarr"
        store_number += 1
        argv = [*base, "--out", str(store), "--quiet"]
        # a few kills on one store (each resume killed again), then a run to the end
        for _ in range(rng.randint(1, 3)):
            # one kill in four waits for the last commit: it lands in `finish` (or just after)
            at = None if rng.random() < 0.25 else rng.uniform(0.0, span)
            hits.append(_kill_at(argv, _env(delay=0.05), at, store))
        _run_to_the_end(argv, _env())
        _assert_identical(straight, store)
    return hits


def test_random_kills_of_run_resume_to_identical_stores(tmp_path: Path) -> None:
    hits = kill_runs_and_resume(tmp_path, kills=3, seed=1)
    assert sum(k.delivered for k in hits) >= 3


# ------------------------------------------------------------------------------ stitching

# 4 frames of 48 x 64 labels per block: a 40-frame stitch commits 10 times, a window to kill in.
STITCH = (
    "import sys; from streamseg.batch.stitch import stitch_stores; "
    "stitch_stores(sys.argv[1:-1], sys.argv[-1], block_bytes=4 * 4 * 48 * 64)"
)


def _shards(tmp_path: Path) -> list[Path]:
    """Two time shards of a 4 s video (10 fps), overlapping by 3 frames."""
    from streamseg.video.pipeline import run_video

    video = make_blob_video(tmp_path / "long.mp4", frames=40)
    config = RunConfig(model=ModelSettings(batch_size=4), store=StoreSettings(frames_per_shard=4))
    paths = []
    for index, (start, end) in enumerate(((None, 2.0), (1.65, None))):
        path = tmp_path / f"shard-{index}.zarr"
        run_video(video, path, config=config, segmenter=FakeSegmenter(), start=start, end=end)
        paths.append(path)
    return paths


def kill_stitching_and_redo(tmp_path: Path, kills: int, seed: int) -> int:
    """SIGKILL `stitch_stores` at random moments, rerun it, compare with an uninterrupted
    stitch; returns the kills delivered while it ran."""
    rng = random.Random(seed)
    tmp_path.mkdir(exist_ok=True)
    shards = [str(p) for p in _shards(tmp_path)]
    reference = tmp_path / "reference.zarr"
    # how long the stitching itself takes (from its temporary store's creation to the rename)
    kill = _kill_at(
        [sys.executable, "-c", STITCH, *shards, str(reference)],
        _env(),
        DEADLINE_SECONDS,
        reference,
        after=f".{reference.name}.stitch-*",
    )
    assert not kill.delivered and open_store(reference).status == "done"
    span = kill.seconds
    delivered = 0
    for attempt in range(3 * kills):
        if delivered >= kills:
            break
        out = tmp_path / f"stitched-{attempt}.zarr"
        argv = [sys.executable, "-c", STITCH, *shards, str(out)]
        # from the creation of its temporary store to its rename: during the stitching
        hit = _kill_at(argv, _env(), rng.uniform(0, span), out, after=f".{out.name}.stitch-*")
        delivered += hit.delivered
        # the output is absent or whole (built beside it, then renamed)
        assert not out.exists() or open_store(out).status == "done"
        _run_to_the_end(argv, _env())
        _assert_identical(reference, out)
        assert not list(tmp_path.glob(f".{out.name}.stitch-*"))  # the killed attempt's leftovers
    return delivered


def test_random_kills_of_shard_stitching_redo_to_identical_stores(tmp_path: Path) -> None:
    assert kill_stitching_and_redo(tmp_path, kills=2, seed=3) >= 1


@pytest.mark.slow  # ~60 processes loading torch: about 7 minutes on 2 idle cores
def test_fifty_random_kills_resume_to_identical_stores(tmp_path: Path) -> None:
    """Issue 19's figure: 50 SIGKILLs, 40 of `streamseg run` and 10 of shard stitching."""
    hits = kill_runs_and_resume(tmp_path / "run", kills=40, seed=19)
    assert sum(k.delivered for k in hits) >= 40
    # some kills fell after the last commit, while the store was being finished
    assert any(k.delivered and k.all_committed for k in hits)
    assert kill_stitching_and_redo(tmp_path / "stitch", kills=10, seed=19) >= 10
