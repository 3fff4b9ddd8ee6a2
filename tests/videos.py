"""Make small test videos with PyAV: many codecs, pixel formats and container quirks.

Every test that needs a video file imports this module instead of shipping binaries. The
videos are tiny (64x48, about 12 frames) and each takes a few milliseconds to encode.

Each frame shows `pattern(index)`: four coloured quadrants (so any rotation or mirror is
visible) and a grey centre block whose level encodes the frame index (`read_index`), so a
test can tell which source frame it got back even after resizing and lossy coding.

Usage:
    path = make_video(tmp_path / "a.mp4", VideoSpec(codec="libx265", pix_fmt="yuv420p10le"))
    path = make_video(tmp_path / "r.mp4", CASES["rotated90"])
    corrupt_copy(path, tmp_path / "bad.mp4", packets=(5, 6))
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# SVT-AV1 prints a banner per encoder unless told otherwise (it reads this at encoder start).
os.environ.setdefault("SVT_LOG", "1")

# Upright quadrant colours: top-left, top-right, bottom-left, bottom-right. Their grey levels
# also differ (about 87, 129, 52, 198), so the orientation survives gray pixel formats.
QUADRANT_COLORS: tuple[tuple[int, int, int], ...] = (
    (220, 30, 30),
    (30, 200, 30),
    (30, 30, 220),
    (220, 220, 30),
)
# The centre block's grey level is LEVEL_BASE + LEVEL_STEP * (index % LEVEL_COUNT).
LEVEL_BASE = 20
LEVEL_STEP = 9
LEVEL_COUNT = 25


def pattern(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """The upright test image of frame `index`.

    Returns:
        (height, width, 3) uint8 RGB: four coloured quadrants and a centre block of grey
        level `LEVEL_BASE + LEVEL_STEP * (index % LEVEL_COUNT)`.
    """
    image = np.empty((height, width, 3), np.uint8)
    half_h, half_w = height // 2, width // 2
    image[:half_h, :half_w] = QUADRANT_COLORS[0]
    image[:half_h, half_w:] = QUADRANT_COLORS[1]
    image[half_h:, :half_w] = QUADRANT_COLORS[2]
    image[half_h:, half_w:] = QUADRANT_COLORS[3]
    block_h, block_w = max(2, height // 3), max(2, width // 3)
    top, left = (height - block_h) // 2, (width - block_w) // 2
    image[top : top + block_h, left : left + block_w] = LEVEL_BASE + LEVEL_STEP * (
        index % LEVEL_COUNT
    )
    return image


def read_index(image: np.ndarray) -> int:
    """The frame index (modulo LEVEL_COUNT) shown by a decoded `pattern` image (H, W, 3)."""
    height, width = image.shape[:2]
    cy, cx = height // 2, width // 2
    ry, rx = max(1, height // 12), max(1, width // 12)
    level = float(np.median(image[cy - ry : cy + ry, cx - rx : cx + rx]))
    return int(round((level - LEVEL_BASE) / LEVEL_STEP)) % LEVEL_COUNT


def quadrant_means(image: np.ndarray) -> np.ndarray:
    """Mean colour of the middle of each quadrant (TL, TR, BL, BR): (4, 3) float."""
    height, width = image.shape[:2]
    ys = (height // 8, height // 4), (height - height // 4, height - height // 8)
    xs = (width // 8, width // 6), (width - width // 6, width - width // 8)
    return np.array(
        [
            image[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3).mean(0)
            for (y0, y1) in ys
            for (x0, x1) in xs
        ]
    )


def is_upright(image: np.ndarray, gray: bool = False, tolerance: float = 40.0) -> bool:
    """True when a decoded `pattern` image has its quadrants where `pattern` put them."""
    expected = np.array(QUADRANT_COLORS, np.float64)
    got = quadrant_means(image)
    if gray:
        expected = expected @ np.array([0.299, 0.587, 0.114])
        got = got.mean(1)
    return bool(np.abs(got - expected).max() < tolerance)


@dataclass(frozen=True)
class VideoSpec:
    """What `make_video` writes. Sizes are upright (as displayed)."""

    codec: str = "libx264"  # encoder name
    pix_fmt: str = "yuv420p"  # pixel format given to the encoder
    width: int = 64
    height: int = 48
    frames: int = 12
    fps: int = 25  # frame rate when `times` is None
    times: tuple[float, ...] | None = None  # VFR: each frame's time in seconds (before `start`)
    start: float = 0.0  # time of the first frame (a container start offset)
    rotation: int = 0  # display rotation, degrees counter-clockwise, as frame.rotation reads it
    audio: bool = False  # add an audio track (a 440 Hz tone)
    audio_codec: str | None = None  # its encoder; None = AAC (Opus for webm)
    subtitles: bool = False  # add a SubRip subtitle track (Matroska only)
    faststart: bool = False  # mp4: index (moov) before the data
    options: tuple[tuple[str, str], ...] = ()  # extra encoder options
    container: str | None = None  # FFmpeg format name; None = from the file extension

    def frame_times(self) -> list[float]:
        """The time in seconds of every frame as muxed."""
        if self.times is not None:
            return [self.start + t for t in self.times]
        return [self.start + i / self.fps for i in range(self.frames)]

    @property
    def frame_count(self) -> int:
        return len(self.times) if self.times is not None else self.frames


# Near-lossless settings per encoder so `read_index` is exact after decoding.
QUALITY_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"crf": "8", "preset": "ultrafast"},
    "libx265": {"crf": "8", "preset": "ultrafast", "x265-params": "log-level=none"},
    "libvpx-vp9": {"crf": "8", "b": "0", "deadline": "realtime", "cpu-used": "8"},
    "libsvtav1": {"crf": "10", "preset": "10"},
    "mpeg4": {"b": "4M"},
    "mjpeg": {"b": "8M"},
}

# A varied frame spacing: pauses, bursts, irregular steps (seconds).
VFR_TIMES: tuple[float, ...] = (0.0, 0.04, 0.05, 0.2, 0.21, 0.5, 0.52, 0.9, 1.0, 1.3, 1.31, 1.7)

# The codec / pixel format / container matrix. Extensions name the container.
CASES: dict[str, tuple[str, VideoSpec]] = {
    "h264": ("mp4", VideoSpec()),
    "h264_10bit": ("mp4", VideoSpec(pix_fmt="yuv420p10le")),
    "h264_444_odd": ("mp4", VideoSpec(pix_fmt="yuv444p", width=63, height=47)),
    "h264_ts": ("ts", VideoSpec()),  # MPEG-TS: timestamps shifted by the muxer
    "hevc": ("mp4", VideoSpec(codec="libx265")),
    "hevc_10bit": ("mkv", VideoSpec(codec="libx265", pix_fmt="yuv420p10le")),
    "vp9": ("webm", VideoSpec(codec="libvpx-vp9")),
    "vp9_odd": ("webm", VideoSpec(codec="libvpx-vp9", width=63, height=47)),
    "vp9_alpha": ("webm", VideoSpec(codec="libvpx-vp9", pix_fmt="yuva420p")),
    "av1": ("mp4", VideoSpec(codec="libsvtav1")),
    "av1_10bit": ("mkv", VideoSpec(codec="libsvtav1", pix_fmt="yuv420p10le")),
    "mpeg4": ("avi", VideoSpec(codec="mpeg4")),
    "mjpeg": ("avi", VideoSpec(codec="mjpeg", pix_fmt="yuvj420p")),
    "png_rgba": ("mov", VideoSpec(codec="png", pix_fmt="rgba")),
    "ffv1_gray": ("mkv", VideoSpec(codec="ffv1", pix_fmt="gray")),
    "ffv1_gray16": ("mkv", VideoSpec(codec="ffv1", pix_fmt="gray16le")),
    "ffv1_yuva": ("mkv", VideoSpec(codec="ffv1", pix_fmt="yuva420p")),
    "rotated90": ("mp4", VideoSpec(rotation=90)),
    "rotated180": ("mp4", VideoSpec(rotation=180)),
    "rotated270": ("mp4", VideoSpec(rotation=270)),
    "rotated90_mkv": ("mkv", VideoSpec(rotation=90)),
    "vfr": ("mp4", VideoSpec(times=VFR_TIMES)),
    "vfr_mkv": ("mkv", VideoSpec(times=VFR_TIMES)),
    "offset": ("mp4", VideoSpec(times=VFR_TIMES, start=1.5)),
    "offset_mkv": ("mkv", VideoSpec(start=2.0)),
    "audio_subs": ("mkv", VideoSpec(audio=True, subtitles=True)),
    "audio": ("mp4", VideoSpec(audio=True, faststart=True)),
}

GRAY_FORMATS = ("gray", "gray16le", "gray10le", "gray12le")


def make_case(directory: Path, name: str) -> Path:
    """Write `CASES[name]` as `directory/<name>.<ext>` and return its path."""
    extension, spec = CASES[name]
    return make_video(Path(directory) / f"{name}.{extension}", spec)


def make_video(path: Path | str, spec: VideoSpec | None = None, **changes: object) -> Path:
    """Encode `spec` (with `changes` applied) to `path`; returns the path."""
    spec = dataclasses.replace(spec or VideoSpec(), **changes)  # type: ignore[arg-type]
    path = Path(path)
    times = spec.frame_times()
    container_options = {"movflags": "+faststart"} if spec.faststart else {}
    # Exact millisecond times for VFR (and offsets); 1/fps for CFR (AVI cannot do better).
    variable = spec.times is not None or spec.start != 0
    time_base = Fraction(1, 1000) if variable else Fraction(1, spec.fps)
    options = {**QUALITY_OPTIONS.get(spec.codec, {}), **dict(spec.options)}
    turns = (spec.rotation // 90) % 4
    coded_w, coded_h = (spec.height, spec.width) if turns % 2 else (spec.width, spec.height)
    with av.open(str(path), "w", format=spec.container, options=container_options) as out:
        video = out.add_stream(spec.codec, rate=spec.fps, options=options)
        video.width, video.height, video.pix_fmt = coded_w, coded_h, spec.pix_fmt
        video.codec_context.time_base = time_base
        video.time_base = time_base
        if spec.rotation:
            video.set_display_rotation(spec.rotation)
        audio = None
        if spec.audio:
            codec = spec.audio_codec or ("libopus" if path.suffix == ".webm" else "aac")
            audio = out.add_stream(codec, rate=48000 if codec == "libopus" else 16000)
            audio.layout = "mono"
        subtitle_source = None
        if spec.subtitles:
            subtitle_source, subtitle_stream = _open_subtitles(path, out, times[-1])
        for index, time in enumerate(times):
            # The coded picture is the upright pattern turned clockwise: the display matrix
            # (counter-clockwise `rotation`) turns it back.
            image = np.ascontiguousarray(np.rot90(pattern(index, spec.height, spec.width), -turns))
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = round(time / time_base)
            frame.time_base = time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            _encode_tone(out, audio, duration=times[-1] + 1 / spec.fps)
        if subtitle_source is not None:
            with subtitle_source:
                for packet in subtitle_source.demux(subtitle_source.streams.subtitles[0]):
                    if packet.size:
                        packet.stream = subtitle_stream
                        out.mux(packet)
    return path


def _encode_tone(
    out: av.container.OutputContainer, stream: av.AudioStream, duration: float
) -> None:
    """A 440 Hz tone of `duration` seconds into an audio stream."""
    rate = stream.rate
    count = int(rate * duration)
    samples = (0.2 * np.sin(np.arange(count) * (2 * np.pi * 440 / rate))).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
    frame.sample_rate = rate
    frame.pts = 0
    frame.time_base = Fraction(1, rate)
    out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _open_subtitles(
    path: Path, out: av.container.OutputContainer, last_time: float
) -> tuple[av.container.InputContainer, av.stream.Stream]:
    """A SubRip side file demuxed into `out`: PyAV cannot open a subtitle encoder without an
    ASS header, but it can copy subtitle packets from FFmpeg's SRT demuxer."""
    srt = path.with_suffix(".srt")
    end = max(0.5, last_time)
    srt.write_text(
        "1\n00:00:00,000 --> 00:00:00,300\nhello\n\n"
        f"2\n00:00:00,300 --> 00:00:{end:06.3f}\nworld\n".replace(".", ",")
    )
    source = av.open(str(srt))
    stream = out.add_stream_from_template(source.streams.subtitles[0])
    return source, stream


def video_packets(path: Path | str) -> list[tuple[int, int, bool]]:
    """(byte position, size, is keyframe) of every video packet in file order."""
    with av.open(str(path)) as container:
        return [
            (packet.pos, packet.size, packet.is_keyframe)
            for packet in container.demux(container.streams.video[0])
            if packet.size
        ]


def corrupt_copy(
    source: Path | str, destination: Path | str, packets: tuple[int, ...] = (5, 6), fill: int = 0xFF
) -> Path:
    """Copy a video and overwrite the bytes of some video packets (by file order) with `fill`.

    The container index stays intact, so the file opens and demuxes; the decoder fails on
    those packets (H.264 in mp4: one decode error each) and on frames that reference them.
    """
    destination = Path(destination)
    shutil.copyfile(source, destination)
    positions = video_packets(source)
    with open(destination, "r+b") as file:
        for number in packets:
            position, size, _ = positions[number]
            file.seek(position)
            file.write(bytes([fill]) * size)
    return destination


def truncate_copy(source: Path | str, destination: Path | str, fraction: float = 0.6) -> Path:
    """Copy the first `fraction` of a file's bytes (a download cut short).

    With the index first (mp4 faststart, mkv) the start stays decodable; an mp4 with its
    index at the end cannot be opened at all.
    """
    data = Path(source).read_bytes()
    destination = Path(destination)
    destination.write_bytes(data[: int(len(data) * fraction)])
    return destination


def make_empty(path: Path | str) -> Path:
    path = Path(path)
    path.write_bytes(b"")
    return path


def make_not_a_video(path: Path | str) -> Path:
    """A text file with a video extension."""
    path = Path(path)
    path.write_text("this is not a video, just some text that happens to be named .mp4\n" * 20)
    return path


def make_audio_only(path: Path | str, duration: float = 0.5) -> Path:
    """An audio file (m4a) without any video stream."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        _encode_tone(out, stream, duration)
    return path


def make_image_folder(
    directory: Path | str,
    frames: int = 12,
    width: int = 64,
    height: int = 48,
    extension: str = "png",
    name: str = "frame_{index}",
) -> Path:
    """Write `pattern` frames as image files (names unpadded, so `frame_10` sorts after
    `frame_9` only with natural sorting)."""
    from PIL import Image

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(frames):
        image = Image.fromarray(pattern(index, height, width))
        image.save(directory / f"{name.format(index=index)}.{extension}", quality=98)
    return directory
