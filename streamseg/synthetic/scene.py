"""Still scenes of the shapes world: textured stuff regions with coloured shapes on top.

`render_image(seed, config)` is a pure function of its arguments: the same seed gives the same
pixels and the same ground truth on every machine (numpy's PCG64 + PIL's rasterizer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from streamseg.synthetic.captions import write_caption
from streamseg.synthetic.categories import (
    COLORS,
    ID_FACTOR,
    SHAPES,
    STUFF,
    shapes_categories,
    stuff_category_id,
    thing_category_id,
)
from streamseg.synthetic.shapes import rasterize, shape_polygon
from streamseg.synthetic.textures import render_texture


@dataclass(frozen=True)
class SceneConfig:
    """How still scenes are sampled."""

    height: int = 256  # image height in pixels
    width: int = 256  # image width in pixels
    max_objects: int = 6  # things per image (at least 1)
    single_object_prob: float = 0.3  # share of images with exactly one thing (helps CLIP)
    min_radius: float = 0.07  # object radius range, as a fraction of min(height, width)
    max_radius: float = 0.2
    max_stuff: int = 3  # stuff classes per image (1..max_stuff)
    min_visible: float = 0.45  # an occluded thing keeps at least this share of its pixels
    min_pixels: int = 24  # and at least this many pixels
    # A thing's centre stays this many radii from the border (0.3: mostly outside is allowed;
    # 1.0: whole shapes, which the small CLIP needs to learn shape at all).
    edge_margin: float = 0.3


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a ground-truth panoptic map (COCO `segments_info` entry)."""

    id: int  # category_id * 1000 + instance (track id for things, 0 for stuff)
    category_id: int
    isthing: bool
    area: int
    bbox: tuple[int, int, int, int]  # x, y, w, h
    track_id: int = 0  # thing instance number (stable across a video's frames), 0 for stuff

    def to_coco(self) -> dict:
        """The COCO panoptic entry (+ track_id, which VIPSeg-style readers use)."""
        return {
            "id": self.id,
            "category_id": self.category_id,
            "iscrowd": 0,
            "area": self.area,
            "bbox": list(self.bbox),
            "track_id": self.track_id,
        }


@dataclass
class Scene:
    """A rendered image with its exact ground truth."""

    image: np.ndarray  # (H, W, 3) uint8
    panoptic: np.ndarray  # (H, W) int32 segment ids, every pixel labelled (no 0)
    segments: list[SegmentInfo]
    caption: str = ""


@dataclass
class Thing:
    """A placed coloured shape."""

    track_id: int
    color_name: str
    shape: str
    center_x: float
    center_y: float
    radius: float
    angle: float
    shade: float = 1.0  # brightness factor of the paint
    category_id: int = field(init=False)

    def __post_init__(self) -> None:
        self.category_id = thing_category_id(self.color_name, self.shape)

    def polygon(self, offset_x: float = 0.0) -> np.ndarray:
        """(V, 2) vertices in image coordinates (the world shifted by -offset_x)."""
        return shape_polygon(
            self.shape, self.center_x - offset_x, self.center_y, self.radius, self.angle
        )


def sample_stuff_layout(
    rng: np.random.Generator, height: int, width: int, max_stuff: int
) -> tuple[np.ndarray, list[str]]:
    """Regions of 1..max_stuff stuff classes: a wavy horizon, the ground maybe split in two.

    Returns: labels (H, W) int index into names, names (distinct stuff names).
    """
    count = int(rng.integers(1, max_stuff + 1))
    names = [str(n) for n in rng.choice(list(STUFF), size=count, replace=False)]
    if count >= 2 and "sky" in names and rng.random() < 0.8:
        names.remove("sky")
        names.insert(0, "sky")  # sky is usually on top
    labels = np.zeros((height, width), dtype=np.int64)
    if count == 1:
        return labels, names
    y = np.arange(height, dtype=np.float64)[:, None]
    x = np.arange(width, dtype=np.float64)[None, :]
    horizon = height * rng.uniform(0.3, 0.6) + height * 0.06 * np.sin(
        x * rng.uniform(0.01, 0.05) + rng.uniform(0, 2 * math.pi)
    )
    labels[np.broadcast_to(y >= horizon, labels.shape)] = 1
    if count == 3:
        slope = rng.uniform(-0.8, 0.8)
        split = width * rng.uniform(0.3, 0.7) + slope * (y - height / 2)
        split = split + 4.0 * np.sin(y * 0.1)
        labels[(labels == 1) & (x >= split)] = 2
    # Drop classes that ended up with no pixels (a horizon off the image, say).
    present = [i for i in range(count) if np.any(labels == i)]
    remap = np.full(count, -1, dtype=np.int64)
    remap[present] = np.arange(len(present))
    return remap[labels], [names[i] for i in present]


def render_stuff(rng: np.random.Generator, labels: np.ndarray, names: list[str]) -> np.ndarray:
    """Texture each stuff region. Returns: (H, W, 3) float32."""
    height, width = labels.shape
    image = np.zeros((height, width, 3), dtype=np.float32)
    for index, name in enumerate(names):
        texture = render_texture(name, rng, height, width)
        region = labels == index
        image[region] = texture[region]
    return image


def _paint(image: np.ndarray, mask: np.ndarray, color: np.ndarray) -> None:
    """Fill a mask with a flat colour and a darker 2-px inner outline (shape cue)."""
    inner = mask.copy()
    for _ in range(2):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    image[mask] = color * 0.55
    image[inner] = color


def compose(
    stuff_image: np.ndarray,
    stuff_labels: np.ndarray,
    stuff_names: list[str],
    things: list[Thing],
    offset_x: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, list[SegmentInfo]]:
    """Paint things (in list order, later on top) over the stuff and build the panoptic map.

    Args:
        stuff_image: (H, W, 3) float32 texture of this view.
        stuff_labels: (H, W) int index into stuff_names.
        stuff_names: stuff class names.
        things: objects in world coordinates; the view starts at x = offset_x.
        offset_x: camera position in the world.

    Returns: image (H, W, 3) uint8, panoptic (H, W) int32, segments (stuff first, then
    things by track id; only segments with at least one pixel).
    """
    height, width = stuff_labels.shape
    stuff_ids = np.asarray(
        [stuff_category_id(name) * ID_FACTOR for name in stuff_names], dtype=np.int32
    )
    panoptic = stuff_ids[stuff_labels]
    image = stuff_image.copy()
    for thing in things:
        mask = rasterize(thing.polygon(offset_x), height, width)
        if not mask.any():
            continue
        color = np.asarray(COLORS[thing.color_name], dtype=np.float32) * thing.shade
        _paint(image, mask, np.clip(color, 0, 255))
        panoptic[mask] = thing.category_id * ID_FACTOR + thing.track_id
    return (
        np.clip(image + 0.5, 0, 255).astype(np.uint8),
        panoptic,
        segments_of(panoptic),
    )


def segments_of(panoptic: np.ndarray) -> list[SegmentInfo]:
    """Segment entries (area, bbox) of every id in a panoptic map, in increasing id order.

    Args:
        panoptic: (H, W) int ids `category_id * 1000 + instance`.
    """
    is_thing = {c.id: c.isthing for c in shapes_categories()}
    ids, inverse, areas = np.unique(panoptic, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(panoptic.shape)
    rows = np.arange(panoptic.shape[0])
    cols = np.arange(panoptic.shape[1])
    segments = []
    for index, (segment_id, area) in enumerate(zip(ids.tolist(), areas.tolist(), strict=True)):
        mask = inverse == index
        ys = rows[mask.any(axis=1)]
        xs = cols[mask.any(axis=0)]
        category_id = segment_id // ID_FACTOR
        segments.append(
            SegmentInfo(
                id=segment_id,
                category_id=category_id,
                isthing=is_thing[category_id],
                area=area,
                bbox=(int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)),
                track_id=segment_id % ID_FACTOR,
            )
        )
    return segments


def sample_thing(
    rng: np.random.Generator, track_id: int, height: int, width: int, config: SceneConfig
) -> Thing:
    """A random coloured shape whose centre lies inside the image."""
    side = min(height, width)
    radius = side * rng.uniform(config.min_radius, config.max_radius)
    margin = min(radius * config.edge_margin, 0.5 * side - 1)
    return Thing(
        track_id=track_id,
        color_name=str(rng.choice(list(COLORS))),
        shape=str(rng.choice(list(SHAPES))),
        center_x=rng.uniform(margin, width - margin),
        center_y=rng.uniform(margin, height - margin),
        radius=radius,
        angle=rng.uniform(0, 2 * math.pi),
        shade=rng.uniform(0.85, 1.1),
    )


def place_things(
    rng: np.random.Generator, count: int, height: int, width: int, config: SceneConfig
) -> list[Thing]:
    """Up to `count` things; a candidate is rejected if it hides too much of an earlier one."""
    things: list[Thing] = []
    full_areas: list[int] = []
    owner = np.full((height, width), -1, dtype=np.int64)
    for _ in range(count * 4):
        if len(things) == count:
            break
        thing = sample_thing(rng, len(things) + 1, height, width, config)
        mask = rasterize(thing.polygon(), height, width)
        area = int(mask.sum())
        if area < config.min_pixels:
            continue
        trial = owner.copy()
        trial[mask] = len(things)
        visible = np.bincount(trial[trial >= 0].ravel(), minlength=len(things) + 1)
        if any(
            visible[i] < max(config.min_visible * full_areas[i], config.min_pixels)
            for i in range(len(things))
        ):
            continue
        owner = trial
        things.append(thing)
        full_areas.append(area)
    return things


def render_image(seed: int, config: SceneConfig = SceneConfig()) -> Scene:
    """One still scene, deterministic from `seed`."""
    rng = np.random.default_rng(seed)
    height, width = config.height, config.width
    labels, names = sample_stuff_layout(rng, height, width, config.max_stuff)
    stuff_image = render_stuff(rng, labels, names)
    if rng.random() < config.single_object_prob:
        count = 1
    else:
        count = int(rng.integers(1, config.max_objects + 1))
    things = place_things(rng, count, height, width, config)
    image, panoptic, segments = compose(stuff_image, labels, names, things)
    caption = write_caption(segments, rng)
    return Scene(image=image, panoptic=panoptic, segments=segments, caption=caption)
