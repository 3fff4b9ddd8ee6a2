"""COCO-panoptic PNGs: segment ids as colours, id = R + 256 G + 256^2 B (0 = no segment).

The format of cocodataset/panopticapi (Kirillov et al., "Panoptic Segmentation", CVPR 2019),
also used by VIPSeg. Every reader and writer of such PNGs in streamseg (ground-truth writers,
training data, evaluation, image outputs, exports) goes through this one codec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamseg.errors import UserError

MAX_PANOPTIC_ID = 256**3 - 1


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Segment ids -> COCO-panoptic colours.

    Args:
        ids: (H, W) integer ids in [0, 256^3).
    Returns:
        (H, W, 3) uint8 with id = R + 256 G + 256^2 B.
    Raises:
        ValueError: an id outside [0, 256^3) (it has no colour; wrapping would alias another).
    """
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_PANOPTIC_ID):
        raise ValueError(f"panoptic ids must be in [0, {MAX_PANOPTIC_ID}]")
    ids = ids.astype(np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO-panoptic colours -> segment ids. (H, W, 3) uint8 -> (H, W) uint32."""
    rgb = np.asarray(rgb).astype(np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def read_png(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A PNG as an array ((H, W) or (H, W, C)), checked against `size` = (H, W) if given.

    Raises:
        UserError: a missing or unreadable file, or a size other than `size`.
    """
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as error:
        raise UserError(f"{path}: not a readable image ({error})") from None
    if size is not None and tuple(array.shape[:2]) != tuple(size):
        raise UserError(
            f"{path}: size {array.shape[0]}x{array.shape[1]} differs from the ground truth's "
            f"{size[0]}x{size[1]} (height x width)"
        )
    return array


def read_panoptic_png(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A COCO/VIPSeg panoptic PNG as ids, checked as `read_png`. Returns: (H, W) uint32.

    Raises:
        UserError: as `read_png`, or a PNG without RGB channels (an id needs all three).
    """
    array = read_png(path, size)
    if array.ndim != 3 or array.shape[2] < 3:
        raise UserError(f"{path}: a panoptic PNG must be RGB (id = R + 256 G + 256^2 B)")
    return rgb_to_id(array[..., :3])


def write_panoptic_png(path: str | Path, ids: np.ndarray) -> None:
    """Write (H, W) ids in [0, 256^3) as a COCO-panoptic PNG."""
    from PIL import Image

    Image.fromarray(id_to_rgb(ids)).save(path, format="PNG")
