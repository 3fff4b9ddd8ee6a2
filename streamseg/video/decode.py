"""Decode video frames with PyAV: upright RGB at the size you ask for, with their own timestamps.

`iter_frames(source, size=...)` yields `Frame`s one at a time (memory stays flat): the image is
converted to RGB and resized inside FFmpeg (libswscale, one call per frame), rotation metadata
is applied (phone videos come out upright), and `time` is the frame's own pts x time base, so
variable-frame-rate video and container start offsets keep their real timing.

Real files are messy; what this module does about it:
- any codec / container / pixel format the av wheel decodes (10-bit, gray and alpha formats
  are converted to 8-bit RGB by swscale);
- a corrupt packet mid-stream is skipped and counted in `DecodeStats` (decoding goes packet by
  packet, catching each packet's error), and a file cut short after its index yields the
  frames that are there;
- a missing, empty, unreadable or video-less file raises `UserError` naming the file.

A folder or glob of frame images is a source too (see sources.py); its frames are timed at
`index / fps`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from streamseg.errors import UserError
from streamseg.video.sources import list_image_frames, read_image

# Frame rate given to image sequences when the caller names none (a common dataset rate).
DEFAULT_IMAGE_FPS = 25.0
# Frame threading pays off only on large frames: on 2 cores it decoded 1280x720 H.264 1.15-1.4x
# faster and 320x240-640x480 no faster (slice threading, PyAV's default, is kept below this).
FRAME_THREADING_MIN_PIXELS = 1280 * 720
# swscale resampler: area averaging does not alias when shrinking to the model's input size.
INTERPOLATION = "AREA"


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        index: number of the frame in the source, counting every frame decoded (0 = first),
            so `stride` and `start` show as gaps.
        pts: presentation timestamp in the stream's time base (None if the file has none).
        time: the frame's own time in seconds (pts x time base; container start offsets kept).
        image: (H, W, 3) uint8 RGB, upright, at the requested size.
        source_size: (H, W) of the upright source frame.
        keyframe: the frame was coded as a keyframe.
        corrupt: the decoder flagged the frame as damaged (concealed errors).
        source_image: (H, W, 3) uint8 RGB at the upright source size, when asked for with
            `iter_frames(..., source_image=True)` (e.g. to draw an overlay at full size
            while the model gets a small `image`); None otherwise.
    """

    index: int
    pts: int | None
    time: float
    image: np.ndarray
    source_size: tuple[int, int]
    keyframe: bool = False
    corrupt: bool = False
    source_image: np.ndarray | None = None


@dataclass
class DecodeStats:
    """Counters filled while `iter_frames` runs (pass one in to read them afterwards)."""

    decoded: int = 0  # frames that came out of the decoder (before start/end/stride)
    yielded: int = 0  # frames given to the caller
    corrupt_packets: int = 0  # packets the decoder rejected (skipped)
    corrupt_frames: int = 0  # frames the decoder produced but flagged as damaged
    unreadable_images: int = 0  # image-sequence files that could not be read (skipped)
    truncated: bool = False  # the file ended early / could not be read to its end
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str, limit: int = 20) -> None:
        """Record a warning; after `limit` warnings only the counters keep counting."""
        if len(self.warnings) < limit:
            self.warnings.append(message)
        elif len(self.warnings) == limit:
            self.warnings.append("(further warnings not shown)")


@dataclass(frozen=True)
class VideoInfo:
    """Facts about a source, from its header and first frame (`probe`)."""

    path: str
    width: int  # upright
    height: int  # upright
    rotation: int  # display rotation applied, degrees counter-clockwise (0, 90, 180, 270)
    fps: float | None  # average frame rate (an estimate for VFR; None if unknown)
    duration: float | None  # seconds (None if unknown)
    frame_count: int | None  # from the header; an estimate (None if unknown)
    codec: str  # decoder name ("images" for an image sequence)
    pix_fmt: str | None
    start_time: float  # time of the first frame in seconds (container start offset)
    time_base: str  # the stream's time base as "num/den"
    has_audio: bool
    stream: int  # which video stream, counted among video streams
    video_streams: int
    container: str  # FFmpeg format name, or "images"

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) upright."""
        return (self.height, self.width)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def probe(source: str | Path, stream: int | None = None, fps: float | None = None) -> VideoInfo:
    """Read a source's facts: upright size, rotation, rate, duration, codec, audio, offset.

    Decodes the first frame (rotation and size are only reliable there).

    Raises:
        UserError: missing / empty / not a video / no video stream / nothing decodable.
    """
    images = list_image_frames(source)
    if images is not None:
        return _probe_images(source, images, fps)
    path = _check_file(source)
    with _open(path) as container:
        video = _select_stream(container, path, stream)
        first = None
        for frame in _decode(container, video, DecodeStats()):
            first = frame
            break
        if first is None:
            raise UserError(f"{path}: no video frame could be decoded")
        turns = _quarter_turns(first.rotation)
        width, height = first.width, first.height
        if turns % 2:
            width, height = height, width
        time_base = video.time_base or Fraction(1, 1)
        rate = video.average_rate or video.guessed_rate
        duration = None
        if video.duration is not None and video.duration > 0:
            duration = float(video.duration * time_base)
        elif container.duration is not None and container.duration > 0:
            duration = container.duration / 1_000_000
            if container.format.name.startswith("matroska") and container.start_time:
                # Matroska's duration counts from time 0, not from the first frame.
                duration -= container.start_time / 1_000_000
        frame_count = video.frames or None
        if frame_count is None and duration is not None and rate:
            frame_count = max(1, round(duration * float(rate)))
        first_time = first.time if first.time is not None else 0.0
        return VideoInfo(
            path=str(path),
            width=width,
            height=height,
            rotation=turns * 90,
            fps=float(rate) if rate else None,
            duration=duration,
            frame_count=frame_count,
            codec=video.codec_context.name,
            pix_fmt=first.format.name,
            start_time=float(first_time),
            time_base=f"{time_base.numerator}/{time_base.denominator}",
            has_audio=len(container.streams.audio) > 0,
            stream=list(container.streams.video).index(video),
            video_streams=len(container.streams.video),
            container=container.format.name,
        )


def iter_frames(
    source: str | Path,
    size: tuple[int, int] | None = None,
    stride: int = 1,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    stream: int | None = None,
    threads: int | str = "auto",
    stats: DecodeStats | None = None,
    fps: float | None = None,
    source_image: bool = False,
) -> Iterator[Frame]:
    """Yield the frames of a video file, or of a folder / glob of images, upright RGB.

    Args:
        source: video file, folder of frame images, or glob pattern ("clip/*.jpg").
        size: (H, W) of the output images (upright); None keeps the source size.
        stride: keep every `stride`-th frame, counting from the first frame kept.
        start: skip frames earlier than `start` seconds after the first frame.
        end: stop before the frame `end` seconds after the first frame.
        max_frames: stop after this many frames.
        stream: which video stream, counted among video streams (None = the default one).
        threads: "auto" (frame threading on large frames only), or a thread count
            (0 or 1 = single-threaded decoding).
        stats: filled with counts of decoded / corrupt / skipped frames and warnings.
        fps: frame rate of an image sequence (default 25); ignored for video files.
        source_image: also give each frame at the upright source size (`Frame.source_image`).

    Raises:
        UserError: missing / empty / not a video / no such video stream / nothing decodable;
            bad arguments.
    """
    if stride < 1:
        raise UserError(f"--stride: must be at least 1, got {stride}")
    if max_frames is not None and max_frames < 0:
        raise UserError(f"--max-frames: must be at least 0, got {max_frames}")
    if start is not None and end is not None and end <= start:
        raise UserError(f"--end ({end}) must be later than --start ({start})")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise UserError(f"size: must be (height, width) >= 1, got {size}")
    stats = stats if stats is not None else DecodeStats()
    images = list_image_frames(source)
    if images is not None:
        frames = _iter_image_frames(images, fps or DEFAULT_IMAGE_FPS, stats)
    else:
        frames = _iter_video_frames(_check_file(source), stream, threads, stats)
    yield from _select(frames, size, source_image, stride, start, end, max_frames, stats)


def _select(
    frames: Iterator[_Decoded],
    size: tuple[int, int] | None,
    source_image: bool,
    stride: int,
    start: float | None,
    end: float | None,
    max_frames: int | None,
    stats: DecodeStats,
) -> Iterator[Frame]:
    """Apply start / end / stride / max_frames; convert only the frames that are kept (the
    RGB conversion is most of the cost at small sizes)."""
    if max_frames == 0:
        return
    first_time: float | None = None
    first_kept: int | None = None
    given = 0  # not stats.yielded: a caller may pass one DecodeStats to several calls
    try:
        for decoded in frames:
            if first_time is None:
                first_time = decoded.time
            offset = decoded.time - first_time
            if start is not None and offset < start - 1e-9:
                continue
            if end is not None and offset >= end - 1e-9:
                break
            if first_kept is None:
                first_kept = decoded.index
            if (decoded.index - first_kept) % stride:
                continue
            frame = decoded.convert(size, source_image)
            stats.yielded += 1
            given += 1
            yield frame
            if max_frames is not None and given >= max_frames:
                break
    finally:
        # Close the decoding generator now (and its container), not at garbage collection.
        close = getattr(frames, "close", None)
        if close is not None:
            close()


@dataclass
class _Decoded:
    """A decoded frame not yet converted to RGB."""

    index: int
    pts: int | None
    time: float
    source_size: tuple[int, int]
    keyframe: bool
    corrupt: bool
    convert_image: Callable[[tuple[int, int] | None], np.ndarray]  # size -> (H, W, 3) uint8

    def convert(self, size: tuple[int, int] | None, source_image: bool) -> Frame:
        image = self.convert_image(size)
        full = None
        if source_image:
            full = image if size is None or tuple(size) == self.source_size else None
            full = full if full is not None else self.convert_image(None)
        return Frame(
            index=self.index,
            pts=self.pts,
            time=self.time,
            image=image,
            source_size=self.source_size,
            keyframe=self.keyframe,
            corrupt=self.corrupt,
            source_image=full,
        )


def _iter_video_frames(
    path: Path,
    stream: int | None,
    threads: int | str,
    stats: DecodeStats,
) -> Iterator[_Decoded]:
    with _open(path) as container:
        video = _select_stream(container, path, stream)
        _configure_threads(video, threads)
        time_base = video.time_base or Fraction(1, 1)
        rate = video.average_rate or video.guessed_rate
        frame_duration = 1 / float(rate) if rate else 1 / 25
        previous_time: float | None = None
        rotation_warned = False
        scalers = _Scalers()
        index = -1
        for frame in _decode(container, video, stats):
            index += 1
            stats.decoded += 1
            if frame.pts is not None:
                time = float(frame.pts * (frame.time_base or time_base))
            else:
                # No timestamp in the file (rare: raw streams): continue from the last one.
                time = 0.0 if previous_time is None else previous_time + frame_duration
            if previous_time is not None and time <= previous_time:
                stats.warn(f"{path}: frame {index} time {time:.6f}s does not increase")
            previous_time = time
            turns = _quarter_turns(frame.rotation)
            if frame.rotation % 90 and not rotation_warned:
                stats.warn(f"{path}: rotation {frame.rotation} rounded to {turns * 90} degrees")
                rotation_warned = True
            source_size = (frame.width, frame.height) if turns % 2 else (frame.height, frame.width)
            if frame.is_corrupt:
                stats.corrupt_frames += 1
            yield _Decoded(
                index=index,
                pts=frame.pts,
                time=time,
                source_size=source_size,
                keyframe=bool(frame.key_frame),
                corrupt=bool(frame.is_corrupt),
                convert_image=_converter(frame, turns, scalers),
            )
        if stats.decoded == 0:
            raise UserError(
                f"{path}: no video frame could be decoded"
                + (f" ({stats.corrupt_packets} corrupt packets)" if stats.corrupt_packets else "")
            )


class _Scalers:
    """One swscale context per output size, reused across frames: building a context per
    frame (what `frame.to_ndarray(width=...)` does) made conversion 6-10x slower."""

    def __init__(self) -> None:
        self._by_size: dict[object, object] = {}

    def reformat(self, frame: object, **options: object) -> np.ndarray:
        from av.video.reformatter import VideoReformatter

        key = (options.get("width"), options.get("height"))
        scaler = self._by_size.get(key)
        if scaler is None:
            scaler = self._by_size[key] = VideoReformatter()
        return scaler.reformat(frame, **options).to_ndarray()  # type: ignore[attr-defined]


def _converter(
    frame: object, turns: int, scalers: _Scalers
) -> Callable[[tuple[int, int] | None], np.ndarray]:
    """A function giving the frame as upright (H, W, 3) uint8 RGB at a size (H, W) (None:
    the source size)."""

    def convert(size: tuple[int, int] | None) -> np.ndarray:
        options: dict[str, object] = {"format": "rgb24", "interpolation": INTERPOLATION}
        if size is not None:
            height, width = size
            if turns % 2:
                # Resize the coded picture to the pre-rotation shape, then rotate.
                height, width = width, height
            options["width"], options["height"] = width, height
        if frame.color_range == 2 and not frame.format.name.startswith("yuvj"):  # type: ignore[attr-defined]
            # Full-range YUV flagged on the frame: swscale assumes limited range unless told.
            options["src_color_range"] = "JPEG"
        image = scalers.reformat(frame, **options)
        if turns:
            image = np.ascontiguousarray(np.rot90(image, turns))
        return image

    return convert


def _decode(container: object, video: object, stats: DecodeStats) -> Iterator[object]:
    """Decode one stream packet by packet; a packet the decoder rejects is counted and
    skipped, and a demuxer error (a file cut short) ends the stream after flushing."""
    import av

    packets = container.demux(video)  # type: ignore[attr-defined]
    path = container.name  # type: ignore[attr-defined]
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.error.FFmpegError as error:
            stats.truncated = True
            stats.warn(f"{path}: stopped reading at a damaged or missing part ({error.strerror})")
            packet = None  # flush the frames still inside the decoder
        try:
            frames = video.decode(packet)  # type: ignore[attr-defined]
        except av.error.DecoderNotFoundError as error:
            raise UserError(f"{path}: cannot decode this video stream ({error.strerror})") from None
        except av.error.FFmpegError as error:
            stats.corrupt_packets += 1
            where = f" at {float(packet.pts * packet.time_base):.3f}s" if _has_time(packet) else ""
            stats.warn(f"{path}: skipped a corrupt packet{where} ({error.strerror})")
            frames = []
        yield from frames
        if packet is None:
            break


def _has_time(packet: object) -> bool:
    return (
        packet is not None
        and getattr(packet, "pts", None) is not None
        and getattr(packet, "time_base", None) is not None
    )


def _quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns that make a frame upright (frame.rotation is the
    counter-clockwise display rotation of the display matrix; np.rot90 turns the same way)."""
    return int(round(rotation / 90)) % 4


def _configure_threads(video: object, threads: int | str) -> None:
    if threads == "auto":
        context = video.codec_context  # type: ignore[attr-defined]
        if context.width * context.height >= FRAME_THREADING_MIN_PIXELS:
            video.thread_type = "AUTO"  # type: ignore[attr-defined]
        return
    count = int(threads)
    if count <= 1:
        video.thread_type = "NONE"  # type: ignore[attr-defined]
        video.thread_count = 1  # type: ignore[attr-defined]
    else:
        video.thread_type = "AUTO"  # type: ignore[attr-defined]
        video.thread_count = count  # type: ignore[attr-defined]


def _check_file(source: str | Path) -> Path:
    path = Path(source)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: not readable (permission denied)")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: file is empty")
    return path


def _open(path: Path) -> object:
    """av.open for reading, with FFmpeg's errors turned into a UserError naming the file."""
    import av

    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as error:
        raise UserError(
            f"{path}: not a video FFmpeg can read ({error.strerror or 'invalid data'})"
        ) from None
    except OSError as error:
        raise UserError(f"{path}: cannot open ({error.strerror or error})") from None


def _select_stream(container: object, path: Path, stream: int | None) -> object:
    videos = list(container.streams.video)  # type: ignore[attr-defined]
    # Cover art in audio files is a one-picture "video" stream: not a video.
    moving = [video for video in videos if not _is_attached_picture(video)]
    if not moving:
        kinds = sorted({s.type for s in container.streams})  # type: ignore[attr-defined]
        found = f" (it has: {', '.join(kinds)})" if kinds else ""
        raise UserError(f"{path}: no video stream{found}")
    if stream is None:
        best = container.streams.best("video")  # type: ignore[attr-defined]
        chosen = best if best in moving else moving[0]
    elif 0 <= stream < len(videos):
        chosen = videos[stream]
    else:
        raise UserError(f"{path}: no video stream {stream} (video streams: {len(videos)})")
    if chosen.codec_context is None:
        raise UserError(
            f"{path}: cannot decode video stream {videos.index(chosen)}"
            " (unknown codec: damaged or incomplete file?)"
        )
    return chosen


def _is_attached_picture(video: object) -> bool:
    import av.stream

    return bool(video.disposition & av.stream.Disposition.attached_pic)  # type: ignore[attr-defined]


def _iter_image_frames(images: list[Path], fps: float, stats: DecodeStats) -> Iterator[_Decoded]:
    """Frames of an image sequence, timed at index / fps; unreadable files skipped."""
    if not fps > 0 or not math.isfinite(fps):
        raise UserError(f"--fps: must be a positive number, got {fps}")
    first_size: tuple[int, int] | None = None
    scalers = _Scalers()
    index = -1
    for path in images:
        try:
            image = read_image(path)
        except (OSError, ValueError) as error:
            stats.unreadable_images += 1
            stats.warn(f"{path}: skipped an unreadable image ({error})")
            continue
        index += 1
        stats.decoded += 1
        source_size = (int(image.shape[0]), int(image.shape[1]))
        if first_size is None:
            first_size = source_size
        elif source_size != first_size:
            stats.warn(f"{path}: size {source_size} differs from the first frame's {first_size}")
        yield _Decoded(
            index=index,
            pts=index,
            time=index / fps,
            source_size=source_size,
            keyframe=True,
            corrupt=False,
            convert_image=_image_converter(image, first_size, scalers),
        )
    if stats.decoded == 0:
        raise UserError(f"{images[0].parent}: none of the {len(images)} images could be read")


def _image_converter(
    image: np.ndarray, default_size: tuple[int, int], scalers: _Scalers
) -> Callable[[tuple[int, int] | None], np.ndarray]:
    """Resize with the same swscale resampler as video frames (so a video and its frames
    extracted as images give the same model input). Size None: the first frame's size, so
    every frame of a sequence comes out the same size."""

    def convert(size: tuple[int, int] | None) -> np.ndarray:
        size = size or default_size
        if image.shape[:2] == tuple(size):
            return image
        import av

        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        height, width = size
        return scalers.reformat(
            frame, format="rgb24", width=width, height=height, interpolation=INTERPOLATION
        )

    return convert


def _probe_images(source: str | Path, images: list[Path], fps: float | None) -> VideoInfo:
    rate = fps or DEFAULT_IMAGE_FPS
    first = None
    for path in images:
        try:
            first = read_image(path)
            break
        except (OSError, ValueError):
            continue
    if first is None:
        raise UserError(f"{source}: none of the {len(images)} images could be read")
    return VideoInfo(
        path=str(source),
        width=int(first.shape[1]),
        height=int(first.shape[0]),
        rotation=0,
        fps=rate,
        duration=len(images) / rate,
        frame_count=len(images),
        codec="images",
        pix_fmt=None,
        start_time=0.0,
        # pts = index, so the time base is one frame (29.97 -> 1001/30000).
        time_base=str(1 / Fraction(rate).limit_denominator(1001)),
        has_audio=False,
        stream=0,
        video_streams=1,
        container="images",
    )
