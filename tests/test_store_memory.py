"""Bounded-memory reads: a track's mask over a whole long store streams through
`iter_track_mask` with a peak allocation that does not grow with the store's length."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np

from streamseg.video.store import LabelStore, open_store

SIZE = (32, 32)
BLOCK = 500  # frames per write


def _long_store(path: Path, frames: int) -> Path:
    """`frames` frames with one track (id 3) present in all of them, moving one column a
    frame; its mask is the same size in every frame."""
    store = LabelStore.open(path, label_size=SIZE, identity={}, attrs={})
    for t0 in range(0, frames, BLOCK):
        n = min(BLOCK, frames - t0)
        t = np.arange(t0, t0 + n)
        labels = np.zeros((n, *SIZE), np.int32)
        columns = (t % 12)[:, None] + np.arange(4)[None, :]
        labels[np.arange(n)[:, None], 5, columns] = 3
        one = np.ones(n)
        segments = {
            "frame": np.arange(n),
            "track_id": 3 * one,
            "class_id": 0 * one,
            "score": one,
            "area": 4 * one,
            "bbox_x": t % 12,
            "bbox_y": 5 * one,
            "bbox_w": 4 * one,
            "bbox_h": one,
            "is_thing": one,
        }
        frames_table = {"index": t, "pts": t, "time": t / 30, "keyframe": 0 * t, "corrupt": 0 * t}
        store.write_block(labels, frames_table, segments, tracker_state="{}")
    store.finish()
    return path


def _peak_of_streaming_the_mask(path: Path) -> tuple[int, int]:
    """(peak bytes allocated, pixels seen) while the whole track's mask is streamed."""
    reader = open_store(path)
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        pixels = 0
        for _, mask in reader.iter_track_mask(3):
            pixels += int(mask.sum())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, pixels


def test_track_mask_peak_memory_does_not_grow_with_the_store(tmp_path: Path) -> None:
    short = _long_store(tmp_path / "short.zarr", 1_000)
    long = _long_store(tmp_path / "long.zarr", 10_000)
    peak_short, pixels_short = _peak_of_streaming_the_mask(short)
    peak_long, pixels_long = _peak_of_streaming_the_mask(long)
    # every frame was read: 4 pixels of the track in each
    assert (pixels_short, pixels_long) == (4_000, 40_000)
    # The whole long mask would be 10,000 x 1 KB = 10 MB (its labels 40 MB): the 9,000 frames
    # more of the long store would add 9 MB (36 MB) to a read that held them. The stream holds
    # one shard of 64 frames (256 KB of labels) and zarr's bookkeeping, whose garbage (asyncio
    # objects in reference cycles, freed when the cyclic collector runs) makes the peak vary
    # by up to about 1 MB from run to run whatever the length (1.2-2.4 MB seen for both).
    assert peak_long < peak_short + 4 * 1024 * 1024, (peak_short, peak_long)
    assert peak_long < 8 * 1024 * 1024, peak_long


def test_iter_track_mask_equals_the_whole_mask_on_a_range(tmp_path: Path) -> None:
    path = _long_store(tmp_path / "s.zarr", 300)
    reader = open_store(path)
    frames, masks = reader.track_mask(3)
    assert frames.tolist() == list(range(300))
    streamed = list(reader.iter_track_mask(3, start=60, stop=140))
    assert [t for t, _ in streamed] == list(range(60, 140))
    np.testing.assert_array_equal(np.stack([m for _, m in streamed]), masks[60:140])
    # the labels themselves, in pieces that cross shard boundaries
    pieces = list(reader.iter_labels(50, 200))
    np.testing.assert_array_equal(np.stack(pieces), reader.labels(slice(50, 200)))
