"""The types that decoding produces: `Frame`, `DecodeStats`, `VideoInfo`.

Shared by the video decoder (decode.py) and image-sequence sources (sources.py); import them
from `streamseg.video.decode`, which re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

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
    decoder_errors: int = 0  # error messages FFmpeg logged while reading and decoding
    gaps: int = 0  # jumps between frame times much longer than the frame interval
    longest_gap: float = 0.0  # seconds
    longest_gap_at: float = 0.0  # time (seconds) of the frame after the longest gap
    error_samples: list[str] = field(default_factory=list)  # the first of FFmpeg's messages
    still_image: bool = False  # the source is one picture (an image file, a one-frame video)
    first_time: float | None = None  # time (s) of the first and last frame decoded
    last_time: float | None = None
    warnings: list[str] = field(default_factory=list)
    # Details of the damage (each skipped packet, where reading stopped): kept in the store's
    # record; the one `damage_line` says it on stderr.
    damage_notes: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        """Whether anything says frames may be missing or corrupted."""
        return bool(
            self.decoder_errors
            or self.gaps
            or self.corrupt_packets
            or self.corrupt_frames
            or self.truncated
        )

    def damage_line(self, source: str) -> str | None:
        """The one line that says a file is damaged (None when nothing says so)."""
        if not self.damaged:
            return None
        gaps = f"{self.gaps} gap{'s' if self.gaps != 1 else ''}"
        if self.gaps:
            gaps += f" (longest {self.longest_gap:.1f} s at {self.longest_gap_at:.1f} s)"
        parts = [f"{self.decoder_errors} decoder error{'s' if self.decoder_errors != 1 else ''}"]
        parts.append(gaps)
        if self.corrupt_packets:
            parts.append(f"{self.corrupt_packets} corrupt packet(s) skipped")
        if self.corrupt_frames:
            parts.append(f"{self.corrupt_frames} frame(s) flagged corrupt")
        if self.truncated:
            parts.append("cut short")
        return f"{source}: damaged input: {', '.join(parts)}; frames may be missing or corrupted"

    def facts(self) -> dict[str, object]:
        """The counters as the store's decode record and the summaries keep them."""
        return {
            "decoded": self.decoded,
            "corrupt_packets": self.corrupt_packets,
            "corrupt_frames": self.corrupt_frames,
            "unreadable_images": self.unreadable_images,
            "truncated": bool(self.truncated),
            "decoder_errors": self.decoder_errors,
            "gaps": self.gaps,
            "longest_gap": round(self.longest_gap, 6),
            "longest_gap_at": round(self.longest_gap_at, 6),
            "error_samples": list(self.error_samples),
            "damage_notes": list(self.damage_notes),
            "still_image": self.still_image,
            "damaged": self.damaged,
        }

    def warn(self, message: str, limit: int = 20) -> None:
        """Record a warning; after `limit` warnings only the counters keep counting."""
        _append_bounded(self.warnings, message, limit)

    def note_damage(self, message: str, limit: int = 20) -> None:
        """Record one detail of the damage (bounded like `warn`)."""
        _append_bounded(self.damage_notes, message, limit)


def _append_bounded(messages: list[str], message: str, limit: int) -> None:
    if len(messages) < limit:
        messages.append(message)
    elif len(messages) == limit:
        messages.append("(further messages not shown)")


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
    still_image: bool = False  # one picture (an image file, whatever its name; a one-frame video)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) upright."""
        return (self.height, self.width)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class DecodedFrame:
    """A decoded frame not yet converted to RGB (conversion is paid only for kept frames)."""

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


class Scalers:
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
