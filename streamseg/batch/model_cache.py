"""One segmenter per worker process, built by the first task that needs it and reused by every
later task of the batch."""

from __future__ import annotations

import threading
from typing import Any

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


def cached_segmenter(spec: RunSpec) -> Any:
    """The segmenter of `spec`, built once per process and then reused by every task.

    Keyed by what builds the model (name, CLIP weights, device; or the factory). Only the
    latest model is kept: a worker serves one batch's settings at a time, and two large
    models would not fit on one GPU. The vocabulary is set by `run_video` per task (its text
    classifier is cached in the segmenter and on disk).
    """
    global _MODEL_LOADS
    model = spec.config.model
    key = (model.name, model.clip_weights, model.device, spec.segmenter_factory)
    with _SEGMENTER_LOCK:
        segmenter = _SEGMENTERS.get(key)
        if segmenter is None:
            _SEGMENTERS.clear()
            if spec.segmenter_factory is not None:
                segmenter = spec.segmenter_factory()
            else:
                # Imported here: torch and the model load only on workers, not on the client.
                from streamseg.model.load import load_segmenter

                segmenter = load_segmenter(model.name, model.clip_weights, model.device)
            _SEGMENTERS[key] = segmenter
            _MODEL_LOADS += 1
    return segmenter
