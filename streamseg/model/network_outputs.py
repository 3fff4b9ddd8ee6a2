"""`NetworkOutputs`: one batch between the network and the panoptic post-processing.

`Segmenter.segment` is `segment_outputs(run_network(frames))`; the two halves are public so
that a CPU run can pipeline them, the next batch's forward in one thread while this one is
post-processed in another (video/segment_track.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NetworkOutputs:
    """The network's per-frame outputs for one batch, on the model's device.

    Attributes:
        frames: per frame, the tensors `Segmenter.segment_raw` documents (one frame's row of
            each), with "image_size" and "padded_size".
        frame_sizes: per frame, the (H, W) of the frame given: the default output size.
    """

    frames: list[dict[str, Any]]
    frame_sizes: list[tuple[int, int]]
