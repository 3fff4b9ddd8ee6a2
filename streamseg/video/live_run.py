"""`run_live`: segment a live source (URL, capture device, stdin) as it arrives.

```
LiveFrameSource (thread: decode, keep the newest) -> take <= batch -> segment -> track
    -> store writer (thread) [-> growing overlay] [-> --events JSON lines]
```
The same stages as a file run (`run_setup`, `SegmentAndTrack`, `StoreBlock`, `StoreWriter`);
what differs:
- frames come from `LiveFrameSource`: in live mode stale frames are dropped before inference,
  so a slow model never lags the source by more than `max_latency`; drops are counted in the
  store (attrs `live.dropped`, the commit record) and show as gaps in `frames/index`;
- the store is created at the first frame (the size is known only then), commits at least
  every second so readers follow, and is a new one each run (no resume for a live source);
- `segment_duration` rolls over to numbered stores (`out-0001.zarr`, `out-0002.zarr`, ...) by
  the frames' own time, one tracker across them (track ids continue);
- SIGINT / SIGTERM stop cleanly (the current batch finishes, the store is committed and
  finished); a second SIGINT exits at once (the store stays consistent up to its last commit,
  which is atomic).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from streamseg.config import LiveConfig, RunConfig
from streamseg.errors import UserError
from streamseg.model.segmenter_like import (
    SegmenterLike,
)
from streamseg.video.block import Commit, StoreBlock
from streamseg.video.events import EventWriter, frame_event
from streamseg.video.live_budget import BatchTimes
from streamseg.video.live_decode import (
    LiveFrameSource,
    check_live_settings,
    live_default,
    source_kind,
)
from streamseg.video.live_segment import LiveBatchSettings, live_batches
from streamseg.video.run_setup import (
    RunModel,
    check_run_settings,
    label_size_for,
    overlay_output,
    prepare_model,
    vocabulary_attrs,
)
from streamseg.video.run_summary import LiveSummary
from streamseg.video.segment_track import SegmentAndTrack, TrackedFrame
from streamseg.video.store import LabelStore, StoreReader, is_store
from streamseg.video.store_writer import StoreWriter
from streamseg.video.track import Tracker

# Longest time committed frames wait for a commit (readers of a live store follow this closely).
COMMIT_SECONDS = 1.0


def numbered_store(out: Path, number: int) -> Path:
    """`cam.zarr`, 1 -> `cam-0001.zarr` (rolled-over stores)."""
    suffix = out.suffix or ".zarr"
    return out.with_name(f"{out.stem if out.suffix else out.name}-{number:04d}{suffix}")


class _StopSignals:
    """First SIGINT / SIGTERM asks for a clean stop; a second SIGINT exits at once."""

    def __init__(self, on_stop: Callable[[], None]) -> None:
        self.requested: str | None = None
        self._on_stop = on_stop
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals can only be handled in the main thread (e.g. under a web app)
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, self._handle)

    def restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: Any) -> None:
        if self.requested is not None and number == signal.SIGINT:
            # Everything committed is already on disk (commits are atomic): just go.
            os.write(2, b"streamseg run: stopped at once (store kept up to its last commit)\n")
            os._exit(130)
        self.requested = "interrupted" if number == signal.SIGINT else "terminated"
        self._on_stop()


class _StoreSlot:
    """The store being written now, its writer thread, and its counters."""

    def __init__(
        self, path: Path, store: LabelStore, writer: StoreWriter, first_time: float
    ) -> None:
        self.path = path
        self.store = store
        self.writer = writer
        self.first_time = first_time
        self.rows = 0
        self.dropped_at_open = 0


def run_live(
    source: str | Path,
    out: str | Path,
    *,
    config: RunConfig | None = None,
    live: LiveConfig | None = None,
    segmenter: SegmenterLike | None = None,
    vocabulary: Any = None,
    overlay: str | Path | None = None,
    overwrite: bool = False,
    events: TextIO | None = None,
    progress: Callable[[int], None] | None = None,
    handle_signals: bool = True,
) -> LiveSummary:
    """Segment and track a live source into a label store (or numbered stores).

    Args:
        source: a network URL (rtsp/rtmp/http(s)/udp/tcp/...), a capture device (/dev/video0)
            or "-" for standard input (MPEG-TS / Matroska ...).
        out: the store (`.zarr`); with `live.segment_duration`, the base name of the numbered
            stores. An existing store is refused unless `overwrite`.
        config: model / tracker / store settings (decode settings other than `queue_size`
            do not apply to live sources); its `live` section says how the source is read.
        live: how the source is read, instead of `config.live` (`LiveConfig`).
        segmenter, vocabulary: as for `run_video`.
        overlay: a growing `.ts` or fragmented `.mp4` overlay.
        events: a text stream for the JSON-lines feed (e.g. sys.stdout), or None.
        progress: called from the writer thread with the frames handed over so far (per store).
        handle_signals: SIGINT / SIGTERM stop cleanly (main thread only).

    Raises:
        UserError: source cannot be opened (and no reconnect), existing store, bad settings.
    """
    began = time.monotonic()
    config = config or RunConfig()
    live = live or config.live
    out = Path(out)
    check_run_settings(config)
    if live.max_latency <= 0:
        raise UserError(f"--max-latency: must be more than 0, got {live.max_latency}")
    if live.segment_duration is not None and live.segment_duration <= 0:
        raise UserError(f"--segment-duration: must be more than 0, got {live.segment_duration}")
    check_live_settings(live)
    scale = config.store.label_scale
    rolling = live.segment_duration is not None
    first_path = numbered_store(out, 1) if rolling else out
    _check_new_store(first_path, overwrite)
    overlay_path = overlay_output(overlay, config)
    if overlay_path is not None:
        from streamseg.outputs import check_overlay_output

        check_overlay_output(
            overlay_path,
            inputs=[source],
            overwrite=overwrite,
            what="--overlay",
            suffixes=(".ts", ".mp4", ".m4v", ".mov"),
        )

    model = prepare_model(config, segmenter, vocabulary)
    names = model.names
    drop = live_default(source, live)
    frames = LiveFrameSource(source, live, drop=drop, queue_size=config.decode.queue_size)
    signals = _StopSignals(frames.stop)
    if handle_signals:
        signals.install()
    feed = EventWriter(events) if events is not None else None
    tracker = Tracker(config.tracker)
    batch_size = config.model.batch_size
    # The live settings in force (with the drop mode they resolved to) replace the section.
    settings = {**config.to_dict(), "live": {**asdict(live), "live": drop}}
    kind = source_kind(source)

    slot: _StoreSlot | None = None
    stores: list[str] = []
    overlay_writer: Any = None
    stage: SegmentAndTrack | None = None  # made at the first frame (the label size is known)
    processed = 0
    latencies: list[float] = []
    number = 0
    last_commit = time.monotonic()
    since_commit = 0
    # seconds from taking a batch to having it segmented, recent median (live_segment.py)
    batch_times = BatchTimes()
    ended = ""
    segment_began: float | None = None
    error: BaseException | None = None

    def open_slot(first_time: float, source_size: tuple[int, int]) -> _StoreSlot:
        nonlocal number
        number += 1
        path = numbered_store(out, number) if rolling else out
        _check_new_store(path, overwrite)
        if overwrite and path.exists():
            shutil.rmtree(path)
        assert stage is not None
        store = LabelStore.open(
            path,
            label_size=stage.label_size,
            identity=_live_identity(
                source, kind, model, settings, stage.label_size, number, rolling
            ),
            attrs={
                "source": {
                    "path": os.fspath(source),
                    "kind": kind,
                    "width": source_size[1],
                    "height": source_size[0],
                    "time_base": str(frames.time_base) if frames.time_base else None,
                    "fps": float(frames.rate) if frames.rate else None,
                },
                "model": model.attrs(),
                "vocabulary": vocabulary_attrs(model.vocabulary),
                "settings": settings,
                "live": {"part": number if rolling else None, "first_time": first_time},
            },
            compression_level=config.store.compression_level,
            table_chunk=config.store.table_chunk,
            frames_per_shard=config.store.frames_per_shard,
        )
        made = _StoreSlot(path, store, StoreWriter(store, overlay_writer, progress), first_time)
        # Drops before a store's first frame are counted in it (the first store: all earlier).
        made.dropped_at_open = frames.stats.dropped if number > 1 else 0
        stores.append(str(path))
        if feed is not None and rolling:
            feed.write({"type": "store", "store": str(path), "part": number})
        return made

    def send(current: _StoreSlot, block: list[TrackedFrame], commit: Commit | None) -> None:
        """Hand a block of frames (and maybe a commit) to the slot's writer thread."""
        if not block and commit is None:
            return
        assert stage is not None
        if block:
            current.writer.put(
                StoreBlock.of_frames(block, commit, overlay=overlay_writer is not None)
            )
        else:
            current.writer.put(StoreBlock.empty(commit))
        current.rows += len(block)

    def close_slot(current: _StoreSlot, reason: str) -> None:
        facts = _live_facts(frames, current, reason)
        send(current, [], Commit(tracker.state.to_json(), facts))
        current.writer.close()
        current.store.finish(live=facts, warnings=list(frames.stats.warnings))

    frames.start()
    batches = live_batches(
        frames,
        model.segmenter,
        LiveBatchSettings(
            batch_size=batch_size,
            max_latency=live.max_latency,
            max_frames=live.max_frames,
            label_scale=scale,
            source_images=overlay_path is not None,
            precision=config.model.precision,
        ),
        batch_times,
        stopped=lambda: signals.requested is not None,
    )
    try:
        for segmented in batches:
            batch = segmented.taken
            if stage is None:
                source_size = batch[0].decoded.source_size
                if overlay_path is not None:
                    from streamseg.video.live_overlay import LiveOverlayWriter

                    overlay_writer = LiveOverlayWriter(
                        overlay_path, size=source_size, alpha=config.render.alpha
                    )
                stage = SegmentAndTrack(
                    model.segmenter,
                    tracker,
                    model.segment_filter,
                    names,
                    label_size_for(source_size, scale),
                    config.model.precision,
                )
                segment_began = segmented.took_at
            done_at = time.monotonic()
            batch_times.record(len(batch), done_at - segmented.took_at)
            block: list[TrackedFrame] = []
            for item, frame, seg in zip(
                batch, segmented.frames, segmented.segmentations, strict=True
            ):
                if slot is None:
                    slot = open_slot(frame.time, frame.source_size)
                elif rolling and frame.time - slot.first_time >= live.segment_duration:
                    send(slot, block, None)
                    block = []
                    close_slot(slot, "rollover")
                    slot = open_slot(frame.time, frame.source_size)
                tracked = stage.track(frame, seg)
                latency = done_at - item.arrived
                latencies.append(latency)
                if feed is not None:
                    feed.write(
                        frame_event(
                            store=str(slot.path),
                            row=slot.rows + len(block),
                            index=frame.index,
                            time=frame.time,
                            pts=frame.pts,
                            latency=latency,
                            dropped=frames.stats.dropped,
                            rows=tracked.rows,
                            names=names,
                        )
                    )
                block.append(tracked)
            processed += len(batch)
            since_commit += len(block)
            commit = None
            if (
                since_commit >= config.store.commit_frames
                or time.monotonic() - last_commit >= COMMIT_SECONDS
            ):
                commit = Commit(tracker.state.to_json(), _live_facts(frames, slot, "running"))
                last_commit = time.monotonic()
                since_commit = 0
            assert slot is not None
            send(slot, block, commit)
        if signals.requested:
            ended = signals.requested
        elif live.max_frames is not None and processed >= live.max_frames:
            ended = "max frames"
        else:
            ended = frames.stats.ended or "end of stream"
    except BaseException as caught:
        error = caught
        ended = f"error: {caught}"
        raise
    finally:
        frames.stop()
        batches.close()  # restores torch's thread count (live_segment.py)
        signals.restore()
        try:
            if slot is not None:
                if error is None:
                    close_slot(slot, ended)
                else:
                    # Keep what was committed; finishing trims to the last commit. The lease
                    # goes back even when finishing fails (a library caller lives on).
                    try:
                        slot.writer.close()
                    finally:
                        try:
                            slot.store.finish(live=_live_facts(frames, slot, ended))
                        finally:
                            slot.store.close()
        finally:
            if overlay_writer is not None:
                overlay_writer.close()
            frames.join(timeout=2.0)
    if feed is not None:
        feed.write(
            {
                "type": "end",
                "reason": ended,
                "frames": processed,
                "dropped": frames.stats.dropped,
                "received": frames.stats.received,
            }
        )
    now = time.monotonic()
    segmenting = now - segment_began if segment_began is not None else 0.0
    frames_total = segments_total = tracks_total = 0
    for path in stores:
        reader = StoreReader(path)
        frames_total += reader.num_frames
        segments_total += reader.num_segments
        tracks_total = max(tracks_total, int(reader.attrs.get("tracks", 0)))
    return LiveSummary(
        source=os.fspath(source),
        store=stores[-1] if stores else str(first_path),
        status="stopped" if signals.requested else "done",
        frames=frames_total,
        resumed_from=0,
        segments=segments_total,
        tracks=int(tracker.state.next_id - 1) if stores else 0,
        seconds=now - began,
        fps=processed / segmenting if segmenting > 0 else 0.0,
        label_size=stage.label_size if stage is not None else (0, 0),
        overlay=str(overlay_path) if overlay_writer is not None else None,
        warnings=list(frames.stats.warnings),
        received=frames.stats.received,
        dropped=frames.stats.dropped,
        connects=frames.stats.connects,
        stores=stores,
        latency_max=max(latencies, default=0.0),
        latency_mean=float(np.mean(latencies)) if latencies else 0.0,
        ended=ended,
    )


def _live_identity(
    source: str | Path,
    kind: str,
    model: RunModel,
    settings: dict[str, Any],
    label_size: tuple[int, int],
    number: int,
    rolling: bool,
) -> dict[str, Any]:
    """What identifies a live store (checked by `LabelStore.open`; never resumed)."""
    return {
        "source": {"name": os.fspath(source), "kind": kind, "live": True},
        "model": model.model_id,
        "vocabulary": model.vocabulary.to_json(),
        "settings": settings,
        "label_size": list(label_size),
        "part": number if rolling else None,
    }


def _live_facts(frames: LiveFrameSource, slot: _StoreSlot | None, state: str) -> dict[str, Any]:
    stats = frames.stats
    return {
        "state": state,
        "received": stats.received,
        "dropped_total": stats.dropped,
        "dropped": stats.dropped - (slot.dropped_at_open if slot is not None else 0),
        "connects": stats.connects,
        "failures": stats.failures,
        "max_latency": frames.settings.max_latency,
        "drop_stale": frames.drop,
    }


def _check_new_store(path: Path, overwrite: bool) -> None:
    if not path.exists() or overwrite:
        if path.exists() and not is_store(path) and any(path.iterdir()):
            raise UserError(f"{path}: not a streamseg store; refusing to delete it")
        return
    raise UserError(
        f"{path}: exists (a live run writes a new store each run); use --overwrite or another --out"
    )
