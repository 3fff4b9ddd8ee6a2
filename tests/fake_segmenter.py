"""A deterministic stand-in for `Segmenter` (colour thresholds) and a moving-blobs video.

Used by the pipeline tests (fast, exact) and by the kill-and-resume subprocess through the
`STREAMSEG_SEGMENTER_FACTORY=fake_segmenter:make_fake` test hook of `streamseg run`.

The video: a red square moving right, a blue square moving left (they cross), on a green
ground; the red square is hidden on some frames (`HIDDEN`).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import av
import numpy as np

from streamseg.model.network_outputs import NetworkOutputs
from streamseg.model.outputs import FrameSegmentation, Segment
from streamseg.model.vocab import Vocabulary, parse_vocab

HIDDEN = range(10, 13)
GROUND = (40, 140, 40)


def blob_frame(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(H, W, 3) uint8 frame `index` of the moving-blobs video."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = GROUND
    size = 12
    x_red = (2 + 2 * index) % (width - size)
    x_blue = width - size - 2 - (2 * index) % (width - size)
    if index not in HIDDEN:
        image[8 : 8 + size, x_red : x_red + size] = (230, 20, 20)
    image[24 : 24 + size, x_blue : x_blue + size] = (20, 20, 230)
    return image


def make_blob_video(path: Path | str, frames: int = 24, height: int = 48, width: int = 64) -> Path:
    """Write the moving-blobs video (H.264, 12.5 fps) to `path`."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "12", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(blob_frame(index, height, width), format="rgb24")
            frame.pts = index * 2  # 12.5 fps in a 1/25 time base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


class FakeSegmenter:
    """`segment(frames, output_size)` by colour thresholds; embeddings = mean colour."""

    model_id = "fake-colour@sha256:0"
    weights_sha256 = "0"

    def __init__(self, delay: float = 0.0) -> None:
        self.vocabulary = parse_vocab("red,blue,ground", stuff="ground")
        self.delay = delay
        self.calls: list[int] = []

    def set_vocabulary(self, classes: object, cache_dir: object = None) -> Vocabulary:
        return self.vocabulary

    def segment(
        self, frames: list[np.ndarray], output_size: tuple[int, int] | None = None
    ) -> list[FrameSegmentation]:
        self.calls.append(len(frames))
        if self.delay:
            time.sleep(self.delay)
        return [self._one(np.asarray(frame), output_size) for frame in frames]

    def _one(self, frame: np.ndarray, output_size: tuple[int, int] | None) -> FrameSegmentation:
        height, width = output_size or frame.shape[:2]
        rows = ((np.arange(height) + 0.5) * frame.shape[0] / height).astype(int)
        cols = ((np.arange(width) + 0.5) * frame.shape[1] / width).astype(int)
        image = frame[rows[:, None], cols[None, :]].astype(np.int32)
        r, g, b = image[..., 0], image[..., 1], image[..., 2]
        masks = [
            (r > 150) & (g < 100) & (b < 100),
            (b > 150) & (r < 100) & (g < 100),
            (g > 90) & (r < 100) & (b < 100),
        ]
        panoptic = np.zeros((height, width), np.int32)
        segments, embeddings = [], []
        for class_id, mask in enumerate(masks):
            if mask.sum() < 4:
                continue
            seg_id = len(segments) + 1
            panoptic[mask] = seg_id
            ys, xs = np.nonzero(mask)
            box = (int(xs.min()), int(ys.min()), int(np.ptp(xs) + 1), int(np.ptp(ys) + 1))
            score = round(0.9 - 0.1 * class_id, 3)
            segments.append(Segment(seg_id, class_id, score, int(mask.sum()), box, class_id < 2))
            colour = image[mask].mean(axis=0).astype(np.float32)
            embeddings.append(colour / np.linalg.norm(colour))
        emb = np.array(embeddings, np.float32).reshape(len(segments), 3)
        return FrameSegmentation(panoptic=panoptic, segments=segments, embeddings=emb)


class TwoStepFake(FakeSegmenter):
    """The colour fake as two steps; notes the thread of each step."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: dict[str, set[str]] = {"network": set(), "post": set(), "segment": set()}
        self.torch_threads: list[int] = []

    def run_network(self, frames):  # noqa: ANN001, ANN201 - test double
        import torch

        self.threads["network"].add(threading.current_thread().name)
        self.torch_threads.append(torch.get_num_threads())
        images = [np.asarray(f) for f in frames]
        return NetworkOutputs([{"image": i} for i in images], [i.shape[:2] for i in images])

    def segment_outputs(self, outputs, output_size=None):  # noqa: ANN001, ANN201
        self.threads["post"].add(threading.current_thread().name)
        return FakeSegmenter.segment(self, [f["image"] for f in outputs.frames], output_size)

    def segment(self, frames, output_size=None):  # noqa: ANN001, ANN201
        self.threads["segment"].add(threading.current_thread().name)
        return super().segment(frames, output_size)


class ForwardingWrapper:
    """Changes `segment`, hands every other name to the wrapped segmenter."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def segment(self, frames, output_size=None):  # noqa: ANN001, ANN201
        self.calls += 1
        return self.inner.segment(frames, output_size)


def make_fake() -> FakeSegmenter:
    """Factory for the test hook (delay per batch from FAKE_SEGMENTER_DELAY seconds)."""
    return FakeSegmenter(delay=float(os.environ.get("FAKE_SEGMENTER_DELAY", "0")))
