"""One segmenter per worker process, built when the worker starts (`warm_model`, run by the
plugin of batch/warm_up.py) or else by the first task that needs it, and reused by every later
task of the batch."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from streamseg.batch.cluster import SPREAD_DEVICES, WORKER_DEVICE_ENV
from streamseg.batch.spec import RunSpec

# Per worker process: the segmenters built so far, and how many times a model was built (read
# by the tests through `client.run`). The lock makes a worker's threads wait for the one model
# being built instead of each building its own.
_SEGMENTERS: dict[tuple[Any, ...], Any] = {}
_SEGMENTER_LOCK = threading.Lock()
_MODEL_LOADS = 0


def model_loads() -> int:
    """How many segmenters this process has built (one per worker is the goal)."""
    return _MODEL_LOADS


def worker_device(requested: str, environ: Mapping[str, str] | None = None) -> str:
    """The device this worker loads models on for `--device requested`.

    A GPU worker of the local cluster (batch/cluster.py) is pinned to one GPU and says so in
    `STREAMSEG_WORKER_DEVICE`: auto and cuda mean that device there, so that a worker whose GPU
    is missing fails with the loader's error instead of running on the CPU. Elsewhere (other
    workers, cpu, cuda:N, mps) the requested device as given.
    """
    pinned = (os.environ if environ is None else environ).get(WORKER_DEVICE_ENV)
    return pinned if pinned and requested in SPREAD_DEVICES else requested


def cached_segmenter(spec: RunSpec) -> Any:
    """The segmenter of `spec`, built once per process and then reused by every task.

    Keyed by what builds the model (name, CLIP weights, this worker's device for the
    requested one (`worker_device`); or the factory). Only the latest model is kept: a worker
    serves one batch's settings at a time, and two large models would not fit on one GPU. The
    vocabulary is set by `run_video` per task (its text classifier is cached in the segmenter
    and on disk).
    """
    global _MODEL_LOADS
    model = spec.config.model
    device = worker_device(model.device)
    key = (model.name, model.clip_weights, device, spec.segmenter_factory)
    with _SEGMENTER_LOCK:
        segmenter = _SEGMENTERS.get(key)
        if segmenter is None:
            _SEGMENTERS.clear()
            if spec.segmenter_factory is not None:
                segmenter = spec.segmenter_factory()
            else:
                # Imported here: torch and the model load only on workers, not on the client.
                from streamseg.model.load import load_segmenter

                segmenter = load_segmenter(model.name, model.clip_weights, device)
            _SEGMENTERS[key] = segmenter
            _MODEL_LOADS += 1
    return segmenter


def warm_model(spec: RunSpec) -> bool:
    """Build this worker's segmenter for `spec` and its text classifier (into the disk cache)
    before the first task asks for them (batch/warm_up.py runs it when a worker starts).

    Returns:
        True when warm; False when the model or vocabulary cannot load: the tasks then fail
        with the loader's own error, one line each in the manifest.
    """
    # Imported here: the pipeline and the model load only on workers, not on the client.
    from streamseg.model.vocab import vocabulary_from_options
    from streamseg.video.run_setup import resolve_vocabulary

    settings = spec.config.model
    try:
        segmenter = cached_segmenter(spec)
        vocabulary = vocabulary_from_options(settings.vocab, settings.vocab_file, settings.stuff)
        resolve_vocabulary(segmenter, vocabulary, spec.config)
    except Exception:  # noqa: BLE001 - said by every task that needs the model
        return False
    return True
