"""`RunSpec`: how every video of a batch is segmented, shipped to the workers with each task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamseg.batch.layout import short_hash
from streamseg.config import RunConfig


@dataclass(frozen=True)
class RunSpec:
    """How every video of a batch is segmented: what a worker needs besides the video.

    Attributes:
        config: the pipeline settings of `run_video` (model, vocabulary, decode range,
            tracker, store), the same for every video of the batch.
        segmenter_factory: builds the segmenter instead of `config.model` (Python API and
            tests); must be picklable (a module-level function or class).
    """

    config: RunConfig = field(default_factory=RunConfig)
    segmenter_factory: Callable[[], Any] | None = None

    def fingerprint(self) -> str:
        """8 hex digits identifying these settings (part of task keys)."""
        return short_hash(repr(self))
