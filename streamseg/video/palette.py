"""Track colours, and painting a label map in them with one table lookup for the whole frame.

Each track id keeps one colour everywhere (`track_color`); a frame's palette holds the colours
of the ids present in it, indexed by slot (1-based position among those ids, 0 = unlabeled),
so painting is a gather from a table of a few dozen rows.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

_GOLDEN_RATIO_CONJUGATE = 0.618033988749895
PIXEL = np.dtype("V3")  # one RGB pixel as a single item
BAND_ROWS = 32  # rows per band of the table lookups (label_slots, paint_slots)


@lru_cache(maxsize=4096)
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


def slot_palette(ids: np.ndarray) -> np.ndarray:
    """The colour of every slot.

    Args:
        ids: (N,) track ids > 0, slot k + 1 holds ids[k].
    Returns:
        (N + 1, 3) uint8 RGB; row 0 (unlabeled) is black.
    """
    colours = np.zeros((len(ids) + 1, 3), np.uint8)
    if len(ids):
        colours[1:] = [track_color(int(track_id)) for track_id in ids]
    return colours


def paint_slots(slot: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Every pixel in its slot's colour.

    Args:
        slot: (H, W) integer slots, each < len(colours).
        colours: (S, 3) uint8 RGB per slot.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    height, width = slot.shape
    # Whole pixels as 3-byte items: one gather moves a pixel at a time, not a byte. A band of
    # rows at a time keeps numpy's intp copy of the index in cache; every slot is in the
    # table, so "clip" only skips the bounds check.
    table = np.ascontiguousarray(colours, np.uint8).view(PIXEL).reshape(-1)
    painted = np.empty((height, width), PIXEL)
    for top in range(0, height, BAND_ROWS):
        band = slice(top, top + BAND_ROWS)
        np.take(table, slot[band], out=painted[band], mode="clip")
    return painted.view(np.uint8).reshape(height, width, 3)


def pixels(image: np.ndarray) -> np.ndarray:
    """A view of a C-contiguous (H, W, 3) uint8 image as (H, W) 3-byte items, so masked copies
    move whole pixels under an (H, W) mask (numpy's copies through an (H, W, 1) mask run a
    3-byte inner loop per pixel, several times slower)."""
    return image.view(PIXEL).reshape(image.shape[:2])
