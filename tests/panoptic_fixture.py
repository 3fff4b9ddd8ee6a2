"""Write tiny COCO-panoptic-format datasets (real PNG + JSON) for the training tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = [
    {"id": 7, "name": "square", "isthing": 1},
    {"id": 11, "name": "disc", "isthing": 1},
    {"id": 20, "name": "ground", "isthing": 0},
]
COLORS = {7: (220, 40, 40), 11: (40, 60, 230), 20: (60, 160, 60)}


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) int -> (H, W, 3) uint8, COCO panopticapi `id2rgb`."""
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], -1).astype(np.uint8)


def scene(seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """A ground (stuff) with one red square and one blue disc (things); segment ids > 255 so
    that decoding needs the green channel; image, id map and segments_info."""
    rng = np.random.default_rng(seed)
    ids = np.full((size, size), 300, dtype=np.int64)
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = COLORS[20]
    segments = [{"id": 300, "category_id": 20, "iscrowd": 0}]
    yy, xx = np.mgrid[:size, :size]
    side = int(rng.integers(size // 5, size // 3))
    y0, x0 = rng.integers(0, size - side, 2)
    square = (yy >= y0) & (yy < y0 + side) & (xx >= x0) & (xx < x0 + side)
    radius = int(rng.integers(size // 8, size // 5))
    cy, cx = rng.integers(radius, size - radius, 2)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    for region, seg_id, cat in ((square, 301, 7), (disc & ~square, 302, 11)):
        ids[region] = seg_id
        image[region] = COLORS[cat]
        segments.append({"id": seg_id, "category_id": cat, "iscrowd": 0})
    return image, ids, segments


def write_dataset(root: Path, count: int = 4, size: int = 64, seed: int = 0) -> Path:
    """Write `count` scenes to root/{images,panoptic,panoptic.json}; returns the JSON path."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "panoptic").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        image, ids, segments = scene(seed + i, size)
        Image.fromarray(image).save(root / "images" / f"{i:04d}.png")
        Image.fromarray(id_to_rgb(ids)).save(root / "panoptic" / f"{i:04d}.png")
        images.append({"id": i, "file_name": f"{i:04d}.png", "height": size, "width": size})
        annotations.append({"image_id": i, "file_name": f"{i:04d}.png", "segments_info": segments})
    path = root / "panoptic.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES})
    )
    return path
