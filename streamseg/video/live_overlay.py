"""A growing overlay video a player can follow while it is written (live runs).

`.ts` gives MPEG-TS; `.mp4` / `.m4v` / `.mov` give fragmented MP4 (`movflags
frag_keyframe+empty_moov+default_base_moof`: no index at the end, a fragment at every keyframe),
so a file cut by a crash still plays up to its last fragment. H.264 (`tune=zerolatency`, no
frame delay) yuv420p, a keyframe every `gop` frames, timestamps from the frames' own times.
Same `write(...)` as render.OverlayWriter, so the pipeline's writer thread drives either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import numpy as np

from streamseg.errors import UserError
from streamseg.outputs import OVERLAY_COMMENT
from streamseg.video.draw import draw_overlay
from streamseg.video.overlay_encoder import LIVE_ENCODER_OPTIONS, encoder_frame

TIME_BASE = Fraction(1, 90000)  # MPEG-TS clock
FRAGMENTED_MP4 = "frag_keyframe+empty_moov+default_base_moof"


class LiveOverlayWriter:
    """Encode overlay frames into a growing MPEG-TS or fragmented MP4 file."""

    def __init__(
        self, path: str | Path, size: tuple[int, int], alpha: float = 0.5, gop: int = 25
    ) -> None:
        import av

        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self.alpha = alpha
        self.frames_written = 0
        self._first: float | None = None
        self._last_pts = -1
        self._scaler: object | None = None
        height, width = self.size
        self._padded = (height + height % 2, width + width % 2)
        suffix = self.path.suffix.lower()
        if suffix == ".ts":
            fmt, options = "mpegts", {}
        elif suffix in (".mp4", ".m4v", ".mov"):
            fmt, options = "mp4", {"movflags": FRAGMENTED_MP4}
        else:
            raise UserError(f"{self.path}: a live overlay must be .ts or .mp4 (fragmented)")
        folder = self.path.resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise UserError(f"{self.path}: cannot write (folder {folder} is not writable)")
        self._container = av.open(str(self.path), "w", format=fmt, options=options)
        self._container.metadata["comment"] = OVERLAY_COMMENT  # see streamseg.outputs
        self._video = self._container.add_stream(
            "libx264",
            rate=25,
            options={**LIVE_ENCODER_OPTIONS, "g": str(gop)},
        )
        self._video.width, self._video.height = self._padded[1], self._padded[0]
        self._video.pix_fmt = "yuv420p"
        self._video.codec_context.time_base = TIME_BASE
        self._video.time_base = TIME_BASE

    def write(
        self,
        image: np.ndarray,
        labels: np.ndarray | None = None,
        names: Mapping[int, str] | None = None,
        pts: int | None = None,
        time: float | None = None,
    ) -> None:
        """Encode one frame (image (H, W, 3) uint8 at any size; labels drawn over it) at its
        own `time` in seconds, counted from the first frame written (pts is ignored: live
        sources may restart their clock on reconnect; times that do not increase are moved
        just past the previous frame)."""
        image = self._fit(np.asarray(image))
        if labels is not None:
            image = draw_overlay(image, labels, names, alpha=self.alpha)
        if self._padded != self.size:
            padded = np.zeros((*self._padded, 3), np.uint8)
            padded[: self.size[0], : self.size[1]] = image
            image = padded
        seconds = 0.0 if time is None else float(time)
        if self._first is None:
            self._first = seconds
        value = max(round((seconds - self._first) / TIME_BASE), self._last_pts + 1)
        self._last_pts = value
        frame = encoder_frame(image)
        frame.pts = value
        frame.time_base = TIME_BASE
        self._container.mux(self._video.encode(frame))
        self.frames_written += 1

    def _fit(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] == self.size:
            return image
        import av
        from av.video.reformatter import VideoReformatter

        if self._scaler is None:
            self._scaler = VideoReformatter()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        return self._scaler.reformat(  # type: ignore[attr-defined]
            frame, width=self.size[1], height=self.size[0], format="rgb24"
        ).to_ndarray()

    def close(self) -> None:
        if self._container is None:
            return
        try:
            self._container.mux(self._video.encode(None))
        finally:
            self._container.close()
            self._container = None
