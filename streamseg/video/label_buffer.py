"""`LabelBuffer`: label maps as one (n, H, W) array, reused from write to write.

The store writer writes a group of label maps (store_writer.MAPS_PER_WRITE frames or more, or
what waits at a commit) with one zarr call, which needs them as one array. Stacking them
allocated that array afresh each time (a commit of 16 frames at 1080p: 128 MB),
and fresh pages cost a page fault each: in a 1080p run the stack was the writer thread's
largest cost, above zarr and zstd (docs/BENCHMARKS.md section 11). The buffer keeps one array
for the run and grows it only when a group holds more frames than any before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class LabelBuffer:
    """(H, W) label maps stacked into one int32 array that is reused by the next `stack`.

    Usage:
        store.append_labels(buffer.stack(waiting))  # the waiting (H, W) maps, in frame order
    """

    def __init__(self, label_size: tuple[int, int]) -> None:
        self.label_size = (int(label_size[0]), int(label_size[1]))
        self._array = np.empty((0, *self.label_size), np.int32)

    def stack(self, maps: Sequence[np.ndarray]) -> np.ndarray:
        """(n, H, W) int32 of the n maps (any integer type): a view of the buffer, valid until
        the next `stack`.

        Raises:
            ValueError: a map is not of the buffer's label size.
        """
        for labels in maps:
            if labels.shape != self.label_size:
                raise ValueError(
                    f"label map of shape {labels.shape}, the store's is {self.label_size}"
                )
        if len(maps) > self._array.shape[0]:
            self._array = np.empty((len(maps), *self.label_size), np.int32)
        rows = self._array[: len(maps)]
        for row, labels in zip(rows, maps, strict=True):
            row[...] = labels
        return rows
