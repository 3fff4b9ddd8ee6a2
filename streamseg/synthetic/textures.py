"""Procedural stuff textures (grass, water, sand, sky, brick, snow) as vectorized numpy.

Each texture fills a whole (H, W) canvas; the scene keeps only the pixels of its region, and a
video crops a panning window out of one larger canvas, so the texture moves with the world.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth noise in [0, 1]: a random grid of about (H/cell, W/cell) bilinearly upsampled.

    Returns: (H, W) float32.
    """
    grid_h = max(2, int(round(height / cell)) + 1)
    grid_w = max(2, int(round(width / cell)) + 1)
    grid = rng.random((grid_h, grid_w), dtype=np.float32)
    image = Image.fromarray(grid, mode="F").resize((width, height), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32)


def _mix(base: tuple[int, int, int], other: tuple[int, int, int], t: np.ndarray) -> np.ndarray:
    """Per-pixel blend of two colours; t: (H, W) in [0, 1] -> (H, W, 3) float32."""
    a = np.asarray(base, dtype=np.float32)
    b = np.asarray(other, dtype=np.float32)
    return a + (b - a) * t[..., None]


def _grass(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # Blades: fine noise stretched vertically, over patchy low-frequency shading.
    blades = np.asarray(
        Image.fromarray(rng.random((max(2, h // 6), w), dtype=np.float32), mode="F").resize(
            (w, h), Image.BILINEAR
        )
    )
    patches = value_noise(rng, h, w, 48)
    image = _mix((40, 110, 35), (110, 185, 70), 0.6 * blades + 0.4 * patches)
    return image


def _water(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    warp = value_noise(rng, h, w, 24) * 6.0
    waves = 0.5 + 0.5 * np.sin(y * 0.55 + np.sin(x * 0.07) * 2.0 + warp)
    depth = value_noise(rng, h, w, 64)
    return _mix((20, 70, 140), (90, 160, 215), 0.55 * waves + 0.45 * depth)


def _sand(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    grains = rng.random((h, w), dtype=np.float32)
    dunes = value_noise(rng, h, w, 40)
    return _mix((190, 160, 100), (240, 215, 160), 0.35 * grains + 0.65 * dunes)


def _sky(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    gradient = np.broadcast_to(np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None], (h, w))
    clouds = np.clip((value_noise(rng, h, w, 40) - 0.55) * 3.0, 0.0, 1.0)
    image = _mix((90, 150, 230), (175, 215, 245), gradient)
    return image + (np.float32(250.0) - image) * clouds[..., None] * 0.8


def _brick(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    brick_h, brick_w = 10, 22
    y = np.arange(h)[:, None]
    x = np.arange(w)[None, :]
    row = y // brick_h
    shifted = x + (row % 2) * (brick_w // 2)
    mortar = ((y % brick_h) < 2) | ((shifted % brick_w) < 2)
    # One shade per brick, looked up by its (row, column) cell.
    cell_shade = rng.random((h // brick_h + 2, w // brick_w + 3), dtype=np.float32)
    shade = cell_shade[row, shifted // brick_w]
    speckle = rng.random((h, w), dtype=np.float32) * 0.25
    image = _mix((140, 50, 35), (190, 90, 60), 0.75 * shade + speckle)
    image[mortar] = (200, 195, 185)
    return image


def _snow(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    drifts = value_noise(rng, h, w, 56)
    image = _mix((200, 210, 225), (250, 252, 255), drifts)
    sparkle = rng.random((h, w), dtype=np.float32) > 0.985
    image[sparkle] = 255.0
    return image


TEXTURES = {
    "grass": _grass,
    "water": _water,
    "sand": _sand,
    "sky": _sky,
    "brick": _brick,
    "snow": _snow,
}


def render_texture(name: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A full canvas of one stuff texture.

    Returns: (H, W, 3) float32 in [0, 255].
    """
    return TEXTURES[name](rng, height, width).astype(np.float32, copy=False)
