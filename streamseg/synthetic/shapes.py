"""Polygon outlines of the six thing shapes and their rasterization to exact masks.

The same rasterized mask paints the object and labels it in the ground truth (no
anti-aliasing), so every labelled pixel is exactly a painted pixel.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

# Unit outlines (circumradius 1, pointing up at angle 0), scaled so that all shapes have a
# similar area for the same radius; the circle is a 48-gon.
_STAR_INNER = 0.45
_CROSS_ARM = 0.36


def _regular(sides: int, phase: float = 0.0) -> np.ndarray:
    angles = phase + 2.0 * math.pi * np.arange(sides) / sides
    return np.stack([np.sin(angles), -np.cos(angles)], axis=1)


def _star() -> np.ndarray:
    angles = math.pi * np.arange(10) / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, _STAR_INNER)
    return np.stack([radii * np.sin(angles), -radii * np.cos(angles)], axis=1)


def _cross() -> np.ndarray:
    a, b = _CROSS_ARM, 1.0
    points = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a)]
    points += [(-b, a), (-b, -a), (-a, -a)]
    return np.asarray(points, dtype=np.float64) * 0.85


UNIT_OUTLINES: dict[str, np.ndarray] = {
    "circle": _regular(48) * 0.85,
    "square": _regular(4, math.pi / 4) * 0.95,
    "triangle": _regular(3) * 1.05,
    "star": _star() * 1.1,
    "hexagon": _regular(6) * 0.9,
    "cross": _cross(),
}


def shape_polygon(
    shape: str, center_x: float, center_y: float, radius: float, angle: float
) -> np.ndarray:
    """Vertices of a shape placed in the image.

    Args:
        shape: one of UNIT_OUTLINES.
        center_x, center_y: centre in pixels.
        radius: scale in pixels (about the circumradius).
        angle: rotation in radians, clockwise on screen.

    Returns: (V, 2) float64 (x, y) vertices.
    """
    unit = UNIT_OUTLINES[shape]
    cos, sin = math.cos(angle), math.sin(angle)
    rotated = unit @ np.array([[cos, sin], [-sin, cos]])
    return rotated * radius + np.array([center_x, center_y])


def rasterize(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Filled polygon as a mask (pixels whose area PIL's rasterizer fills).

    Returns: (H, W) bool.
    """
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon.tolist()], fill=1)
    return np.asarray(canvas, dtype=bool)
