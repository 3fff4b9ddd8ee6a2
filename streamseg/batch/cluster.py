"""The Dask client of a batch: a loopback LocalCluster on this machine, or an existing
scheduler."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from streamseg.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client


def has_bokeh() -> bool:
    """Whether bokeh is installed: a LocalCluster serves its dashboard pages only with it."""
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def open_client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    resources: dict[str, float] | None = None,
    dashboard: bool = True,
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
    if n_workers is None:
        n_workers = max(1, (os.cpu_count() or 1) // max(1, threads_per_worker))
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
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
