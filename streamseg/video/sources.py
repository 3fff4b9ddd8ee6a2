"""Image-sequence inputs: a folder or glob of frame images, as video datasets ship them.

`list_image_frames` decides whether a source names an image sequence and lists its files in
natural order (`frame_2.png` before `frame_10.png`); `read_image` loads one frame upright
(EXIF orientation applied) as RGB.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

import numpy as np

from streamseg.errors import UserError

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


def read_image(path: Path) -> np.ndarray:
    """One frame image, upright (EXIF orientation applied), as (H, W, 3) uint8 RGB.

    Gray, palette, alpha and 16-bit images are converted to 8-bit RGB (alpha dropped).

    Raises:
        OSError / ValueError from PIL when the file is not a readable image.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            # PIL's convert("RGB") clips 16-bit values instead of scaling them.
            array = np.asarray(image, dtype=np.uint32)
            top = 65535 if array.max() > 255 else 255
            gray = (array * 255 // top).astype(np.uint8)
            return np.repeat(gray[:, :, None], 3, axis=2)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
