"""`SegmenterLike`: what the video pipeline needs from a segmenter.

`Segmenter` (model/segmenter.py) has all of it. Stand-ins (the colour-threshold fake of the
tests, wrappers) need only the required part; the optional parts below are separate protocols,
asked for in this one module, because a numpy stand-in has no device, no test-time resize and
nothing to compile.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from streamseg.errors import UserError

if TYPE_CHECKING:
    from streamseg.model.network_outputs import NetworkOutputs
    from streamseg.model.outputs import FrameSegmentation
    from streamseg.model.vocab import Vocabulary


class SegmenterLike(Protocol):
    """The required part: segment frames with a vocabulary, and say which model it is."""

    @property
    def model_id(self) -> str:
        """Model name and weights hash (recorded in the store, part of its identity)."""
        ...

    @property
    def weights_sha256(self) -> str: ...

    @property
    def vocabulary(self) -> Vocabulary | None:
        """The current vocabulary (None before `set_vocabulary`)."""
        ...

    def set_vocabulary(self, classes: Any, cache_dir: str | Path | None = ...) -> Vocabulary:
        """Set the classes (a `Vocabulary`, CLI string or list); "auto" = the disk cache."""
        ...

    def segment(
        self, frames: Sequence[np.ndarray], output_size: tuple[int, int] | None = None
    ) -> list[FrameSegmentation]:
        """One `FrameSegmentation` per (H, W, 3) uint8 frame, panoptic at `output_size`."""
        ...


@runtime_checkable
class PlacedSegmenter(Protocol):
    """Optional: runs on a torch device (autocast needs its type)."""

    device: Any


@runtime_checkable
class ResizingSegmenter(Protocol):
    """Optional: wants frames at a test-time size (decoding resizes to it, cheaply)."""

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) the model wants for a (height, width) source."""
        ...


@runtime_checkable
class TwoStepSegmenter(Protocol):
    """Optional: the network and the post-processing as two calls, so that a CPU run can
    overlap them across batches. A class that has them must make `segment` equal to
    `segment_outputs(run_network(frames), output_size)`: a run may call either. Asked of the
    class (`issubclass`), not the instance, so a wrapper forwarding names stays one step."""

    def run_network(self, frames: Sequence[np.ndarray]) -> NetworkOutputs: ...

    def segment_outputs(
        self, outputs: NetworkOutputs, output_size: tuple[int, int] | None = None
    ) -> list[FrameSegmentation]: ...


@runtime_checkable
class CompilableSegmenter(Protocol):
    """Optional: can run its network through torch.compile (`--compile`)."""

    def compile(self) -> None: ...


def segmenter_device(segmenter: SegmenterLike) -> Any:
    """The segmenter's torch device; "cpu" for a stand-in without one (autocast on CPU)."""
    return segmenter.device if isinstance(segmenter, PlacedSegmenter) else "cpu"


def segmenter_input_size(
    segmenter: SegmenterLike, height: int, width: int
) -> tuple[int, int] | None:
    """The (H, W) to decode frames at; None (source size) for a stand-in that resizes itself."""
    if isinstance(segmenter, ResizingSegmenter):
        size = segmenter.input_size(height, width)
        return int(size[0]), int(size[1])
    return None


def compile_segmenter(segmenter: object) -> None:
    """`segmenter.compile()` for `ModelSettings.compile` (the compile happens at the first
    batch); a stand-in segmenter without that method is a UserError."""
    if not isinstance(segmenter, CompilableSegmenter):
        raise UserError(f"--compile: {type(segmenter).__name__} has no compile()")
    segmenter.compile()
