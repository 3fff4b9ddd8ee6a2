"""`run_file`: a video file, image folder or glob into a label store, resumably.

```
decode (thread) -> batch -> segment (model) -> filter -> track -> store + overlay (thread)
```
Stages are joined by bounded queues (decode: `DecodeSettings.queue_size` frames; writer: two
blocks), so memory stays flat however long the video. The store commits every
`StoreSettings.commit_frames` frames (rounded up to whole batches) after the data of those
frames is written; a rerun of the same command on an unfinished store skips the committed
frames (decoded, not segmented), restores the tracker from the commit record and continues
with the same batch boundaries, so the result equals an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from streamseg.config import RunConfig
from streamseg.errors import UserError
from streamseg.model.segmenter_like import SegmenterLike, segmenter_input_size
from streamseg.video.block import Commit, StoreBlock
from streamseg.video.decode import DecodeStats, VideoInfo, iter_frames, probe
from streamseg.video.frames import Frame
from streamseg.video.run_setup import (
    RunModel,
    check_run_settings,
    label_size_for,
    overlay_output,
    prepare_model,
    vocabulary_attrs,
)
from streamseg.video.run_summary import RunSummary
from streamseg.video.segment_track import SegmentAndTrack
from streamseg.video.store import LabelStore, StoreReader, summarize_tracks
from streamseg.video.store_writer import StoreWriter
from streamseg.video.track import Tracker, TrackerSnapshot, TrackerState


def run_file(
    source: str | Path,
    out: str | Path,
    *,
    config: RunConfig,
    segmenter: SegmenterLike | None = None,
    vocabulary: Any = None,
    overlay: str | Path | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    total_callback: Callable[[int | None, int], None] | None = None,
) -> RunSummary:
    """Segment and track a file source into a label store; the arguments are `run_video`'s
    (`config` with `start` / `end` already applied)."""
    from streamseg.outputs import check_overlay_output

    began = time.monotonic()
    decode = config.decode
    check_run_settings(config)
    out = Path(out)
    overlay_path = overlay_output(overlay, config)
    if overlay_path is not None:
        # Checked before the model loads and the store is touched: a bad --overlay must not
        # leave a new store, and an overlay never replaces the source or a file streamseg did
        # not write.
        check_overlay_output(overlay_path, inputs=[source], overwrite=overwrite, what="--overlay")
        folder = overlay_path.resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise UserError(f"{overlay_path}: cannot write (folder {folder} is not writable)")

    info = probe(source, stream=decode.stream)
    label_size = label_size_for((info.height, info.width), config.store.label_scale)
    model = prepare_model(config, segmenter, vocabulary)
    identity, attrs = _store_identity(source, info, config, model, label_size)
    store = LabelStore.open(
        out,
        label_size=label_size,
        identity=identity,
        attrs=attrs,
        overwrite=overwrite,
        compression_level=config.store.compression_level,
        table_chunk=config.store.table_chunk,
        frames_per_shard=config.store.frames_per_shard,
    )
    if store.done:
        reader = StoreReader(out)
        recorded = dict(reader.attrs.get("decode") or {})
        return RunSummary(
            source=str(source),
            store=str(out),
            status="already done",
            frames=reader.num_frames,
            resumed_from=reader.num_frames,
            segments=reader.num_segments,
            tracks=int(reader.attrs.get("tracks", 0)),
            seconds=time.monotonic() - began,
            fps=0.0,
            label_size=label_size,
            corrupt_packets=int(recorded.get("corrupt_packets", 0)),
            corrupt_frames=int(recorded.get("corrupt_frames", 0)),
            decoder_errors=int(recorded.get("decoder_errors", 0)),
            gaps=int(recorded.get("gaps", 0)),
            still_image=bool(recorded.get("still_image", False)),
            damage=_recorded_damage_line(reader.attrs.get("warnings")),
        )

    done = store.committed_frames
    tracker_state = store.progress.tracker
    tracker = Tracker(
        config.tracker, TrackerState.from_json(tracker_state) if tracker_state else None
    )
    batch_size = config.model.batch_size
    # Commits at whole batches only, so that a resumed run sees the same batches.
    commit_frames = -(-max(config.store.commit_frames, 1) // batch_size) * batch_size
    if total_callback is not None:
        total_callback(_expected_frames(info, config), done)

    stats = DecodeStats()
    frames = iter_frames(
        source,
        size=segmenter_input_size(model.segmenter, info.height, info.width),
        stride=decode.stride,
        start=decode.start,
        end=decode.end,
        max_frames=decode.max_frames,
        stream=decode.stream,
        stats=stats,
        source_image=overlay_path is not None,
    )
    from streamseg.video.prefetch import prefetch

    frame_stream = prefetch(frames, maxsize=max(1, decode.queue_size), name="decode")

    overlay_writer = None
    if overlay_path is not None:
        from streamseg.video.render import OverlayWriter

        overlay_writer = OverlayWriter(
            overlay_path,
            size=info.size,
            time_base=Fraction(info.time_base),
            audio_from=source if info.has_audio else None,
            rate=info.fps,
            alpha=config.render.alpha,
        )
    stage = SegmentAndTrack(
        model.segmenter,
        tracker,
        model.segment_filter,
        model.names,
        label_size,
        config.model.precision,
    )
    writer = StoreWriter(store, overlay_writer, progress)
    processed = 0
    segment_began = time.monotonic()
    # The tracker state after the last batch given to the writer, for a Ctrl-C commit: a cheap
    # snapshot per batch, serialized (RLE + JSON, ~12 ms at 1080p) only when a commit needs it.
    sent_state: TrackerSnapshot | None = None
    try:
        # Committed frames: decoded again (cheap) but not segmented; redrawn for the overlay.
        if done:
            past = StoreReader(out) if overlay_writer is not None else None
            past_names = _track_names(past, model.names) if past is not None else {}
            for position, frame in enumerate(frame_stream):
                if past is not None and overlay_writer is not None:
                    overlay_writer.write(
                        frame.source_image,
                        past.labels(position),
                        past_names,
                        pts=frame.pts,
                        time=frame.time,
                    )
                if position + 1 == done:
                    break
        since_commit = 0
        segment_began = time.monotonic()
        for tracked in stage(_batches(frame_stream, batch_size)):
            processed += len(tracked)
            since_commit += len(tracked)
            sent_state = tracker.snapshot()
            commit = None
            if since_commit >= commit_frames:
                commit = Commit(sent_state.to_json(), _decode_facts(stats))
                since_commit = 0
            writer.put(StoreBlock.of_frames(tracked, commit, overlay=overlay_writer is not None))
        # The last partial block.
        writer.put(StoreBlock.empty(Commit(tracker.state.to_json(), _decode_facts(stats))))
        writer.close()
    except KeyboardInterrupt:
        # A clean stop (Ctrl-C): commit every whole batch already handed to the writer, with
        # the tracker state after the last of them (a batch cut midway is not committed), so
        # nothing processed is lost and a rerun resumes right there.
        with contextlib.suppress(BaseException):
            if sent_state is not None:
                commit = Commit(sent_state.to_json(), _decode_facts(stats))
                writer.put(StoreBlock.empty(commit))
            writer.abort()  # and the lease given back now
        if overlay_writer is not None:
            with contextlib.suppress(BaseException):
                overlay_writer.close()
        raise
    except BaseException:
        with contextlib.suppress(BaseException):
            writer.abort()  # and the lease given back now
        if overlay_writer is not None:
            with contextlib.suppress(BaseException):
                overlay_writer.close()
        raise
    finally:
        frame_stream.close()
    if overlay_writer is not None:
        overlay_writer.close()
    messages = list(stats.warnings)
    damage = stats.damage_line(str(source))
    if damage is not None:
        # One line for all of it; the details (each packet) stay in the store's record.
        messages.insert(0, damage)
    if stats.still_image:
        messages.append(f"{source}: a still image, processed as one frame")
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=3)
    store.finish(decode=_decode_facts(stats), warnings=messages)
    now = time.monotonic()
    segmenting = now - segment_began
    # The counts `finish` just wrote: reading the store back would check and decode every
    # table again (~50 ms a run, a batch of short clips pays it per clip).
    written = store.attrs
    return RunSummary(
        source=str(source),
        store=str(out),
        status="done",
        frames=int(written["frames"]),
        resumed_from=done,
        segments=int(written["segments"]),
        tracks=int(written["tracks"]),
        seconds=now - began,
        fps=processed / segmenting if segmenting > 0 else 0.0,
        label_size=label_size,
        corrupt_packets=stats.corrupt_packets,
        corrupt_frames=stats.corrupt_frames,
        decoder_errors=stats.decoder_errors,
        gaps=stats.gaps,
        still_image=stats.still_image,
        damage=damage,
        overlay=str(overlay_path) if overlay_path is not None else None,
        warnings=messages,
    )


def source_fingerprint(source: str | Path, info: VideoInfo) -> dict[str, Any]:
    """What identifies a source across reruns (name, size in bytes, stream facts)."""
    path = Path(source)
    size = path.stat().st_size if path.is_file() else None
    return {
        "name": path.name,
        "bytes": size,
        "width": info.width,
        "height": info.height,
        "codec": info.codec,
        "frame_count": info.frame_count,
        "duration": info.duration,
        "stream": info.stream,
    }


def file_settings(config: RunConfig) -> dict[str, Any]:
    """The settings a file run records: `config.to_dict()` without the live section (it does
    not apply to files)."""
    settings = config.to_dict()
    settings.pop("live")
    return settings


def _store_identity(
    source: str | Path,
    info: VideoInfo,
    config: RunConfig,
    model: RunModel,
    label_size: tuple[int, int],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(identity, attrs) of the store: the identity is what must match to resume."""
    settings = file_settings(config)
    # Only what changes the output identifies a run: not where or how fast it runs (compile
    # equals eager within float rounding) or what it renders.
    for key in ("device", "compile", "name", "clip_weights", "vocab", "stuff", "vocab_file"):
        settings["model"].pop(key)
    settings["render"] = {}
    settings["decode"].pop("queue_size")
    settings["store"].pop("commit_frames")
    vocab = model.vocabulary
    names = model.names
    identity = {
        "source": source_fingerprint(source, info),
        "model": model.model_id,
        # names, synonyms and thing/stuff (they all change the output)
        "vocabulary": vocab.to_json(),
        "stuff": [n for n, t in zip(names, vocab.is_thing, strict=True) if not t],
        "settings": settings,
        "label_size": list(label_size),
    }
    attrs = {
        "source": {**info.to_dict(), "path": str(Path(source).resolve())},
        "model": model.attrs(),
        "vocabulary": vocabulary_attrs(vocab),
        "settings": file_settings(config),
        "settings_sha256": hashlib.sha256(
            json.dumps(settings, sort_keys=True).encode()
        ).hexdigest(),
        "tracker": {"matching": "things with things (class penalty), stuff one id per class"},
    }
    return identity, attrs


def _expected_frames(info: VideoInfo, config: RunConfig) -> int | None:
    """Frames the run will segment, when the header says (None with start / end)."""
    decode = config.decode
    if decode.start is not None or decode.end is not None:
        return None
    expected = info.frame_count
    if expected is not None:
        expected = -(-expected // decode.stride)
    if decode.max_frames is not None:
        expected = min(expected, decode.max_frames) if expected is not None else decode.max_frames
    return expected


def _batches(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _decode_facts(stats: DecodeStats) -> dict[str, Any]:
    return stats.facts()


def _recorded_damage_line(recorded: object) -> str | None:
    """The damage line a finished store recorded among its warnings (None if none)."""
    if not isinstance(recorded, list):
        return None
    return next((m for m in recorded if isinstance(m, str) and ": damaged input: " in m), None)


def _track_names(reader: StoreReader, names: list[str]) -> dict[int, str]:
    tracks = summarize_tracks(reader.segments)
    return {
        int(t): names[int(c)] if 0 <= int(c) < len(names) else f"#{int(c)}"
        for t, c in zip(tracks["track_id"], tracks["class_id"], strict=True)
    }
