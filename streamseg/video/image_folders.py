"""Image-sequence inputs: a folder or glob of frame images, as video datasets ship them.

`list_image_frames` decides whether a source names an image sequence and lists its files in
natural order (`frame_2.png` before `frame_10.png`); `read_image` loads one frame upright
(EXIF orientation applied) as RGB; `iter_image_frames` / `probe_images` are the image-sequence
halves of decode.py's `iter_frames` / `probe` (frames timed at index / fps, resized with the
same swscale resampler as video frames).
"""

from __future__ import annotations

import glob
import math
import re
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from streamseg.errors import UserError
from streamseg.video.frames import INTERPOLATION, DecodedFrame, DecodeStats, Scalers, VideoInfo

# Frame rate given to image sequences when the caller names none (a common dataset rate).
DEFAULT_IMAGE_FPS = 25.0

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
)
GLOB_CHARACTERS = "*?["


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that orders digit runs by value: "f2" < "f10". Digits and text alternate in
    the key, so two keys always compare element by element on like types."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(part) if index % 2 else part.lower() for index, part in enumerate(parts))


def is_glob(source: str | Path) -> bool:
    """True when `source` is a glob pattern that does not name an existing file."""
    text = str(source)
    return any(character in text for character in GLOB_CHARACTERS) and not Path(text).exists()


def list_image_frames(source: str | Path) -> list[Path] | None:
    """The image files of an image-sequence source, in natural order.

    Returns None when `source` is not an image sequence (a file, or a missing path without
    glob characters): the caller then treats it as a video file.

    Raises:
        UserError: a folder without images, or a glob that matches no image.
    """
    text = str(source)
    if is_glob(text):
        matches = [Path(path) for path in glob.glob(text, recursive=True)]
        files = [path for path in matches if path.is_file()]
        images = [path for path in files if path.suffix.lower() in IMAGE_EXTENSIONS]
        if not images:
            what = "no files" if not files else "no image files"
            raise UserError(f"{text}: {what} match this pattern")
        return sorted(images, key=lambda path: natural_key(str(path)))
    path = Path(text)
    if not path.is_dir():
        return None
    images = [
        entry
        for entry in path.iterdir()
        if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not images:
        extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise UserError(f"{path}: folder has no image frames ({extensions})")
    return sorted(images, key=lambda entry: natural_key(entry.name))


def open_image(path: Path):  # noqa: ANN201 - a PIL image (PIL is imported lazily)
    """`PIL.Image.open`, refusing images larger than PIL's decompression-bomb limit.

    A small PNG whose header claims 100000x100000 pixels would otherwise raise PIL's
    `DecompressionBombError` (not an OSError) or, between one and two times the limit, allocate
    gigabytes. Both become a ValueError naming the size.

    Raises:
        OSError / ValueError: unreadable, or too many pixels.
    """
    from PIL import Image

    try:
        image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ValueError(f"image too large ({error})") from None
    width, height = image.size
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        image.close()
        raise ValueError(f"image too large ({width}x{height} pixels, more than {limit})")
    return image


def read_image(path: Path) -> np.ndarray:
    """One frame image, upright (EXIF orientation applied), as (H, W, 3) uint8 RGB.

    Gray, palette, alpha and 16-bit images are converted to 8-bit RGB (alpha dropped).

    Raises:
        OSError / ValueError when the file is not a readable image or is too large.
    """
    from PIL import ImageOps

    with open_image(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            # PIL's convert("RGB") clips 16-bit values instead of scaling them.
            array = np.asarray(image, dtype=np.uint32)
            top = 65535 if array.max() > 255 else 255
            gray = (array * 255 // top).astype(np.uint8)
            return np.repeat(gray[:, :, None], 3, axis=2)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def iter_image_frames(images: list[Path], fps: float, stats: DecodeStats) -> Iterator[DecodedFrame]:
    """Frames of an image sequence, timed at index / fps; unreadable files skipped."""
    if not fps > 0 or not math.isfinite(fps):
        raise UserError(f"--fps: must be a positive number, got {fps}")
    first_size: tuple[int, int] | None = None
    scalers = Scalers()
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
        yield DecodedFrame(
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
    image: np.ndarray, default_size: tuple[int, int], scalers: Scalers
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


def probe_images(source: str | Path, images: list[Path], fps: float | None) -> VideoInfo:
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
