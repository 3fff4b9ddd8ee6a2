"""Name boxes: "name id" in the track colour on a black box, at the labelled pixel nearest each
region's centre.

A box is opaque, so its pixels depend only on (track id, text, font size), never on the picture
under it: each box is rendered once, kept in a small LRU (`LabelBitmaps`, one shared by all
drawing) and pasted on every later frame, giving the same pixels as drawing it again. The
anchors of all regions come from one pass over a coarse grid of the slot map.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from streamseg.video.palette import track_color

# Boxes kept: a frame rarely shows more than a few dozen tracks, and a 1080p box is ~30 KB.
BITMAP_CAPACITY = 256
# Names are placed on a grid of about this many samples along the longer side: the search
# stays cheap on large frames and the position is still within a few pixels.
_ANCHOR_SAMPLES = 256
_MARGIN = 2  # pixels of black box around the text's ink


def font_size(height: int, width: int) -> int:
    """Text height in pixels for a frame: 1/28 of its shorter side, at least 8."""
    return max(8, min(height, width) // 28)


def label_text(track_id: int, names: Mapping[int, str]) -> str:
    """ "name 7", or "#7" for an id without a name."""
    name = names.get(track_id)
    return f"{name} {track_id}" if name else f"#{track_id}"


@lru_cache(maxsize=16)
def _font(size: int):  # -> ImageFont.FreeTypeFont | ImageFont.ImageFont
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def render_label(text: str, colour: tuple[int, int, int], size: int) -> np.ndarray:
    """One name box: `text` in `colour` on black, with a 2-pixel margin around its ink.

    Returns:
        (box_h, box_w, 3) uint8 RGB, read-only.
    """
    from PIL import Image, ImageDraw

    font = _font(size)
    # Measured the way it is drawn (an RGB image's draw, so the same font mode).
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox(
        (0, 0), text, font=font
    )
    box = Image.new("RGB", (right - left + 2 * _MARGIN, bottom - top + 2 * _MARGIN))
    ImageDraw.Draw(box).text((_MARGIN - left, _MARGIN - top), text, fill=colour, font=font)
    bitmap = np.array(box)
    bitmap.flags.writeable = False
    return bitmap


class LabelBitmaps:
    """Rendered name boxes by (track id, text, font size), least recently used dropped first.

    Thread-safe: the file run's overlay writer and a live run's may draw at the same time.
    """

    def __init__(self, capacity: int = BITMAP_CAPACITY) -> None:
        self.capacity = capacity
        self._boxes: OrderedDict[tuple[int, str, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, track_id: int, text: str, size: int) -> np.ndarray:
        """The box of `text` for `track_id` at font `size`: (box_h, box_w, 3) uint8."""
        key = (track_id, text, size)
        with self._lock:
            bitmap = self._boxes.get(key)
            if bitmap is not None:
                self._boxes.move_to_end(key)
                return bitmap
        # Rendered outside the lock; two threads missing the same key both render it, harmless.
        bitmap = render_label(text, track_color(track_id), size)
        with self._lock:
            self._boxes[key] = bitmap
            while len(self._boxes) > self.capacity:
                self._boxes.popitem(last=False)
        return bitmap

    def clear(self) -> None:
        with self._lock:
            self._boxes.clear()

    def __len__(self) -> int:
        return len(self._boxes)


SHARED_BITMAPS = LabelBitmaps()


def label_anchors(slot: np.ndarray, count: int) -> np.ndarray:
    """Where each region's name goes: its labelled pixel nearest its centroid (inside the
    region even when it is not convex), searched on a grid of about 256 samples along the
    longer side; a region the grid misses (thinner than a grid step) is searched at full size.

    Args:
        slot: (H, W) integer slots, 0 = unlabeled.
        count: number of slots (1..count are looked up).
    Returns:
        (count, 2) int64 (y, x) per slot 1..count; (-1, -1) for a slot with no pixel.
    """
    height, width = slot.shape
    step = max(1, max(height, width) // _ANCHOR_SAMPLES)
    offset = step // 2
    rows, cols = np.nonzero(slot[offset::step, offset::step])
    group = slot[offset::step, offset::step][rows, cols].astype(np.intp)
    anchors = _nearest_to_centroids(group, rows * step + offset, cols * step + offset, count)
    for missing in np.flatnonzero(anchors[:, 0] < 0).tolist():
        ys, xs = np.nonzero(slot == missing + 1)
        if ys.size:
            anchors[missing] = _nearest_to_centroids(np.ones(ys.size, np.intp), ys, xs, 1)[0]
    return anchors


def _nearest_to_centroids(
    group: np.ndarray, ys: np.ndarray, xs: np.ndarray, count: int
) -> np.ndarray:
    """Per group, the point nearest the group's centroid (the first in the given order on ties).

    Args:
        group: (P,) group of each point, 1..count.
        ys, xs: (P,) integer coordinates.
    Returns:
        (count, 2) int64 (y, x) per group 1..count; (-1, -1) for a group with no point.
    """
    anchors = np.full((count, 2), -1, np.int64)
    if group.size == 0:
        return anchors
    ys, xs = ys.astype(np.int64), xs.astype(np.int64)
    points = np.bincount(group, minlength=count + 1)
    # Sums of integer coordinates are exact in float64, so these means (and distances) are the
    # very numbers a per-region ys.mean() gives.
    safe = np.maximum(points, 1)
    mean_y = np.bincount(group, weights=ys, minlength=count + 1) / safe
    mean_x = np.bincount(group, weights=xs, minlength=count + 1) / safe
    distance = (ys - mean_y[group]) ** 2 + (xs - mean_x[group]) ** 2
    # Per-group minimum, then the first point reaching it (a per-group argmin); 10x cheaper
    # than sorting the points by (group, distance).
    least = np.full(count + 1, np.inf)
    np.minimum.at(least, group, distance)
    reaching = np.flatnonzero(distance == least[group])
    groups, first = np.unique(group[reaching], return_index=True)
    nearest = reaching[first]
    anchors[groups - 1] = np.stack([ys[nearest], xs[nearest]], axis=1)
    return anchors


def draw_names(
    image: np.ndarray,
    slot: np.ndarray,
    ids: np.ndarray,
    names: Mapping[int, str],
    bitmaps: LabelBitmaps | None = None,
) -> None:
    """Paste each region's name box ("name id" on black) centred on its anchor, kept inside the
    frame, in id order (a later box covers an earlier one). Draws into `image`.

    Args:
        image: (H, W, 3) uint8 RGB, written in place.
        slot: (H, W) integer slots, slot k + 1 = ids[k], 0 = unlabeled.
        ids: (N,) track ids, ascending.
        names: class name per track id.
        bitmaps: the box cache (None: the shared one).
    """
    bitmaps = SHARED_BITMAPS if bitmaps is None else bitmaps
    height, width = slot.shape
    size = font_size(height, width)
    anchors = label_anchors(slot, len(ids))
    for (anchor_y, anchor_x), track_id in zip(anchors.tolist(), ids.tolist(), strict=True):
        if anchor_y < 0:
            continue  # not on this map
        box = bitmaps.get(track_id, label_text(track_id, names), size)
        box_h, box_w = box.shape[:2]
        x = min(max(anchor_x - box_w // 2, 0), max(0, width - box_w))
        y = min(max(anchor_y - box_h // 2, 0), max(0, height - box_h))
        # A box larger than the frame is cut at its right / bottom edge, as drawing clips it.
        image[y : y + box_h, x : x + box_w] = box[: height - y, : width - x]
