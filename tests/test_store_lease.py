"""The writer lease of a store (one writer at a time, fenced commits) and commit durability."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fake_segmenter import make_blob_video

from streamseg.cli import main
from streamseg.commands.run import FACTORY_ENV
from streamseg.errors import UserError
from streamseg.video.store import LabelStore, open_store
from streamseg.video.store_lease import LEASE_FILE, process_start, read_lease

SIZE = (6, 8)


@pytest.fixture(autouse=True)
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FACTORY_ENV, "fake_segmenter:make_fake")


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_blob_video(tmp_path_factory.mktemp("v") / "blobs.mp4", frames=8)


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of a live process on this host (not this one)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _lease(
    store: Path,
    pid: int,
    host: str | None = None,
    expires: float | None = None,
    pid_start: int | None = None,
) -> None:
    store.mkdir(exist_ok=True)
    data = {
        "pid_start": pid_start,
        "host": host or socket.gethostname(),
        "pid": pid,
        "started": "2026-12-06T19:00:00Z",
        "token": 7,
        "expires": time.time() + 600 if expires is None else expires,
        "program": "streamseg run",
    }
    (store / LEASE_FILE).write_text(json.dumps(data))


def _open(path: Path) -> LabelStore:
    return LabelStore.open(path, label_size=SIZE, identity={"a": 1}, attrs={})


def _write(store: LabelStore, t0: int, n: int) -> None:
    labels = np.full((n, *SIZE), 1, np.int32)
    frames = {k: np.arange(t0, t0 + n) for k in ("index", "pts", "time", "keyframe", "corrupt")}
    segments = {k: np.zeros(n, np.int64) for k in ("track_id", "class_id", "score", "area")}
    segments.update({k: np.zeros(n, np.int64) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")})
    segments.update(frame=np.arange(n), track_id=np.ones(n), is_thing=np.ones(n))
    store.write_block(labels, frames, segments, tracker_state="{}")


def _unfinished(path: Path) -> None:
    store = _open(path)
    _write(store, 0, 2)
    store.close()
    assert not (path / LEASE_FILE).exists()


def test_a_second_run_is_refused_naming_the_holder(
    tmp_path: Path, blobs: Path, live_pid: int, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s.zarr"
    _lease(store, live_pid)  # a writer creating the store right now
    capsys.readouterr()
    assert main(["run", str(blobs), "--out", str(store), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    host = socket.gethostname()
    assert len(err.splitlines()) == 1
    assert (
        f"{store}: in use by pid {live_pid} on host {host} since 2026-12-06T19:00:00Z "
        f"(streamseg run); wait for it, or remove {store}/lease.json if that process is gone"
    ) in err
    assert main(["run", str(blobs), "--out", str(store), "--overwrite", "--quiet"]) == 2
    assert read_lease(store).pid == live_pid  # untouched


def test_a_writer_on_an_unfinished_store_in_use_is_refused(tmp_path: Path, live_pid: int) -> None:
    store = tmp_path / "s.zarr"
    _unfinished(store)
    _lease(store, live_pid)
    progress = (store / "progress.json").read_bytes()
    with pytest.raises(UserError, match=f"in use by pid {live_pid}"):
        _open(store)
    assert (store / "progress.json").read_bytes() == progress
    assert len(open_store(store)) == 2  # readers ignore the lease


def test_a_stale_lease_on_this_host_is_taken_over(tmp_path: Path, blobs: Path) -> None:
    store = tmp_path / "s.zarr"
    _lease(store, _dead_pid())
    assert main(["run", str(blobs), "--out", str(store), "--quiet"]) == 0
    assert open_store(store).status == "done"
    assert not (store / LEASE_FILE).exists()  # released at the end


def test_a_reused_pid_does_not_keep_a_lease(tmp_path: Path, live_pid: int) -> None:
    started = process_start(live_pid)
    if started is None:
        pytest.skip("no /proc: a pid's start time is unknown here")
    store = tmp_path / "s.zarr"
    _unfinished(store)
    # the holder was live_pid's number, but a process that started at another time
    _lease(store, live_pid, pid_start=started - 1)
    writer = _open(store)  # taken over: the process with that pid is not the holder
    assert read_lease(store).pid == os.getpid()
    writer.close()
    # the same process (same start time) keeps it
    _lease(store, live_pid, pid_start=started)
    with pytest.raises(UserError, match=f"in use by pid {live_pid}"):
        _open(store)


def test_the_lease_records_the_holders_start_time(tmp_path: Path) -> None:
    writer = _open(tmp_path / "s.zarr")
    assert read_lease(tmp_path / "s.zarr").pid_start == process_start(os.getpid())
    writer.close()


def _fails_on_third_call(monkeypatch: pytest.MonkeyPatch) -> tuple[object, dict[str, int]]:
    """The fake segmenter whose third `segment` call raises "model failed"; and its calls."""
    from fake_segmenter import make_fake

    segmenter = make_fake()
    calls = {"n": 0}
    original = segmenter.segment

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("model failed")
        return original(*args, **kwargs)

    monkeypatch.setattr(segmenter, "segment", failing)
    return segmenter, calls


def test_a_run_that_fails_gives_the_lease_back_at_once(
    tmp_path: Path, blobs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not at process exit: a library caller (the app, a batch worker) lives on, and another
    process must be able to resume the store meanwhile."""
    from streamseg.config import ModelSettings, RunConfig
    from streamseg.video import store_lease
    from streamseg.video.pipeline import run_video

    store = tmp_path / "s.zarr"
    segmenter, calls = _fails_on_third_call(monkeypatch)
    with pytest.raises(RuntimeError, match="model failed"):
        run_video(
            blobs, store, config=RunConfig(model=ModelSettings(batch_size=1)), segmenter=segmenter
        )
    assert calls["n"] == 3 and (store / "progress.json").is_file()
    assert not (store / LEASE_FILE).exists()
    assert store not in store_lease._HELD.values()  # nothing left for the exit hook


def test_another_hosts_lease_is_taken_over_only_after_its_expiry(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    _unfinished(store)
    _lease(store, 1234, host="elsewhere")
    with pytest.raises(UserError, match="in use by pid 1234 on host elsewhere"):
        _open(store)
    _lease(store, 1234, host="elsewhere", expires=time.time() - 1)
    writer = _open(store)
    lease = read_lease(store)
    assert lease.pid == os.getpid() and lease.token > 7
    writer.close()
    assert not (store / LEASE_FILE).exists()


def test_a_fenced_writer_commits_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    first = _open(path)
    _write(first, 0, 2)
    second = _open(path)  # takes the lease over (this process: the first is presumed dropped)
    progress = (path / "progress.json").read_bytes()
    with pytest.raises(UserError, match="lease was taken over by pid .*stops without committing"):
        first.commit("{}")
    with pytest.raises(UserError, match="lease was taken over"):
        _write(first, 2, 2)
    assert (path / "progress.json").read_bytes() == progress
    _write(second, 2, 2)
    second.finish()
    assert len(open_store(path)) == 4


def test_data_is_fsynced_before_the_commit_record_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.zarr"
    store = _open(path)
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def record_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def record_replace(src, dst) -> None:  # noqa: ANN001 - os.replace's own types
        events.append(("replace", str(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    _write(store, 0, 2)
    commit = events.index(("replace", str(path / "progress.json")))
    synced = {Path(name) for kind, name in events[:commit] if kind == "fsync"}
    for data in ("labels/c/0/0/0", "frames/index/c/0", "segments/area/c/0", "labels/zarr.json"):
        assert path / data in synced, data
    assert path / "labels/c/0/0" in synced  # the folder of a renamed chunk file
    assert ("fsync", str(path)) in events[commit:]  # the rename, durable


def test_a_live_run_that_fails_while_finishing_gives_the_lease_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live loop's error path: even when finishing the store fails, the lease goes back
    before the call returns, not at process exit."""
    from live_server import StreamServer

    from streamseg.config import ModelSettings, RunConfig
    from streamseg.video import store_lease
    from streamseg.video.pipeline import run_video

    def broken_finish(self, **_attrs):
        raise OSError("disk full while finishing")

    segmenter, calls = _fails_on_third_call(monkeypatch)
    monkeypatch.setattr(LabelStore, "finish", broken_finish)
    server = StreamServer([40], pace=False)
    store = tmp_path / "cam.zarr"
    config = RunConfig(model=ModelSettings(batch_size=1))
    with pytest.raises((RuntimeError, OSError)):
        run_video(server.url, store, config=config, segmenter=segmenter)
    server.join()
    assert calls["n"] == 3
    assert not (store / LEASE_FILE).exists()
    assert store not in store_lease._HELD.values()


def test_a_creation_killed_before_its_first_record_starts_again(
    tmp_path: Path, blobs: Path, live_pid: int
) -> None:
    """Killed between making the folder and writing progress.json: the stale lease and the
    half-made arrays promise nothing, so a rerun starts the store again (before, it refused:
    "exists and is not a streamseg store"); with the writer alive it is refused."""
    store = tmp_path / "s.zarr"
    LabelStore.open(store, label_size=(8, 8), identity={}, attrs={})  # a skeleton
    (store / "progress.json").unlink()
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"].pop("streamseg")  # as if killed before the root attributes
    (store / "zarr.json").write_text(json.dumps(meta))
    (store / LEASE_FILE).unlink()
    _lease(store, live_pid)
    with pytest.raises(UserError, match="in use"):
        LabelStore.open(store, label_size=(8, 8), identity={}, attrs={})
    _lease(store, _dead_pid())
    assert main(["run", str(blobs), "--out", str(store), "--quiet"]) == 0
    assert open_store(store).status == "done"
