"""`LabelBuffer`: a block's label maps as one (n, H, W) array, reused from block to block.

The store writes a block's label maps with one zarr call, which needs them as one array.
Stacking them allocated that array afresh each time (16 frames at 1080p: 128 MB), and fresh
pages cost a page fault each: in a 1080p run the stack was the writer thread's largest cost,
above zarr and zstd (docs/BENCHMARKS.md section 11). The buffer keeps one array for the run
and grows only when a block holds more frames than any before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class LabelBuffer:
    """Rows of (H, W) int32 label maps, appended in order and taken together.

    Usage:
        buffer.extend(block.labels)
        store.append_labels(buffer.rows())
        buffer.clear()                # after the write (the rows are then overwritten)
    """

    def __init__(self, label_size: tuple[int, int]) -> None:
        self.label_size = (int(label_size[0]), int(label_size[1]))
        self._array = np.empty((0, *self.label_size), np.int32)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def extend(self, maps: Sequence[np.ndarray]) -> None:
        """Append (H, W) maps (any integer type; stored as int32).

        Raises:
            ValueError: a map is not of the buffer's label size.
        """
        need = self._count + len(maps)
        if need > self._array.shape[0]:
            grown = np.empty((max(need, 2 * self._array.shape[0]), *self.label_size), np.int32)
            grown[: self._count] = self._array[: self._count]
            self._array = grown
        for row, labels in enumerate(maps, start=self._count):
            if labels.shape != self.label_size:
                raise ValueError(
                    f"label map of shape {labels.shape}, the store's is {self.label_size}"
                )
            self._array[row] = labels
        self._count = need

    def rows(self) -> np.ndarray:
        """(n, H, W) int32: the maps appended since the last `clear` (a view, valid until the
        next `extend` after a `clear`)."""
        return self._array[: self._count]

    def clear(self) -> None:
        """Forget the rows; the memory is kept for the next block."""
        self._count = 0
