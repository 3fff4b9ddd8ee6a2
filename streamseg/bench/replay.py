"""`ReplaySegmenter`: a recorded batch of real model outputs, replayed in place of the network.

The capacity mode of `streamseg bench` (bench/capacity.py) records the `FrameSegmentation`s a
real segmenter returns for one batch, then runs the unchanged `run_video` path (decode, filter,
track, store, overlay) with this stand-in: what is left is the pipeline's own ceiling, the
frames per second of everything but the forward. Each call returns fresh copies of the
recorded outputs, cycling through them frame by frame, so that nothing downstream can change
the recording and the copy costs what the real segmenter's freshly allocated outputs cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from streamseg.model.outputs import FrameSegmentation
from streamseg.model.precision import autocast
from streamseg.model.segmenter_like import (
    SegmenterLike,
    segmenter_device,
    segmenter_input_size,
)
from streamseg.model.vocab import Vocabulary


def copy_segmentation(segmentation: FrameSegmentation) -> FrameSegmentation:
    """A deep copy: new label map and embeddings (segments are frozen, shared safely)."""
    return replace(
        segmentation,
        panoptic=np.array(segmentation.panoptic, copy=True),
        segments=list(segmentation.segments),
        embeddings=np.array(segmentation.embeddings, copy=True),
    )


class ReplaySegmenter:
    """`SegmenterLike` that returns copies of recorded outputs, cyclically, one per frame.

    Frames are decoded as the recorded model wants them (`input_size`), so that the decode
    stage does the same work as in a real run; their content is ignored.
    """

    def __init__(
        self,
        recorded: Sequence[FrameSegmentation],
        *,
        vocabulary: Vocabulary,
        model_id: str = "replay",
        weights_sha256: str = "0",
        input_size: Callable[[int, int], tuple[int, int]] | None = None,
    ) -> None:
        if not recorded:
            raise ValueError("ReplaySegmenter: nothing recorded")
        shapes = {tuple(s.panoptic.shape) for s in recorded}
        if len(shapes) != 1:
            raise ValueError(f"ReplaySegmenter: recorded outputs of several sizes {shapes}")
        self._recorded = [copy_segmentation(s) for s in recorded]
        self._size: tuple[int, int] = shapes.pop()  # type: ignore[assignment]
        self._vocabulary = vocabulary
        self._model_id = model_id
        self._weights_sha256 = weights_sha256
        self._input_size = input_size
        self._next = 0
        self.frames_replayed = 0

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def weights_sha256(self) -> str:
        return self._weights_sha256

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    @property
    def recorded(self) -> list[FrameSegmentation]:
        """The recording (copies: changing them does not change the replay)."""
        return [copy_segmentation(s) for s in self._recorded]

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of the recorded label maps: the only output size it can replay."""
        return self._size

    def set_vocabulary(self, classes: Any, cache_dir: Any = None) -> Vocabulary:
        """The recorded vocabulary; another one is an error (class ids refer to it)."""
        names = _names(classes)
        if names is not None and names != list(self._vocabulary.names):
            raise ValueError(
                "ReplaySegmenter: recorded with another vocabulary "
                f"({', '.join(self._vocabulary.names)})"
            )
        return self._vocabulary

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the recorded model decodes a (height, width) source at."""
        if self._input_size is None:
            return height, width
        size = self._input_size(height, width)
        return int(size[0]), int(size[1])

    def segment(
        self, frames: Sequence[np.ndarray], output_size: tuple[int, int] | None = None
    ) -> list[FrameSegmentation]:
        """Copies of the next len(frames) recorded outputs (cyclic).

        Raises:
            ValueError: an output size other than the recorded one.
        """
        if output_size is not None and tuple(output_size) != self._size:
            raise ValueError(
                f"ReplaySegmenter: recorded at {self._size}, asked for {tuple(output_size)}"
            )
        out = []
        for _ in frames:
            out.append(copy_segmentation(self._recorded[self._next]))
            self._next = (self._next + 1) % len(self._recorded)
        self.frames_replayed += len(out)
        return out


def record_batch(
    segmenter: SegmenterLike,
    frames: Sequence[np.ndarray],
    output_size: tuple[int, int],
    precision: str = "fp32",
) -> ReplaySegmenter:
    """Segment one batch with the real `segmenter` (as `run_video` does: autocast in
    `precision`) and return a `ReplaySegmenter` of its outputs.

    The segmenter's vocabulary must be set; the replay keeps it, and decodes at its input size.
    """
    vocabulary = segmenter.vocabulary
    if vocabulary is None:
        raise ValueError("record_batch: set the segmenter's vocabulary first")
    with autocast(segmenter_device(segmenter), precision):
        outputs = segmenter.segment(list(frames), output_size=output_size)

    def input_size(height: int, width: int) -> tuple[int, int]:
        return segmenter_input_size(segmenter, height, width) or (height, width)

    return ReplaySegmenter(
        outputs,
        vocabulary=vocabulary,
        model_id=f"replay:{segmenter.model_id}",
        weights_sha256=str(segmenter.weights_sha256),
        input_size=input_size,
    )


def _names(classes: Any) -> list[str] | None:
    """Class names of what `set_vocabulary` was given; None when it names nothing."""
    if classes is None:
        return None
    if isinstance(classes, Vocabulary):
        return list(classes.names)
    if isinstance(classes, str):
        from streamseg.model.vocab import parse_vocab

        return list(parse_vocab(classes).names)
    return None
