"""Drawing an overlay: coloured masks, outlines, class names and track ids over an image.

Pure functions (image + label map -> image), shared by still images (`streamseg image`) and
video (render.py). Each track id keeps one colour everywhere (`track_color`, palette.py).

A frame is composed in a few whole-frame passes: the label map numbered into 1-byte slots,
painted in the track colours (one table gather), blended with the image as (image * (256 - a)
+ colour * a + 128) >> 8 (a = the colour share in 1/256 steps), the image copied back where
nothing is labelled and the flat colour onto outlines (masked copies of whole pixels); names
are pasted from cached boxes (label_text.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from streamseg.video.label_text import draw_names
from streamseg.video.palette import BAND_ROWS, paint_slots, pixels, slot_palette, track_color

__all__ = [
    "MASK_ALPHA",
    "blend",
    "draw_overlay",
    "label_boundaries",
    "label_slots",
    "outline_width",
    "resize_labels",
    "track_color",
]

# Share of the track colour in a mask pixel (the rest is the source image).
MASK_ALPHA = 0.5
_HALF = 128  # a share of 1/2 in 1/256 steps: blended with 8-bit operations only


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
    # Rows first, then columns: two plain takes instead of one 2-D fancy index.
    return np.take(np.take(labels, rows, axis=0), cols, axis=1)


def outline_width(height: int, width: int) -> int:
    """Outline thickness in pixels: 1 up to about 600 px, 3 at 1080p, so outlines stay
    visible when a video is watched scaled down."""
    return max(1, round(min(height, width) / 360))


def label_boundaries(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels of a labelled region within `width` pixels of a different label (4-steps).

    Args:
        labels: (H, W) integer ids, 0 = unlabeled (a slot map gives the same answer, cheaper).
        width: outline thickness, grown inward (each extra pixel stays in its own region).
    Returns:
        (H, W) bool, True on the inner edge of every region with id > 0.
    """
    # differ_rows[i, x]: pixels (i, x) and (i + 1, x) have different labels; differ_cols likewise.
    differ_rows = labels[1:, :] != labels[:-1, :]
    differ_cols = labels[:, 1:] != labels[:, :-1]
    edge = np.zeros(labels.shape, bool)
    edge[1:, :] = differ_rows
    edge[:-1, :] |= differ_rows
    edge[:, 1:] |= differ_cols
    edge[:, :-1] |= differ_cols
    if width > 1:
        # In place, with two scratch masks: a 1080p outline is 3 pixels wide, and fresh
        # temporaries for each of its ~20 mask operations cost as much as the operations.
        same_rows = np.logical_not(differ_rows, out=differ_rows)
        same_cols = np.logical_not(differ_cols, out=differ_cols)
        rows, cols = np.empty_like(same_rows), np.empty_like(same_cols)
        for _ in range(width - 1):
            grown = edge.copy()
            grown[1:, :] |= np.logical_and(edge[:-1, :], same_rows, out=rows)
            grown[:-1, :] |= np.logical_and(edge[1:, :], same_rows, out=rows)
            grown[:, 1:] |= np.logical_and(edge[:, :-1], same_cols, out=cols)
            grown[:, :-1] |= np.logical_and(edge[:, 1:], same_cols, out=cols)
            edge = grown
    edge &= labels > 0
    return edge


def label_slots(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ids present (> 0, sorted) and each pixel's 1-based position among them (0 = none).

    Args:
        labels: (H, W) integer ids.
    Returns:
        ids: (N,) int64; slot: (H, W), uint8 when N < 256 (what palette images take), else
        int32.
    """
    present = _present_ids(labels)
    ids = present[present > 0].astype(np.int64)
    slot_type = np.uint8 if ids.size < 256 else np.int32
    if ids.size == 0:
        return ids, np.zeros(labels.shape, np.uint8)
    if present[0] < 0 or ids[-1] >= 1 << 22:
        slot = (np.searchsorted(ids, labels) + 1).astype(slot_type)
        slot[labels <= 0] = 0
        return ids, slot
    # Small ids (the usual case): one lookup in an id -> slot table, a band of rows at a time
    # so the index copy numpy makes (intp) stays in cache; every id is in the table, so
    # "clip" only skips the bounds check (and the buffered output it forces).
    table = np.zeros(int(ids[-1]) + 1, slot_type)
    table[ids] = np.arange(1, ids.size + 1)
    slot = np.empty(labels.shape, slot_type)
    for top in range(0, labels.shape[0], BAND_ROWS):
        np.take(table, labels[top : top + BAND_ROWS], out=slot[top : top + BAND_ROWS], mode="clip")
    return ids, slot


def _present_ids(labels: np.ndarray) -> np.ndarray:
    """The distinct values of an (H, W) label map, sorted: those at the start of a run in a row
    (every value starts at least one), so the sort sees a few per cent of the pixels."""
    if labels.size == 0:
        return np.zeros(0, np.int64)
    starts = labels[:, 1:] != labels[:, :-1]
    return np.unique(np.concatenate([labels[:, 0], labels[:, 1:][starts]]))


def blend(under: np.ndarray, over: np.ndarray, weight: int) -> np.ndarray:
    """(under * (256 - weight) + over * weight + 128) >> 8, exact, per channel.

    Args:
        under, over: (..., 3) uint8, the same shape.
        weight: share of `over` in 1/256 steps, 0..256.
    Returns:
        uint8 array of their shape.
    """
    if weight == _HALF:
        # (u + o + 1) >> 1 without widening: (u | o) - ((u ^ o) >> 1) is the rounded-up mean.
        out = np.bitwise_or(under, over)
        half = np.bitwise_xor(under, over)
        half >>= 1
        out -= half
        return out
    out = under.astype(np.uint16)
    out *= 256 - weight
    tint = over.astype(np.uint16)
    tint *= weight
    out += tint
    out += 128
    out >>= 8
    return out.astype(np.uint8)


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
        alpha: colour share inside masks (0 = image only, 1 = flat colour), in 1/256 steps;
            clipped to 0..1.
        outlines: draw region boundaries in full colour.
        text: write "name id" at each region.
    Returns:
        (H, W, 3) uint8 RGB, a new array.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    height, width = image.shape[:2]
    labels = np.asarray(labels)
    if labels.shape[0] <= height and labels.shape[1] <= width:
        # Enlarging samples every label pixel, so the ids survive: number them on the small
        # map and enlarge the 1-byte slots instead of the ids.
        ids, slot = label_slots(labels)
        slot = resize_labels(slot, height, width)
    else:
        ids, slot = label_slots(resize_labels(labels, height, width))
    if ids.size == 0:
        return image.copy()
    image = np.ascontiguousarray(image, np.uint8)
    weight = int(round(min(max(alpha, 0.0), 1.0) * 256))
    colour = paint_slots(slot, slot_palette(ids))
    out = blend(image, colour, weight)
    np.copyto(pixels(out), pixels(image), where=slot == 0)
    if outlines:
        edge = label_boundaries(slot, width=outline_width(height, width))
        np.copyto(pixels(out), pixels(colour), where=edge)
    if text:
        draw_names(out, slot, ids, names or {})
    return out
