"""Overlay video: the source frames with masks, outlines, class names and track ids drawn on.

`OverlayWriter` encodes an overlay mp4 a browser plays: H.264 yuv420p (libx264, crf 23,
preset superfast, chosen in overlay_encoder.py; +faststart), at the source size padded to
even dimensions, with the source frames' own timestamps (variable frame rate kept) and the
source audio copied (AAC / MP3 / Opus packets as they are, other codecs re-encoded to AAC).
The drawing itself is draw.py's `draw_overlay` (re-exported here); `redraw.render_store`
redraws an overlay from a store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import numpy as np

from streamseg.errors import UserError
from streamseg.outputs import OVERLAY_COMMENT
from streamseg.video.draw import (
    MASK_ALPHA,
    draw_overlay,
    label_boundaries,
    outline_width,
    resize_labels,
    track_color,
)
from streamseg.video.overlay_encoder import ENCODER_OPTIONS, encoder_frame

__all__ = [
    "MASK_ALPHA",
    "OverlayWriter",
    "draw_overlay",
    "label_boundaries",
    "outline_width",
    "resize_labels",
    "track_color",
]

# Audio codecs copied into mp4 as they are (browsers play them); others are re-encoded to AAC.
COPY_AUDIO_CODECS = frozenset({"aac", "mp3", "opus"})


class OverlayWriter:
    """Write frames (optionally with labels drawn over them) to a browser-playable mp4.

    Usage:
        with OverlayWriter("out.mp4", size=(H, W), time_base=Fraction(1, 12800),
                           audio_from="in.mp4") as writer:
            for frame, labels in ...:
                writer.write(frame.image, labels, names, pts=frame.pts)

    Frames keep the pts they are given (in `time_base`), so a variable frame rate and the
    source's timing survive; a pts that does not increase is moved just past the previous one
    (H.264 in mp4 needs strictly increasing timestamps). Odd sizes are padded with black to
    even ones (libx264 yuv420p needs even sizes).
    """

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int],
        time_base: Fraction | str = Fraction(1, 25),
        audio_from: str | Path | None = None,
        rate: float | Fraction | None = None,
        alpha: float = MASK_ALPHA,
        audio_stream: int = 0,
    ) -> None:
        """
        Args:
            path: output .mp4.
            size: (H, W) of the frames (source upright size); images of another size are
                resized to it.
            time_base: the unit of the pts given to `write` (the source stream's time base).
            audio_from: a media file whose audio is copied into the overlay (None: no audio).
            rate: nominal frame rate for the encoder's rate control (timestamps decide timing).
            alpha: colour share inside masks.
            audio_stream: which audio stream of `audio_from`.
        """
        import av

        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self.time_base = Fraction(time_base)
        self.alpha = alpha
        self.frames_written = 0
        self._last_pts: int | None = None
        self._first_time: float | None = None
        self._last_time: float | None = None
        self._last_gap = 0.0
        self._scaler: object | None = None
        height, width = self.size
        self._padded = (height + height % 2, width + width % 2)
        folder = self.path.parent
        if not folder.is_dir():
            raise UserError(f"{self.path}: cannot write (folder {folder} does not exist)")
        if not os.access(folder, os.W_OK):
            raise UserError(f"{self.path}: cannot write (folder {folder} is not writable)")
        try:
            self._container = av.open(str(self.path), "w", options={"movflags": "+faststart"})
            self._container.metadata["comment"] = OVERLAY_COMMENT  # see streamseg.outputs
        except (OSError, av.error.FFmpegError) as error:
            raise UserError(f"{self.path}: cannot write ({_reason(error)})") from None
        try:
            rate = Fraction(rate).limit_denominator(1001) if rate else Fraction(25)
            self._rate = rate
            self._video = self._container.add_stream(
                "libx264", rate=rate, options=dict(ENCODER_OPTIONS)
            )
            self._video.width, self._video.height = self._padded[1], self._padded[0]
            self._video.pix_fmt = "yuv420p"
            self._video.codec_context.time_base = self.time_base
            self._video.time_base = self.time_base
            self._audio = _AudioCopier(audio_from, audio_stream, self._container)
        except BaseException:
            self._container.close()
            raise

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def write(
        self,
        image: np.ndarray,
        labels: np.ndarray | None = None,
        names: Mapping[int, str] | None = None,
        pts: int | None = None,
        time: float | None = None,
    ) -> None:
        """Encode one frame.

        Args:
            image: (H, W, 3) uint8 RGB (resized to the writer's size if different).
            labels: (h, w) int track ids to draw (None: the image as it is).
            names: class name per track id.
            pts: timestamp in `time_base` units; else taken from `time` (seconds); else the
                next frame at the nominal rate.
        """
        image = self._fit(image)
        if labels is not None:
            image = draw_overlay(image, labels, names, alpha=self.alpha)
        if self._padded != self.size:
            padded = np.zeros((*self._padded, 3), np.uint8)
            padded[: self.size[0], : self.size[1]] = image
            image = padded
        if pts is None:
            if time is not None:
                pts = round(time / self.time_base)
            elif self._last_pts is None:
                pts = 0
            else:
                pts = self._last_pts + max(1, round(1 / (self._rate * self.time_base)))
        pts = int(pts)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        frame = encoder_frame(image)
        frame.pts = pts
        frame.time_base = self.time_base
        seconds = float(pts * self.time_base)
        if self._first_time is None:
            self._first_time = seconds
            self._audio.start(seconds)
        if self._last_time is not None:
            self._last_gap = seconds - self._last_time
        self._last_time = seconds
        self._last_pts = pts
        # Audio up to this frame's time first, so the file stays interleaved.
        self._audio.copy_until(seconds)
        self._container.mux(self._video.encode(frame))
        self.frames_written += 1

    def _fit(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        if image.shape[:2] == self.size:
            return image
        import av
        from av.video.reformatter import VideoReformatter

        if self._scaler is None:  # one swscale context for all frames (cheaper than one each)
            self._scaler = VideoReformatter()
        height, width = self.size
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        return self._scaler.reformat(
            frame, width=width, height=height, format="rgb24", interpolation="BILINEAR"
        ).to_ndarray()

    def close(self) -> None:
        """Flush the encoder, copy the audio up to the end of the last frame, finish the file."""
        if self._container is None:
            return
        try:
            self._container.mux(self._video.encode(None))
            if self._last_time is not None:
                self._audio.copy_until(self._last_time + max(self._last_gap, 0.0), final=True)
        finally:
            self._audio.close()
            self._container.close()
            self._container = None


class _AudioCopier:
    """Copies (or re-encodes to AAC) one audio stream of a source into the overlay, in step
    with the video so the output stays interleaved."""

    def __init__(self, source: str | Path | None, stream_index: int, output: object) -> None:
        import av

        self._input = None
        self._packets = None
        self._pending = None
        self._start = 0.0
        self._transcode = False
        self._next_sample: int | None = None
        self._first_sample = 0
        self._flushed = False
        if source is None:
            return
        try:
            source_container = av.open(str(source))
        except (OSError, av.error.FFmpegError):
            return  # the video is what matters; a source without readable audio gets none
        streams = list(source_container.streams.audio)
        if stream_index >= len(streams):
            source_container.close()
            return
        self._input = source_container
        self._source_stream = streams[stream_index]
        name = self._source_stream.codec_context.name
        if name in COPY_AUDIO_CODECS:
            self._output_stream = output.add_stream_from_template(self._source_stream)  # type: ignore[attr-defined]
        else:
            self._transcode = True
            rate = self._source_stream.codec_context.sample_rate or 48000
            self._output_stream = output.add_stream("aac", rate=rate)  # type: ignore[attr-defined]
            self._output_stream.layout = "stereo" if self._source_stream.channels > 1 else "mono"
        self._output = output

    def start(self, first_video_time: float) -> None:
        if self._input is None:
            return
        self._start = first_video_time
        self._packets = self._input.demux(self._source_stream)

    def copy_until(self, until: float, final: bool = False) -> None:
        """Mux the source's audio packets that start before `until` seconds (and end after
        the first video frame). With `final`, flush the re-encoder too."""
        import av

        while self._packets is not None:
            if self._pending is None:
                try:
                    self._pending = next(self._packets)
                except (StopIteration, av.error.FFmpegError):
                    self._packets = None
                    break
            packet = self._pending
            if packet.size == 0 or packet.pts is None:
                self._pending = None
                continue
            begin = float(packet.pts * packet.time_base)
            if begin >= until - 1e-9:
                break
            self._pending = None
            end = begin + float((packet.duration or 0) * packet.time_base)
            if end < self._start - 0.05:
                continue  # before the overlay starts (a rendered time window)
            self._mux(packet)
        if final and self._transcode and self._next_sample is not None and not self._flushed:
            self._flushed = True
            self._pad_last_frame()
            self._output.mux(self._output_stream.encode(None))  # type: ignore[attr-defined]

    def _pad_last_frame(self) -> None:
        """Complete the encoder's last frame with silence: PyAV's encoder buffers samples into
        whole frames (1024 for AAC) and drops a partial last one at flush."""
        import av

        context = self._output_stream.codec_context  # type: ignore[attr-defined]
        if self._next_sample is None or not context.frame_size:
            return
        missing = -(self._next_sample - self._first_sample) % context.frame_size
        if missing == 0:
            return
        # Silence in the decoded frames' own format: the encoder's resampler was set up on it.
        fmt, layout = self._source_format
        silence = av.AudioFrame(format=fmt, layout=layout, samples=missing)
        for plane in silence.planes:
            plane.update(bytes(plane.buffer_size))
        silence.sample_rate = context.sample_rate
        silence.pts = self._next_sample
        silence.time_base = Fraction(1, context.sample_rate)
        self._next_sample += missing
        self._output.mux(self._output_stream.encode(silence))  # type: ignore[attr-defined]

    def _mux(self, packet: object) -> None:
        import av

        if not self._transcode:
            packet.stream = self._output_stream  # type: ignore[attr-defined]
            self._output.mux(packet)  # type: ignore[attr-defined]
            return
        try:
            frames = self._source_stream.decode(packet)
        except av.error.FFmpegError:
            return  # a damaged audio packet: a short gap, not a failed overlay
        rate = self._output_stream.codec_context.sample_rate  # type: ignore[attr-defined]
        for frame in frames:
            # Count samples from the first packet's time, so a rendered window keeps sync.
            if self._next_sample is None:
                self._next_sample = self._first_sample = round((frame.time or 0.0) * rate)
            frame.pts = self._next_sample
            frame.time_base = Fraction(1, rate)
            self._source_format = (frame.format.name, frame.layout.name)
            self._next_sample += frame.samples
            self._output.mux(self._output_stream.encode(frame))  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._input is not None:
            self._input.close()
            self._input = None


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error)
