"""The Dask client of a batch: a loopback LocalCluster on this machine, or an existing
scheduler.

With CUDA devices visible and `--device auto` or `cuda`, the local cluster has one worker
process per GPU, each pinned to its GPU by its own `CUDA_VISIBLE_DEVICES` (set by its nanny
before the worker starts, so torch in that process sees that one GPU as cuda:0) and told by
`STREAMSEG_WORKER_DEVICE` to load its model there (batch/model_cache.py): a worker that then
finds no CUDA fails its tasks with the loader's error instead of falling back to the CPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamseg.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client, SpecCluster

# Set on a GPU worker of the local cluster: the device its models load on (model_cache.py).
WORKER_DEVICE_ENV = "STREAMSEG_WORKER_DEVICE"
# --device values that a local cluster spreads over every visible GPU (cuda:N pins one GPU:
# the user chose it, every worker uses it).
SPREAD_DEVICES = ("auto", "cuda")


def has_bokeh() -> bool:
    """Whether bokeh is installed: a LocalCluster serves its dashboard pages only with it."""
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class GpuWorker:
    """One worker process of a local GPU cluster.

    Attributes:
        name: the worker's name (shown on the dashboard).
        gpu: its `CUDA_VISIBLE_DEVICES` entry (an index or a GPU UUID, as the parent sees it).
    """

    name: str
    gpu: str

    @property
    def env(self) -> dict[str, str]:
        """Environment of the worker process: only its GPU visible, models loaded on it."""
        return {"CUDA_VISIBLE_DEVICES": self.gpu, WORKER_DEVICE_ENV: "cuda"}


def visible_gpu_ids(count: int, visible: str | None) -> list[str]:
    """The `CUDA_VISIBLE_DEVICES` entries of the `count` GPUs torch sees here.

    Args:
        count: `torch.cuda.device_count()`.
        visible: this process's `CUDA_VISIBLE_DEVICES` (None or empty: every GPU, by index);
            a worker must get the parent's entry, not torch's renumbered index.
    """
    if count <= 0:
        return []
    if visible is not None and visible.strip():
        return [part.strip() for part in visible.split(",") if part.strip()][:count]
    return [str(index) for index in range(count)]


def gpu_workers(gpu_ids: Sequence[str], n_workers: int | None = None) -> list[GpuWorker]:
    """One worker per GPU, or `n_workers` dealt round-robin over the GPUs (several small
    models may share a GPU); empty without GPUs."""
    if not gpu_ids:
        return []
    count = n_workers if n_workers is not None else len(gpu_ids)
    return [
        GpuWorker(name=f"gpu{index % len(gpu_ids)}-{index}", gpu=gpu_ids[index % len(gpu_ids)])
        for index in range(count)
    ]


def local_gpu_ids(device: str) -> list[str]:
    """The GPUs a local cluster spreads its workers over for `--device device`: every
    visible one for auto and cuda; none for cpu, mps, cuda:N or a machine without CUDA.

    Raises:
        UserError: a device this machine lacks ("cuda: CUDA is not available on this
            machine"), before any worker starts.
    """
    import torch

    from streamseg.model.segmenter import resolve_device

    resolve_device(device)
    if device not in SPREAD_DEVICES or not torch.cuda.is_available():
        return []
    return visible_gpu_ids(torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES"))


def cuda_device_count() -> int:
    """CUDA devices this process sees (run on every worker by `client.run`)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_worker_devices(device: str, client_gpus: int, workers: Mapping[str, int]) -> list[str]:
    """Lines to report about the workers' CUDA devices for `--device device`.

    Args:
        client_gpus: CUDA devices of the client's machine.
        workers: worker address -> its CUDA device count.

    Returns:
        one line per worker that will not use a GPU the run expects: with auto, a worker
        without CUDA while the client has it (its tasks would run on the CPU); with cuda /
        cuda:N, a worker without CUDA (its tasks fail).

    Raises:
        UserError: cuda / cuda:N and no worker has CUDA.
    """
    lacking = sorted(address for address, count in workers.items() if count <= 0)
    if device.startswith("cuda"):
        if workers and len(lacking) == len(workers):
            raise UserError(f"--device {device}: no worker has a CUDA device")
        return [f"worker {a} has no CUDA device: its --device {device} tasks fail" for a in lacking]
    if device == "auto" and client_gpus > 0:
        return [
            f"worker {a} has no CUDA device (this machine has {client_gpus}): "
            "its --device auto tasks run on the CPU"
            for a in lacking
        ]
    return []


def worker_threads(threads_per_worker: int, resources: Mapping[str, float] | None) -> int:
    """Threads of a local worker. With resources (e.g. GPU=1) the segmenting tasks are limited
    by them, and one more thread runs the planning and stitching tasks, which ask for none:
    they neither wait for a GPU task nor keep one waiting."""
    return threads_per_worker + 1 if resources else threads_per_worker


@contextmanager
def open_client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    resources: dict[str, float] | None = None,
    dashboard: bool = True,
    gpus: Sequence[str] = (),
) -> Iterator[Client]:
    """A Dask client on an existing scheduler, or on a new LocalCluster on this machine.

    Args:
        scheduler: address of a running scheduler (`tcp://host:8786`); None starts a
            LocalCluster of worker processes bound to 127.0.0.1 (loopback only).
        n_workers: worker processes of the LocalCluster (default: CPU cores // threads).
        threads_per_worker: tasks a LocalCluster worker runs at once (each holds its model).
        resources: what each LocalCluster worker offers (e.g. {"GPU": 1}), so that tasks
            asking for these resources can run on it.
        dashboard: serve the Dask dashboard on a free loopback port (when bokeh is installed).
        gpus: `CUDA_VISIBLE_DEVICES` entries (`local_gpu_ids`): the LocalCluster has one
            worker per GPU pinned to it (or `n_workers` dealt over them).
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as error:
            raise UserError(
                f"{scheduler}: cannot connect to the Dask scheduler ({error})"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    if gpus:
        spec = gpu_cluster(
            gpu_workers(gpus, n_workers), threads_per_worker, resources, dashboard=dashboard
        )
        try:
            with Client(spec) as client:
                yield client
        finally:
            spec.close()
        return
    if n_workers is None:
        n_workers = max(1, (os.cpu_count() or 1) // max(1, threads_per_worker))
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=worker_threads(threads_per_worker, resources),
        processes=True,
        host="127.0.0.1",
        # The scheduler's HTTP server runs in any case (health, metrics): on a free loopback
        # port, not a fixed one; the dashboard pages on it only when wanted and bokeh is there.
        dashboard_address="127.0.0.1:0",
        scheduler_kwargs={"dashboard": dashboard and has_bokeh()},
        resources=resources or None,
        # A failing task's traceback would be logged by every worker that tried it; the
        # manifest and the summary carry the error instead.
        silence_logs=logging.CRITICAL,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def gpu_cluster(
    workers: Sequence[GpuWorker],
    threads_per_worker: int = 1,
    resources: dict[str, float] | None = None,
    *,
    dashboard: bool = True,
) -> SpecCluster:
    """A loopback cluster of one nanny-managed worker process per `GpuWorker`, each with its
    own environment (a LocalCluster gives every worker the same one)."""
    from distributed import Nanny, Scheduler, SpecCluster
    from distributed.worker_memory import parse_memory_limit

    # As a LocalCluster: the machine's memory shared evenly among the workers.
    memory_limit = parse_memory_limit("auto", 1, len(workers), logger=logging.getLogger(__name__))
    scheduler: dict[str, Any] = {
        "cls": Scheduler,
        "options": {
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
            "dashboard": dashboard and has_bokeh(),
        },
    }
    specs: dict[str, Any] = {
        worker.name: {
            "cls": Nanny,
            "options": {
                "host": "127.0.0.1",
                "nthreads": worker_threads(threads_per_worker, resources),
                "env": worker.env,
                "resources": resources or None,
                "memory_limit": memory_limit,
                "silence_logs": logging.CRITICAL,
            },
        }
        for worker in workers
    }
    return SpecCluster(scheduler=scheduler, workers=specs, silence_logs=logging.CRITICAL)
