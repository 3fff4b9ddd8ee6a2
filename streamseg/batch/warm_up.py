"""Workers build their model and text classifier when they start, not in their first task.

`warm_workers` registers `ModelWarmUp`, a Dask worker plugin: every worker of the cluster, and
every worker that joins later, runs `warm_model` (batch/model_cache.py) once in its setup, so
that its first task finds the segmenter in the worker's cache and the classifier in the disk
cache, as every later task does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from distributed import WorkerPlugin

from streamseg.batch.model_cache import warm_model
from streamseg.batch.spec import RunSpec

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

PLUGIN_NAME = "streamseg-model-warm-up"


def offers(total: Mapping[str, float], needed: Mapping[str, float] | None) -> bool:
    """Whether a worker with `total` resources can run tasks that ask for `needed`."""
    return all(total.get(name, 0.0) >= amount for name, amount in (needed or {}).items())


class ModelWarmUp(WorkerPlugin):
    """Builds the batch's segmenter on each worker that can run its segmenting tasks."""

    def __init__(self, spec: RunSpec, resources: Mapping[str, float] | None = None) -> None:
        self.spec = spec
        self.resources = dict(resources or {})

    async def setup(self, worker: Any) -> None:
        if not offers(worker.state.total_resources, self.resources):
            return  # a worker without the GPU the tasks ask for never runs them
        # In a thread: the worker's event loop keeps answering the scheduler meanwhile.
        await asyncio.get_running_loop().run_in_executor(None, warm_model, self.spec)


def warm_workers(
    client: Client, spec: RunSpec, resources: Mapping[str, float] | None = None
) -> None:
    """Warm every worker of `client` (returns once they are warm) and those that join later."""
    client.register_plugin(ModelWarmUp(spec, resources), name=PLUGIN_NAME)
