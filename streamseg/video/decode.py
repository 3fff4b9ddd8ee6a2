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
- damage FFmpeg conceals (an overwritten slice, a lost Matroska cluster: no error is raised)
  is still counted: FFmpeg's own error log is captured per file (decode_log.py), and jumps
  between frame times much longer than the frame interval count as gaps; `DecodeStats`
  gives one `damage_line` for all of it;
- a picture (a PNG or JPEG, whatever its name, or a one-frame video) is one frame, and
  `DecodeStats.still_image` / `VideoInfo.still_image` say so;
- a missing, empty, unreadable or video-less file raises `UserError` naming the file.

A folder or glob of frame images is a source too (see sources.py); its frames are timed at
`index / fps`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from streamseg.errors import UserError
from streamseg.video.decode_log import DecoderLog, call, decoding
from streamseg.video.frames import (
    INTERPOLATION,
    DecodedFrame,
    DecodeStats,
    Frame,
    Scalers,
    VideoInfo,
)
from streamseg.video.image_folders import DEFAULT_IMAGE_FPS, iter_image_frames, list_image_frames
from streamseg.video.image_folders import probe_images as _probe_images

__all__ = ["DecodeStats", "Frame", "VideoInfo", "iter_frames", "probe"]

# `start` from which iter_frames seeks instead of decoding every earlier frame, and how far
# before the target it seeks (the demuxer lands on the keyframe before that point).
SEEK_MIN_SECONDS = 10.0
SEEK_MARGIN_SECONDS = 1.0
# Frame threading pays off only on large frames: on 2 cores it decoded 1280x720 H.264 1.15-1.4x
# faster and 320x240-640x480 no faster (slice threading, PyAV's default, is kept below this).
FRAME_THREADING_MIN_PIXELS = 1280 * 720
# A jump between two decoded frames longer than this many frame intervals is a gap (frames
# lost to damage); variable-rate video's pauses are measured against its average interval.
GAP_FACTOR = 5.0
# FFmpeg demuxers that read one picture (an image file, whatever its name says).
IMAGE_DEMUXER_SUFFIXES = ("_pipe",)
IMAGE_DEMUXERS = frozenset({"image2", "apng", "gif", "webp"})


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
        still = _is_image_demuxer(container.format.name) or frame_count == 1
        if still:
            frame_count = 1
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
            still_image=still,
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
    seek: bool = True,
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
        seek: with `start` of SEEK_MIN_SECONDS or more, seek instead of decoding up to it;
            frame numbers (`Frame.index`) after the seek are then counted from the average
            frame rate: exact for constant-rate video, an estimate for variable rate.

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
        frames = iter_image_frames(images, fps or DEFAULT_IMAGE_FPS, stats)
    else:
        seek_to = start if seek and start is not None and start >= SEEK_MIN_SECONDS else None
        frames = _iter_video_frames(_check_file(source), stream, threads, stats, seek_to)
    yield from _select(frames, size, source_image, stride, start, end, max_frames, stats)


def _select(
    frames: Iterator[DecodedFrame],
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


def _iter_video_frames(
    path: Path,
    stream: int | None,
    threads: int | str,
    stats: DecodeStats,
    seek_to: float | None = None,
) -> Iterator[DecodedFrame]:
    with _open(path) as container:
        video = _select_stream(container, path, stream)
        _configure_threads(video, threads)
        log = DecoderLog(codec=video.codec_context.name)
        with decoding(log):
            yield from _decoded_frames(container, video, path, stats, seek_to, log)
            _note_log(stats, log)
        if stats.decoded == 0:
            raise UserError(
                f"{path}: no video frame could be decoded"
                + (f" ({stats.corrupt_packets} corrupt packets)" if stats.corrupt_packets else "")
            )
        if stats.decoded == 1 or _is_image_demuxer(container.format.name):
            stats.still_image = True
        elif seek_to is None:
            _check_end(container, video, path, stats)


def _check_end(container: object, video: object, path: Path, stats: DecodeStats) -> None:
    """A file whose frames stop well before the duration its header promises was cut short
    (a Matroska demuxer stops quietly at a cut)."""
    if stats.truncated or stats.last_time is None or stats.first_time is None:
        return
    rate = video.average_rate or video.guessed_rate  # type: ignore[attr-defined]
    if not rate:
        return
    promised = None
    if video.duration is not None and video.duration > 0:  # type: ignore[attr-defined]
        promised = float(video.duration * video.time_base)  # type: ignore[attr-defined]
    elif container.duration and len(container.streams) == 1:  # type: ignore[attr-defined]
        # Only when the video is the one stream: an audio track may run longer.
        promised = container.duration / 1_000_000  # type: ignore[attr-defined]
        if container.start_time:  # type: ignore[attr-defined]
            promised -= container.start_time / 1_000_000  # type: ignore[attr-defined]
    if promised is None:
        return
    # The last frame lasts one interval.
    got = stats.last_time - stats.first_time + 1 / float(rate)
    if promised - got > GAP_FACTOR / float(rate):
        stats.truncated = True
        stats.note_damage(f"{path}: frames end at {got:.2f} s but the header says {promised:.2f} s")


def _decoded_frames(
    container: object,
    video: object,
    path: Path,
    stats: DecodeStats,
    seek_to: float | None,
    log: DecoderLog,
) -> Iterator[DecodedFrame]:
    time_base = video.time_base or Fraction(1, 1)  # type: ignore[attr-defined]
    rate = video.average_rate or video.guessed_rate  # type: ignore[attr-defined]
    frame_duration = 1 / float(rate) if rate else 1 / 25
    previous_time: float | None = None
    rotation_warned = False
    scalers = Scalers()
    index = -1
    try:
        for frame, estimated in _decode_with_seek(container, video, stats, seek_to, rate, log):
            index = index + 1 if estimated is None else max(estimated, index + 1)
            stats.decoded += 1
            _note_log(stats, log)
            if frame.pts is not None:
                time = float(frame.pts * (frame.time_base or time_base))
            else:
                # No timestamp in the file (rare: raw streams): continue from the last one.
                time = 0.0 if previous_time is None else previous_time + frame_duration
            if previous_time is not None and time <= previous_time:
                stats.warn(f"{path}: frame {index} time {time:.6f}s does not increase")
            if previous_time is not None and estimated is None and rate:
                _note_gap(stats, time - previous_time, time, frame_duration)
            previous_time = time
            if stats.first_time is None:
                stats.first_time = time
            stats.last_time = time
            turns = _quarter_turns(frame.rotation)
            if frame.rotation % 90 and not rotation_warned:
                stats.warn(f"{path}: rotation {frame.rotation} rounded to {turns * 90} degrees")
                rotation_warned = True
            source_size = (frame.width, frame.height) if turns % 2 else (frame.height, frame.width)
            if frame.is_corrupt:
                stats.corrupt_frames += 1
            yield DecodedFrame(
                index=index,
                pts=frame.pts,
                time=time,
                source_size=source_size,
                keyframe=bool(frame.key_frame),
                corrupt=bool(frame.is_corrupt),
                convert_image=_converter(frame, turns, scalers),
            )
    finally:
        _note_log(stats, log)


def _note_log(stats: DecodeStats, log: DecoderLog) -> None:
    """Copy the file's FFmpeg error count into its counters (read at every commit)."""
    stats.decoder_errors = log.errors
    stats.error_samples = list(log.samples)


def _note_gap(stats: DecodeStats, step: float, time: float, frame_duration: float) -> None:
    """Count a jump between frame times longer than GAP_FACTOR frame intervals."""
    if step <= GAP_FACTOR * frame_duration:
        return
    stats.gaps += 1
    if step > stats.longest_gap:
        stats.longest_gap = step
        stats.longest_gap_at = time


def _is_image_demuxer(name: str) -> bool:
    return name in IMAGE_DEMUXERS or name.endswith(IMAGE_DEMUXER_SUFFIXES)


def _converter(
    frame: object, turns: int, scalers: Scalers
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


def _decode_with_seek(
    container: object,
    video: object,
    stats: DecodeStats,
    seek_to: float | None,
    rate: Fraction | None,
    log: DecoderLog | None = None,
) -> Iterator[tuple[object, int | None]]:
    """Decoded frames with, after a seek, their frame number estimated from the rate.

    Without `seek_to`, every frame is decoded (numbers are counted by the caller: None).
    With it: the first frame gives the time origin t0, the demuxer seeks to the keyframe
    before t0 + seek_to - SEEK_MARGIN_SECONDS, and frames continue from there, numbered
    round((time - t0) x rate). A seek that fails or lands past the target falls back to
    decoding from the start, so no frame at or after the target is ever lost.
    """
    import av

    decoded = _decode(container, video, stats, log)
    first = next(decoded, None)
    if first is None:
        return
    yield first, None
    if seek_to is None or not rate or first.pts is None:
        for frame in decoded:
            yield frame, None
        return
    time_base = first.time_base or video.time_base  # type: ignore[attr-defined]
    first_time = float(first.pts * time_base)  # type: ignore[attr-defined]
    target = first_time + seek_to
    try:
        offset = round((target - SEEK_MARGIN_SECONDS) / time_base)
        container.seek(offset, stream=video, backward=True)  # type: ignore[attr-defined]
        video.codec_context.flush_buffers()  # type: ignore[attr-defined]
    except (av.error.FFmpegError, OSError):
        for frame in decoded:  # not seekable: the demuxer is where it was
            yield frame, None
        return
    decoded.close()
    resumed = _decode(container, video, stats, log)
    landed = None
    for frame in resumed:
        if frame.pts is None:
            continue
        time = float(frame.pts * (frame.time_base or time_base))
        if landed is None:
            landed = time
            if landed > target + 1e-6:
                break  # past the target (a poor index): start over below
        if time <= first_time:
            continue
        yield frame, round((time - first_time) * float(rate))
    else:
        return
    # Fall back: decode from the start, skipping the frame already given.
    resumed.close()
    stats.warn(f"{container.name}: seeking to --start failed; decoding from the start")  # type: ignore[attr-defined]
    container.seek(0, stream=video, backward=True)  # type: ignore[attr-defined]
    video.codec_context.flush_buffers()  # type: ignore[attr-defined]
    for frame in _decode(container, video, stats, log):
        if frame.pts is not None and float(frame.pts * time_base) <= first_time:
            continue
        yield frame, None


def _decode(
    container: object, video: object, stats: DecodeStats, log: DecoderLog | None = None
) -> Iterator[object]:
    """Decode one stream packet by packet; a packet the decoder rejects is counted and
    skipped, and a demuxer error (a file cut short) ends the stream after flushing. What
    FFmpeg logs during each call goes to `log`."""
    import av

    packets = container.demux(video)  # type: ignore[attr-defined]
    path = container.name  # type: ignore[attr-defined]
    while True:
        try:
            with call(log):
                packet = next(packets)
        except StopIteration:
            break
        except av.error.FFmpegError as error:
            stats.truncated = True
            stats.note_damage(
                f"{path}: stopped reading at a damaged or missing part ({error.strerror})"
            )
            packet = None  # flush the frames still inside the decoder
        try:
            with call(log):
                frames = video.decode(packet)  # type: ignore[attr-defined]
        except av.error.DecoderNotFoundError as error:
            raise UserError(f"{path}: cannot decode this video stream ({error.strerror})") from None
        except av.error.FFmpegError as error:
            stats.corrupt_packets += 1
            where = f" at {float(packet.pts * packet.time_base):.3f}s" if _has_time(packet) else ""
            stats.note_damage(f"{path}: skipped a corrupt packet{where} ({error.strerror})")
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
