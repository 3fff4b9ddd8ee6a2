"""The overlay drawing as it was before it was vectorized (streamseg/video/draw.py at commit
331e481): per-slot uint16 blend tables, boolean-mask outline painting, one Pillow canvas per
frame with every name box measured and rendered again on every frame. Kept only as the
reference the new drawing must equal (tests/test_draw_vectorized.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

# Share of the track colour in a mask pixel (the rest is the source image).
MASK_ALPHA = 0.5
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
