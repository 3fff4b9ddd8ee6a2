"""What the `Segmenter` returns per frame: the contract between the model and everything
downstream (tracker, store, image writer, app). Plain numpy so that consumers never touch
the model's device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Segment:
    """One panoptic segment of one frame.

    Attributes:
        id: value of this segment's pixels in `FrameSegmentation.panoptic` (1, 2, ...).
        class_id: index of the class in the segmenter's vocabulary.
        score: the class probability of the query that produced the segment.
        area: number of pixels in the panoptic map at the output size.
        bbox: COCO box `(x, y, width, height)` in output pixels.
        is_thing: True for countable objects (instances), False for stuff.
    """

    id: int
    class_id: int
    score: float
    area: int
    bbox: tuple[int, int, int, int]
    is_thing: bool


@dataclass
class FrameSegmentation:
    """Panoptic result of one frame.

    Attributes:
        panoptic: (H, W) int32 segment id per pixel, 0 = no segment.
        segments: one entry per id present in `panoptic`, in id order.
        embeddings: (N, D) float32, row i = L2-normalized mask-pooled CLIP feature of
            segments[i] (used by the tracker to re-identify objects).
    """

    panoptic: np.ndarray
    segments: list[Segment] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
