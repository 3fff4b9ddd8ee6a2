"""`StoreWriter`: the background thread that writes `StoreBlock`s to a store (and overlay).

The segmenting loop never waits on zarr or the video encoder unless the writer is
`WRITER_QUEUE` blocks behind; an error in the thread is raised in the loop at its next `put`
(or at `close`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol

import numpy as np

from streamseg.video.block import StoreBlock, join_blocks
from streamseg.video.label_buffer import LabelBuffer
from streamseg.video.store import LabelStore

# Blocks waiting for the writer thread (bounded memory).
WRITER_QUEUE = 2
# Label maps are written in groups of at least this many frames (or at a commit). A zarr
# call costs about 1.5 ms at any size (CPU, one pyramid level of a 1080p map: 1.6 ms for its
# 135x240 level alone), and there are four per group at 1080p: at batch 1, one group a frame,
# the store's threads took 19 ms of CPU a frame, beside 34 ms in the network's own thread
# (its workers apart), on two cores. Groups of 4 made a live run at batch 1 9% faster
# (docs/BENCHMARKS.md section 12); 8 did no better. A group's maps wait as the tracker's own
# arrays (at most 3 frames: 24 MB at 1080p).
MAPS_PER_WRITE = 4


class OverlaySink(Protocol):
    """An overlay video being written (video/render.py, video/live_overlay.py)."""

    def write(
        self,
        image: np.ndarray,
        labels: np.ndarray | None = None,
        names: Mapping[int, str] | None = None,
        pts: int | None = None,
        time: float | None = None,
    ) -> None: ...


class StoreWriter:
    """Write blocks to `store` (and `overlay`) in a thread, committing when a block says so.

    Args:
        store: the open store.
        overlay: the overlay writer, or None.
        progress: called from the thread with the frames handed over so far (committed ones
            included), after each block with frames or a commit.
    """

    def __init__(
        self,
        store: LabelStore,
        overlay: OverlaySink | None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.overlay = overlay
        self._progress = progress
        self._frames = store.committed_frames
        self.error: BaseException | None = None
        self._queue: queue.Queue[StoreBlock | None] = queue.Queue(maxsize=WRITER_QUEUE)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def put(self, block: StoreBlock | None) -> None:
        """Queue a block (None: the end); re-raises an error of the thread."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self._queue.put(block, timeout=0.1)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise RuntimeError("store writer stopped") from self.error

    def close(self) -> None:
        """Finish the queued work; re-raise a writer error."""
        # The end mark goes in even after a writer error (`put` would raise first): the
        # thread drains the queue until it sees it, and joining it would wait forever.
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Close after an error elsewhere (or Ctrl-C): finish the queued work (a queued commit
        still commits), then give the store's lease back at once, not at process exit (a
        library caller or a batch worker lives on). Re-raises a writer error."""
        try:
            self.close()
        finally:
            self.store.close()

    def _run(self) -> None:
        # Label maps are written as soon as MAPS_PER_WRITE frames of them (or a commit) have
        # arrived (one zarr call per pyramid level); the table rows wait for the commit and
        # go in one write per column (zarr calls cost milliseconds each, and the tables are
        # small). Writing the maps at the commit instead left a run's last commit, 16 frames
        # of maps, to be written after the last batch, with the model done and one core idle
        # (docs/BENCHMARKS.md section 11).
        pending: list[StoreBlock] = []
        waiting: list[np.ndarray] = []  # maps not written yet, in frame order
        labels = LabelBuffer(self.store.label_size)
        try:
            while True:
                block = self._queue.get()
                if block is None:
                    return
                if self.overlay is not None:
                    for item in block.overlay:
                        self.overlay.write(
                            item.image, item.labels, item.track_names, pts=item.pts, time=item.time
                        )
                waiting.extend(block.labels)
                if waiting and (len(waiting) >= MAPS_PER_WRITE or block.commit is not None):
                    self.store.append_labels(labels.stack(waiting))
                    waiting.clear()
                # Only the table rows wait for the commit: the maps and pictures may go now.
                pending.append(replace(block, labels=(), overlay=()))
                self._frames += block.num_frames
                if block.commit is not None:
                    joined = join_blocks(pending)
                    self.store.write_block(
                        None,
                        joined.frames,
                        joined.segments,
                        commit=False,
                        embeddings=joined.segment_embeddings,
                    )
                    pending.clear()
                    self.store.commit(block.commit.tracker_state, block.commit.facts)
                if self._progress is not None and (block.num_frames or block.commit is not None):
                    self._progress(self._frames)
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
            self.error = error
            # keep draining so that the producer never blocks on a dead writer
            while True:
                try:
                    if self._queue.get(timeout=0.1) is None:
                        return
                except queue.Empty:
                    continue
