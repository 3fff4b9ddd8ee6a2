"""`streamseg batch` on a machine with GPUs: one local worker per GPU, pinned to it; and a
device the machine lacks refused before any worker starts. The plan is pure functions of a
GPU count (tested here without a GPU); the pinned cluster starts here too (the pin is only an
environment variable until torch reads it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from fake_segmenter import make_blob_video

from streamseg.batch.cluster import (
    WORKER_DEVICE_ENV,
    check_worker_devices,
    gpu_workers,
    local_gpu_ids,
    open_client,
    visible_gpu_ids,
)
from streamseg.batch.model_cache import worker_device
from streamseg.cli import main
from streamseg.errors import UserError

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")


def test_visible_gpu_ids_follow_the_parents_cuda_visible_devices() -> None:
    assert visible_gpu_ids(0, None) == [] and visible_gpu_ids(0, "0,1") == []
    assert visible_gpu_ids(2, None) == ["0", "1"] and visible_gpu_ids(2, "") == ["0", "1"]
    # torch renumbers what CUDA_VISIBLE_DEVICES lists: a worker needs the parent's entries
    assert visible_gpu_ids(2, "3, 5,7") == ["3", "5"]
    assert visible_gpu_ids(1, "GPU-1a2b") == ["GPU-1a2b"]


def test_one_worker_per_gpu_pinned_by_its_environment() -> None:
    assert gpu_workers([]) == []
    workers = gpu_workers(["3", "5"])
    assert [w.gpu for w in workers] == ["3", "5"]
    assert len({w.name for w in workers}) == 2
    assert workers[1].env == {"CUDA_VISIBLE_DEVICES": "5", WORKER_DEVICE_ENV: "cuda"}
    # --workers N: dealt round-robin over the GPUs
    assert [w.gpu for w in gpu_workers(["0", "1"], n_workers=3)] == ["0", "1", "0"]
    assert len({w.name for w in gpu_workers(["0", "1"], n_workers=3)}) == 3


def test_worker_device_uses_the_pinned_gpu_for_auto_and_cuda_only() -> None:
    pinned = {WORKER_DEVICE_ENV: "cuda"}
    assert worker_device("auto", pinned) == "cuda" and worker_device("cuda", pinned) == "cuda"
    assert worker_device("cpu", pinned) == "cpu" and worker_device("cuda:1", pinned) == "cuda:1"
    assert worker_device("auto", {}) == "auto"


def test_worker_devices_are_reported() -> None:
    workers = {"tcp://a": 1, "tcp://b": 0}
    # auto: a worker without CUDA while the client has it is said, not silently CPU
    lines = check_worker_devices("auto", 2, workers)
    assert len(lines) == 1 and "tcp://b" in lines[0] and "CPU" in lines[0]
    assert check_worker_devices("auto", 0, workers) == []
    assert check_worker_devices("cpu", 2, workers) == []
    lines = check_worker_devices("cuda", 0, workers)
    assert len(lines) == 1 and "tcp://b" in lines[0] and "fail" in lines[0]
    with pytest.raises(UserError, match="no worker has a CUDA device"):
        check_worker_devices("cuda:0", 0, {"tcp://b": 0})


@no_cuda
def test_local_gpu_ids_without_cuda() -> None:
    assert local_gpu_ids("auto") == [] and local_gpu_ids("cpu") == []
    with pytest.raises(UserError, match="CUDA is not available"):
        local_gpu_ids("cuda")
    with pytest.raises(UserError, match="CUDA is not available"):
        local_gpu_ids("cuda:1")


@no_cuda
def test_batch_device_cuda_without_cuda_is_one_line_before_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = make_blob_video(tmp_path / "a.mp4", frames=2)
    out = tmp_path / "out"
    code = main(["batch", str(video), "--out", str(out), "--device", "cuda", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == "streamseg batch: error: cuda: CUDA is not available on this machine"
    assert not out.exists()  # refused before anything was started or written


def test_pinned_workers_get_their_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WORKER_DEVICE_ENV, raising=False)
    with open_client(gpus=["0", "1"], dashboard=False) as client:
        client.wait_for_workers(2, timeout=60)
        pins = client.run(os.getenv, "CUDA_VISIBLE_DEVICES")
        devices = client.run(worker_device, "auto")
        threads = client.nthreads()
    assert sorted(pins.values()) == ["0", "1"]
    assert set(devices.values()) == {"cuda"}
    assert set(threads.values()) == {1}
    assert worker_device("auto") == "auto"  # the client itself is not pinned
