"""Thumbnails of search hits: the track's best frame cut from its source video, the track's
outline drawn in its colour."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamseg.catalog.query import SearchHit
from streamseg.video.draw import label_boundaries, outline_width, resize_labels, track_color
from streamseg.video.store_reader import StoreReader

MARGIN = 0.25  # of the box's size, on each side
MIN_SIDE = 96  # pixels of the crop's shorter side at least (small objects get context)


def crop_box(
    box: tuple[int, int, int, int], label_size: tuple[int, int], image_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The crop (x0, y0, x1, y1) in image pixels around a COCO box given in label pixels."""
    scale_y, scale_x = image_size[0] / label_size[0], image_size[1] / label_size[1]
    x, y, w, h = box
    cx, cy = (x + w / 2) * scale_x, (y + h / 2) * scale_y
    half_w = max(w * scale_x * (0.5 + MARGIN), MIN_SIDE / 2)
    half_h = max(h * scale_y * (0.5 + MARGIN), MIN_SIDE / 2)
    x0, x1 = max(0, int(cx - half_w)), min(image_size[1], int(np.ceil(cx + half_w)))
    y0, y1 = max(0, int(cy - half_h)), min(image_size[0], int(np.ceil(cy + half_h)))
    return x0, y0, x1, y1


def thumbnail(image: np.ndarray, labels: np.ndarray, hit: SearchHit) -> np.ndarray:
    """The crop of `image` around the hit's box, its track's outline drawn.

    Args:
        image: (H, W, 3) uint8 frame at the source size.
        labels: (h, w) the store's label map of that frame.
    """
    height, width = image.shape[:2]
    mask = resize_labels((labels == hit.track_id).astype(np.uint8), height, width)
    x0, y0, x1, y1 = crop_box(hit.box, hit.label_size, (height, width))
    picture = image[y0:y1, x0:x1].copy()
    edge = label_boundaries(mask[y0:y1, x0:x1], outline_width(height, width))
    picture[edge] = track_color(hit.track_id)
    return picture


def write_thumbnails(hits: Sequence[SearchHit], folder: str | Path) -> list[Path | None]:
    """One PNG per hit in `folder` (`<rank>-track<id>.png`); None (with a warning) for a hit
    whose source video cannot be read any more."""
    from PIL import Image

    from streamseg.errors import UserError
    from streamseg.video.decode import iter_frames

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path | None] = []
    readers: dict[str, StoreReader] = {}  # one open (and damage check) per store, not per hit
    for hit in hits:
        if not hit.source or not Path(hit.source).is_file():
            warnings.warn(f"{hit.source}: source video not found: no thumbnail", stacklevel=2)
            written.append(None)
            continue
        try:
            first = next(iter_frames(hit.source, max_frames=1)).time
            start = max(0.0, hit.best_time - first)
            frame = next(iter_frames(hit.source, start=start, max_frames=1), None)
        except UserError as error:
            warnings.warn(f"{hit.source}: {error}: no thumbnail", stacklevel=2)
            written.append(None)
            continue
        if frame is None:
            written.append(None)
            continue
        if hit.store not in readers:
            readers[hit.store] = StoreReader(hit.store)
        labels = readers[hit.store].labels(hit.best_frame)
        path = folder / f"{hit.rank:03d}-track{hit.track_id}.png"
        Image.fromarray(thumbnail(frame.image, labels, hit)).save(path)
        written.append(path)
    return written
