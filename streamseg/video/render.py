"""Overlay video: coloured masks, outlines, class names and track ids over the source frames.

`draw_overlay` is a pure function (image + label map -> image) shared by still images and
video. `OverlayWriter` encodes an overlay mp4 a browser plays: H.264 yuv420p (libx264, crf 23,
preset veryfast, +faststart), at the source size padded to even dimensions, with the source
frames' own timestamps (variable frame rate kept) and the source audio copied (AAC / MP3 /
Opus packets as they are, other codecs re-encoded to AAC).

`render_store` redraws an overlay from a label store and its source video without the model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import numpy as np

from streamseg.errors import UserError

# Share of the track colour in a mask pixel (the rest is the source image).
MASK_ALPHA = 0.5
# Audio codecs copied into mp4 as they are (browsers play them); others are re-encoded to AAC.
COPY_AUDIO_CODECS = frozenset({"aac", "mp3", "opus"})
ENCODER_OPTIONS = {"crf": "23", "preset": "veryfast"}
_GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def track_color(track_id: int) -> tuple[int, int, int]:
    """A stable, well-spread RGB colour for a track id (hue stepped by the golden ratio, so
    consecutive ids get very different hues). Id 0 (unlabeled) is black."""
    if track_id == 0:
        return (0, 0, 0)
    hue = (track_id * _GOLDEN_RATIO_CONJUGATE) % 1.0
    saturation = 0.65 + 0.3 * ((track_id * 7) % 3) / 2  # 0.65, 0.8 or 0.95
    value = 0.95
    return _hsv_to_rgb(hue, saturation, value)


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    sector = int(hue * 6) % 6
    fraction = hue * 6 - math.floor(hue * 6)
    p = value * (1 - saturation)
    q = value * (1 - fraction * saturation)
    t = value * (1 - (1 - fraction) * saturation)
    red, green, blue = [
        (value, t, p),
        (q, value, p),
        (p, value, t),
        (p, q, value),
        (t, p, value),
        (value, p, q),
    ][sector]
    return (round(red * 255), round(green * 255), round(blue * 255))


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map (ids must not blend).

    Args:
        labels: (h, w) integer ids.
    Returns:
        (height, width) same dtype; each output pixel takes the label under its centre.
    """
    if labels.shape == (height, width):
        return labels
    rows = ((np.arange(height) + 0.5) * labels.shape[0] / height).astype(np.int64)
    cols = ((np.arange(width) + 0.5) * labels.shape[1] / width).astype(np.int64)
    return labels[rows[:, None], cols[None, :]]


def outline_width(height: int, width: int) -> int:
    """Outline thickness in pixels: 1 up to about 600 px, 3 at 1080p, so outlines stay
    visible when a video is watched scaled down."""
    return max(1, round(min(height, width) / 360))


def label_boundaries(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels of a labelled region within `width` pixels of a different label (4-steps).

    Args:
        labels: (H, W) integer ids, 0 = unlabeled.
        width: outline thickness, grown inward (each extra pixel stays in its own region).
    Returns:
        (H, W) bool, True on the inner edge of every region with id > 0.
    """
    # same_rows[i, x]: pixel (i, x) and (i + 1, x) share a label; same_cols likewise.
    same_rows = labels[1:, :] == labels[:-1, :]
    same_cols = labels[:, 1:] == labels[:, :-1]
    edge = np.zeros(labels.shape, bool)
    edge[1:, :] |= ~same_rows
    edge[:-1, :] |= ~same_rows
    edge[:, 1:] |= ~same_cols
    edge[:, :-1] |= ~same_cols
    for _ in range(width - 1):
        grown = edge.copy()
        grown[1:, :] |= edge[:-1, :] & same_rows
        grown[:-1, :] |= edge[1:, :] & same_rows
        grown[:, 1:] |= edge[:, :-1] & same_cols
        grown[:, :-1] |= edge[:, 1:] & same_cols
        edge = grown
    return edge & (labels > 0)


def draw_overlay(
    image: np.ndarray,
    labels: np.ndarray,
    names: Mapping[int, str] | None = None,
    alpha: float = MASK_ALPHA,
    outlines: bool = True,
    text: bool = True,
) -> np.ndarray:
    """Colour every labelled region of an image, outline it and write its name and track id.

    Args:
        image: (H, W, 3) uint8 RGB.
        labels: (h, w) int track ids, 0 = unlabeled; resized (nearest) to (H, W) if needed.
        names: class name per track id (text "name 7"; ids without a name show "#7").
        alpha: colour share inside masks (0 = image only, 1 = flat colour).
        outlines: draw region boundaries in full colour.
        text: write "name id" at each region.
    Returns:
        (H, W, 3) uint8 RGB, a new array.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    height, width = image.shape[:2]
    labels = resize_labels(np.asarray(labels), height, width)
    ids, slot = _slots(labels)
    if ids.size == 0:
        return image.copy()
    palette = np.zeros((ids.size + 1, 3), np.uint16)
    palette[1:] = [track_color(int(track_id)) for track_id in ids]
    # Integer blend in 1/256 steps, per slot: (image * (256 - a) + colour * a + 128) >> 8,
    # with a = 0 outside masks; whole-image table lookups beat boolean-mask gathers 2x.
    weight = np.full(ids.size + 1, int(round(alpha * 256)), np.uint16)
    weight[0] = 0
    keep = (256 - weight)[slot][..., None]
    tint = (palette * weight[:, None] + 128)[slot]
    out = ((image * keep + tint) >> 8).astype(np.uint8)
    if outlines:
        edge = label_boundaries(labels, width=outline_width(height, width))
        out[edge] = palette[slot[edge]].astype(np.uint8)
    if text:
        out = _draw_names(out, labels, ids, names or {})
    return out


def _slots(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ids present (> 0, sorted) and each pixel's 1-based position among them (0 = none).

    Returns:
        ids: (N,) ints; slot: labels' shape, integer.
    """
    largest = int(labels.max()) if labels.size else 0
    if largest <= 0:
        return np.zeros(0, np.int64), np.zeros(labels.shape, np.intp)
    if largest < 1 << 22 and int(labels.min()) >= 0:
        # Small ids (the usual case): a counting pass and a table lookup, no sort.
        present = np.bincount(labels.ravel(), minlength=largest + 1) > 0
        present[0] = False
        ids = np.flatnonzero(present)
        table = np.zeros(largest + 1, np.int32)
        table[ids] = np.arange(1, ids.size + 1)
        return ids, table[labels]
    ids = np.unique(labels)
    ids = ids[ids > 0]
    slot = np.searchsorted(ids, labels) + 1
    slot[labels <= 0] = 0
    return ids, slot


def _draw_names(
    image: np.ndarray, labels: np.ndarray, ids: np.ndarray, names: Mapping[int, str]
) -> np.ndarray:
    """Write "name id" on a dark box at the labelled pixel nearest each region's centre."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = labels.shape
    font_size = max(8, min(height, width) // 28)
    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        font = ImageFont.load_default()
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    # Place names on a grid of about 256 x 256 samples: per-region searches stay cheap on
    # large frames and the position is still within a few pixels.
    step = max(1, max(height, width) // 256)
    coarse = labels[step // 2 :: step, step // 2 :: step]
    for track_id in ids.tolist():
        ys, xs = np.nonzero(coarse == track_id)
        if ys.size == 0:  # a region thinner than the grid
            ys, xs = np.nonzero(labels == track_id)
        else:
            ys, xs = ys * step + step // 2, xs * step + step // 2
        # The region's pixel nearest its centroid: inside the region even when it is not convex.
        nearest = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
        name = names.get(track_id)
        label = f"{name} {track_id}" if name else f"#{track_id}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        box_w, box_h = right - left + 4, bottom - top + 4
        x = int(np.clip(xs[nearest] - box_w // 2, 0, max(0, width - box_w)))
        y = int(np.clip(ys[nearest] - box_h // 2, 0, max(0, height - box_h)))
        draw.rectangle((x, y, x + box_w - 1, y + box_h - 1), fill=(0, 0, 0))
        draw.text((x + 2 - left, y + 2 - top), label, fill=track_color(track_id), font=font)
    return np.asarray(canvas)


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
        import av

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
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
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
