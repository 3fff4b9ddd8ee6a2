"""COCO run-length encoding of binary masks, compatible with pycocotools (no dependency).

Format (pycocotools `maskApi.c`): the mask is read in column-major (Fortran) order; `counts`
alternate runs of 0 and 1 starting with 0 (so the first run may be 0 long). The compressed
form packs each count (after the third, as the difference to the count two before) into
6-bit characters offset by 48, 5 bits of value per character plus a continuation bit.
"""

from __future__ import annotations

import numpy as np


def mask_to_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts of a mask.

    Args:
        mask: (H, W) bool (or 0/1).
    Returns:
        run lengths, alternating 0-runs and 1-runs, starting with a 0-run.
    """
    flat = np.asarray(mask, bool).ravel(order="F")
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(edges).tolist()
    if flat[0]:
        runs = [0, *runs]
    return [int(r) for r in runs]


def counts_to_mask(counts: list[int], height: int, width: int) -> np.ndarray:
    """Inverse of `mask_to_counts`: (height, width) bool."""
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, np.asarray(counts, np.int64))
    if flat.size != height * width:
        raise ValueError(f"RLE covers {flat.size} pixels, expected {height * width}")
    return flat.reshape((width, height)).T.copy()


def compress_counts(counts: list[int]) -> str:
    """COCO compressed RLE string of `counts` (what `pycocotools.mask.encode` returns)."""
    out = []
    for i, count in enumerate(counts):
        value = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            char = value & 0x1F
            value >>= 5  # arithmetic shift, as the C long in pycocotools
            more = value != -1 if char & 0x10 else value != 0
            if more:
                char |= 0x20
            out.append(chr(char + 48))
    return "".join(out)


def decompress_counts(text: str) -> list[int]:
    """Inverse of `compress_counts`."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value = 0
        shift = 0
        more = True
        while more:
            char = ord(text[position]) - 48
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            position += 1
            shift += 5
            if not more and char & 0x10:
                value |= -1 << shift  # sign-extend
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def encode_mask(mask: np.ndarray) -> dict[str, object]:
    """COCO RLE dict `{"size": [H, W], "counts": str}` of an (H, W) bool mask, as
    `pycocotools.mask.encode(np.asfortranarray(mask))` gives (counts as str, not bytes)."""
    height, width = np.asarray(mask).shape
    return {"size": [int(height), int(width)], "counts": compress_counts(mask_to_counts(mask))}


def decode_mask(rle: dict[str, object]) -> np.ndarray:
    """(H, W) bool mask of a COCO RLE dict (compressed str/bytes or uncompressed list)."""
    height, width = (int(v) for v in rle["size"])  # type: ignore[union-attr]
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = decompress_counts(counts)
    return counts_to_mask(list(counts), height, width)  # type: ignore[arg-type]
