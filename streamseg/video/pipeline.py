"""`run_video`: the one code path from a video to a label store (CLI, app and batch call it).

```
decode (thread) -> batch -> segment (model) -> filter -> track -> store + overlay (thread)
```
Stages are joined by bounded queues (decode: `DecodeSettings.queue_size` frames; writer: two
batches), so memory stays flat however long the video. The store commits every
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
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.config import RunConfig
from streamseg.errors import UserError
from streamseg.model.outputs import FrameSegmentation, Segment
from streamseg.video.store import LabelStore, StoreReader, summarize_tracks
from streamseg.video.track import Tracker, TrackerState, TrackResult

# Batches waiting for the writer thread (bounded memory).
WRITER_QUEUE = 2


@dataclass
class RunSummary:
    """What a run did (`--json` prints `to_dict()`)."""

    source: str
    store: str
    status: str  # "done" | "already done"
    frames: int  # frames in the store
    resumed_from: int  # frames committed before this run started
    segments: int
    tracks: int
    seconds: float
    fps: float  # frames segmented per second in this run (model loading not counted)
    label_size: tuple[int, int]
    corrupt_packets: int = 0
    corrupt_frames: int = 0
    overlay: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["label_size"] = list(self.label_size)
        return data


def filter_segmentation(
    seg: FrameSegmentation,
    score_threshold: float = 0.0,
    min_area: int = 0,
    keep: set[int] | None = None,
) -> FrameSegmentation:
    """Drop segments by score, area or class; their pixels become 0.

    Args:
        seg: panoptic (H, W), segments, embeddings (N, D).
        keep: class ids to keep (None = all).
    Returns:
        a new FrameSegmentation with the kept segments (ids unchanged).
    """
    kept = [
        i
        for i, s in enumerate(seg.segments)
        if s.score >= score_threshold
        and s.area >= min_area
        and (keep is None or s.class_id in keep)
    ]
    if len(kept) == len(seg.segments):
        return seg
    ids = np.array([seg.segments[i].id for i in kept], np.int64)
    panoptic = np.where(np.isin(seg.panoptic, ids), seg.panoptic, 0).astype(np.int32)
    embeddings = np.asarray(seg.embeddings)
    embeddings = embeddings[kept] if embeddings.shape[0] == len(seg.segments) else embeddings
    return FrameSegmentation(
        panoptic=panoptic, segments=[seg.segments[i] for i in kept], embeddings=embeddings
    )


def segment_rows(
    frame: int, segments: list[Segment], result: TrackResult
) -> list[tuple[int, int, int, float, int, int, int, int, int, int]]:
    """Rows of the segments table for one frame: one row per track present.

    Segments that share a track (several pieces of one stuff class) are merged: areas add up,
    the score is their area-weighted mean, the box is their union, the class is the largest
    piece's.

    Returns:
        tuples in SEGMENT_COLUMNS order (frame, track_id, class_id, score, area, x, y, w, h,
        is_thing), sorted by track id.
    """
    merged: dict[int, list[Segment]] = {}
    for segment, track_id in zip(segments, result.track_ids.tolist(), strict=True):
        merged.setdefault(int(track_id), []).append(segment)
    rows = []
    for track_id in sorted(merged):
        pieces = merged[track_id]
        area = sum(int(s.area) for s in pieces)
        main = max(pieces, key=lambda s: s.area)
        score = sum(float(s.score) * s.area for s in pieces) / area if area else float(main.score)
        x0 = min(s.bbox[0] for s in pieces)
        y0 = min(s.bbox[1] for s in pieces)
        x1 = max(s.bbox[0] + s.bbox[2] for s in pieces)
        y1 = max(s.bbox[1] + s.bbox[3] for s in pieces)
        rows.append(
            (frame, track_id, main.class_id, score, area, x0, y0, x1 - x0, y1 - y0, main.is_thing)
        )
    return rows


_SEGMENT_NAMES = (
    "frame",
    "track_id",
    "class_id",
    "score",
    "area",
    "bbox_x",
    "bbox_y",
    "bbox_w",
    "bbox_h",
    "is_thing",
)


def _columns(rows: list[tuple]) -> dict[str, np.ndarray]:
    if not rows:
        return {name: np.zeros(0) for name in _SEGMENT_NAMES}
    columns = list(zip(*rows, strict=True))
    return {name: np.array(values) for name, values in zip(_SEGMENT_NAMES, columns, strict=True)}


def _concatenate(
    blocks: list[tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]],
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Join (labels, frame columns, segment columns) blocks; segment frames made relative to
    the joined block."""
    labels = np.concatenate([b[0] for b in blocks])
    frames = {key: np.concatenate([b[1][key] for b in blocks]) for key in blocks[0][1]}
    offsets = np.cumsum([0] + [b[0].shape[0] for b in blocks[:-1]])
    segments = {}
    for key in blocks[0][2]:
        parts = [b[2][key] for b in blocks]
        if key == "frame":
            parts = [np.asarray(p, np.int64) + o for p, o in zip(parts, offsets, strict=True)]
        segments[key] = np.concatenate(parts)
    return labels, frames, segments


def _batches(frames: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def source_fingerprint(source: str | Path, info: Any) -> dict[str, Any]:
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


def _resolve_vocabulary(segmenter: Any, vocabulary: Any, config: RunConfig) -> Any:
    """Set the segmenter's vocabulary from the argument or the config; return it."""
    settings = config.model
    if vocabulary is None and settings.vocab_file:
        from streamseg.model.vocab import load_vocab_file

        vocabulary = load_vocab_file(settings.vocab_file)
    if vocabulary is None and settings.vocab:
        from streamseg.model.vocab import parse_vocab

        vocabulary = parse_vocab(settings.vocab, settings.stuff)
    if vocabulary is None and getattr(segmenter, "vocabulary", None) is None:
        # No --vocab: the model's own default (weights/shapes-tiny names "shapes"), through the
        # same resolver as `streamseg image` and the app.
        from streamseg.model.default_vocab import require_vocabulary

        vocabulary = require_vocabulary(segmenter, settings.name)
    if vocabulary is not None:
        if isinstance(vocabulary, str):
            from streamseg.model.vocab import parse_vocab

            vocabulary = parse_vocab(vocabulary, settings.stuff)
        import inspect

        # The text classifier is computed once per model + vocabulary and cached on disk.
        if "cache_dir" in inspect.signature(segmenter.set_vocabulary).parameters:
            segmenter.set_vocabulary(vocabulary, cache_dir="auto")
        else:
            segmenter.set_vocabulary(vocabulary)
    current = getattr(segmenter, "vocabulary", None)
    if current is None:
        raise UserError("--vocab: no vocabulary given (e.g. --vocab 'person,dog' or coco)")
    return current


def _keep_classes(names: list[str], config: RunConfig) -> set[int] | None:
    """Vocabulary indices of `--keep` (None: keep every class); unknown names are an error."""
    if not config.model.keep:
        return None
    unknown = [name for name in config.model.keep if name not in names]
    if unknown:
        raise UserError(f"--keep: not in the vocabulary: {', '.join(unknown)}")
    return {names.index(name) for name in config.model.keep}


def _vocabulary_attrs(vocabulary: Any) -> dict[str, Any]:
    names = list(vocabulary.names)
    is_thing = [bool(v) for v in vocabulary.is_thing]
    data: dict[str, Any] = {"names": names, "is_thing": is_thing}
    to_json = getattr(vocabulary, "to_json", None)
    if to_json is not None:
        data["json"] = to_json()
    return data


def _build_segmenter(config: RunConfig) -> Any:
    from streamseg.model.load import load_segmenter

    return load_segmenter(config.model.name, config.model.clip_weights, config.model.device)


def compile_segmenter(segmenter: Any) -> None:
    """`segmenter.compile()` for `ModelSettings.compile` (the compile happens at the first
    batch); a stand-in segmenter without that method is a UserError."""
    compile_network = getattr(segmenter, "compile", None)
    if compile_network is None:
        raise UserError(f"--compile: {type(segmenter).__name__} has no compile()")
    compile_network()


def _autocast(segmenter: Any, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise UserError(f"--precision: must be fp32, bf16 or fp16, got {precision!r}")
    device = torch.device(getattr(segmenter, "device", "cpu"))
    return torch.autocast(device_type=device.type, dtype=dtypes[precision])


class _Writer:
    """Background thread writing batches to the store (and overlay), committing when told."""

    def __init__(
        self, store: LabelStore, overlay: Any, callback: Callable[[int], None] | None
    ) -> None:
        self.store = store
        self.overlay = overlay
        self._callback = callback
        self._frames = store.committed_frames  # frames handed over so far (for progress)
        self.error: BaseException | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=WRITER_QUEUE)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def put(self, item: Any) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise RuntimeError("store writer stopped") from self.error

    def close(self) -> None:
        """Finish the queued work; re-raise a writer error."""
        with contextlib.suppress(Exception):
            self.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        # Batches are kept until their commit and written in one go: one zarr write per
        # column per commit instead of per batch (zarr calls cost milliseconds each). Memory:
        # at most `commit_frames` label maps.
        pending: list[tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]] = []
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                labels, frames, segments, overlay_items, commit = item
                pending.append((labels, frames, segments))
                if self.overlay is not None:
                    for image, frame_labels, names, pts, seconds in overlay_items:
                        self.overlay.write(image, frame_labels, names, pts=pts, time=seconds)
                self._frames += labels.shape[0]
                if commit is not None:
                    self.store.write_block(*_concatenate(pending), commit=False)
                    pending.clear()
                    self.store.commit(*commit)
                if self._callback is not None and (labels.shape[0] or commit is not None):
                    self._callback(self._frames)
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
            self.error = error
            # keep draining so that the producer never blocks on a dead writer
            while True:
                try:
                    if self._queue.get(timeout=0.1) is None:
                        return
                except queue.Empty:
                    continue


def run_video(
    source: str | Path,
    out: str | Path,
    *,
    config: RunConfig | None = None,
    segmenter: Any = None,
    vocabulary: Any = None,
    overlay: str | Path | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    start: float | None = None,
    end: float | None = None,
    total_callback: Callable[[int | None, int], None] | None = None,
) -> RunSummary:
    """Segment and track a video into a label store (and optionally an overlay mp4).

    Args:
        source: video file, image folder or glob.
        out: the store folder (`.zarr`); an unfinished store of the same run is resumed, a
            finished one is left as it is, one of another video / settings is refused.
        config: the pipeline settings (default `RunConfig()`).
        segmenter: a ready `Segmenter` (or any object with `segment(frames, output_size)` and
            `vocabulary`); built from `config.model` when None.
        vocabulary: classes (a `Vocabulary`, CLI-syntax string, or list); default from
            `config.model.vocab` / `vocab_file`, else the segmenter's current one, else the
            model folder's default (streamseg/model/default_vocab.py).
        overlay: output mp4 of the overlay (overrides `config.render.overlay`).
        overwrite: delete an existing store at `out` first.
        progress: called from the writer thread with the number of frames done so far
            (committed, or committed within the next `commit_frames`), after each batch.
        start, end: seconds from the first frame (override `config.decode`; used by time
            shards).
        total_callback: called once with (expected frames or None, frames already done) before
            the first frame (progress bars).

    Returns:
        `RunSummary`.

    Raises:
        UserError: bad source, unwritable or mismatching store, missing vocabulary.
    """
    from streamseg.outputs import check_overlay_output
    from streamseg.video.decode import DecodeStats, iter_frames, probe
    from streamseg.video.live_decode import is_live_source

    if is_live_source(source):
        # URLs, capture devices and stdin: the live path (video/live_run.py, same stages).
        from streamseg.video.live_run import run_live

        return run_live(
            source,
            out,
            config=config,
            segmenter=segmenter,
            vocabulary=vocabulary,
            overlay=overlay,
            overwrite=overwrite,
            progress=progress,
        )
    began = time.monotonic()
    config = config or RunConfig()
    decode = config.decode
    if start is not None or end is not None:
        config = config.with_overrides(decode={"start": start, "end": end})
        decode = config.decode
    if config.model.batch_size < 1:
        raise UserError(f"--batch-size: must be at least 1, got {config.model.batch_size}")
    scale = config.store.label_scale
    if not 0 < scale <= 1:
        raise UserError(f"--label-scale: must be in (0, 1], got {scale}")
    out = Path(out)
    overlay_path = Path(overlay) if overlay is not None else None
    if overlay_path is None and config.render.overlay:
        overlay_path = Path(config.render.overlay)

    info = probe(source, stream=decode.stream)
    label_size = (max(1, round(info.height * scale)), max(1, round(info.width * scale)))
    if segmenter is None:
        segmenter = _build_segmenter(config)
    if config.model.compile:
        compile_segmenter(segmenter)
    vocab = _resolve_vocabulary(segmenter, vocabulary, config)
    names = list(vocab.names)
    keep = _keep_classes(names, config)

    model_id = str(getattr(segmenter, "model_id", type(segmenter).__name__))
    settings = config.to_dict()
    # Only what changes the output identifies a run: not where or how fast it runs (compile
    # equals eager within float rounding) or what it renders.
    for key in ("device", "compile", "name", "clip_weights", "vocab", "stuff", "vocab_file"):
        settings["model"].pop(key)
    settings["render"] = {}
    settings["decode"].pop("queue_size")
    settings["store"].pop("commit_frames")
    identity = {
        "source": source_fingerprint(source, info),
        "model": model_id,
        # names, synonyms and thing/stuff when the vocabulary can say them (they all change
        # the output), else the names
        "vocabulary": _vocabulary_attrs(vocab).get("json", names),
        "stuff": [n for n, t in zip(names, vocab.is_thing, strict=True) if not t],
        "settings": settings,
        "label_size": list(label_size),
    }
    attrs = {
        "source": {**info.to_dict(), "path": str(Path(source).resolve())},
        "model": {"id": model_id, "sha256": str(getattr(segmenter, "weights_sha256", ""))},
        "vocabulary": _vocabulary_attrs(vocab),
        "settings": config.to_dict(),
        "settings_sha256": hashlib.sha256(
            json.dumps(settings, sort_keys=True).encode()
        ).hexdigest(),
        "tracker": {"matching": "things with things (class penalty), stuff one id per class"},
    }
    if overlay_path is not None:
        # Checked before the store is touched: a bad --overlay must not leave a new store, and
        # an overlay never replaces the source or a file streamseg did not write.
        check_overlay_output(overlay_path, inputs=[source], overwrite=overwrite, what="--overlay")
        folder = overlay_path.resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise UserError(f"{overlay_path}: cannot write (folder {folder} is not writable)")
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
        )

    done = store.committed_frames
    tracker_state = store.progress.tracker
    tracker = Tracker(
        config.tracker, TrackerState.from_json(tracker_state) if tracker_state else None
    )
    batch_size = config.model.batch_size
    # Commits at whole batches only, so that a resumed run sees the same batches.
    commit_frames = -(-max(config.store.commit_frames, 1) // batch_size) * batch_size

    expected = info.frame_count
    if expected is not None:
        expected = -(-expected // decode.stride)
    if decode.max_frames is not None:
        expected = min(expected, decode.max_frames) if expected is not None else decode.max_frames
    if decode.start is not None or decode.end is not None:
        expected = None
    if total_callback is not None:
        total_callback(expected, done)

    input_size = None
    if hasattr(segmenter, "input_size"):
        input_size = tuple(segmenter.input_size(info.height, info.width))
    stats = DecodeStats()
    frames = iter_frames(
        source,
        size=input_size,
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
        from fractions import Fraction

        from streamseg.video.render import OverlayWriter

        overlay_writer = OverlayWriter(
            overlay_path,
            size=info.size,
            time_base=Fraction(info.time_base),
            audio_from=source if info.has_audio else None,
            rate=info.fps,
            alpha=config.render.alpha,
        )
    writer = _Writer(store, overlay_writer, progress)
    processed = 0
    segment_began = time.monotonic()
    sent_state: str | None = None  # tracker state after the last batch given to the writer
    try:
        # Committed frames: decoded again (cheap) but not segmented; redrawn for the overlay.
        if done:
            past = StoreReader(out) if overlay_writer is not None else None
            past_names = _track_names(past, names) if past is not None else {}
            for position, frame in enumerate(frame_stream):
                if past is not None:
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
        for batch in _batches(frame_stream, batch_size):
            images = [frame.image for frame in batch]
            with _autocast(segmenter, config.model.precision):
                results = segmenter.segment(images, output_size=label_size)
            labels = np.zeros((len(batch), *label_size), np.int32)
            rows: list[tuple] = []
            overlay_items = []
            for i, (frame, seg) in enumerate(zip(batch, results, strict=True)):
                seg = filter_segmentation(
                    seg, config.model.score_threshold, config.model.min_area, keep
                )
                result = tracker.step(frame.index, seg)
                labels[i] = result.labels
                rows.extend(segment_rows(i, seg.segments, result))
                if overlay_writer is not None:
                    track_names = {t: names[c] for t, c in result.classes.items()}
                    overlay_items.append(
                        (frame.source_image, result.labels, track_names, frame.pts, frame.time)
                    )
            frame_columns = {
                "index": np.array([f.index for f in batch]),
                "pts": np.array([-1 if f.pts is None else f.pts for f in batch]),
                "time": np.array([f.time for f in batch], np.float64),
                "keyframe": np.array([f.keyframe for f in batch]),
                "corrupt": np.array([f.corrupt for f in batch]),
            }
            processed += len(batch)
            since_commit += len(batch)
            sent_state = tracker.state.to_json()
            commit = None
            if since_commit >= commit_frames:
                commit = (sent_state, _decode_facts(stats))
                since_commit = 0
            writer.put((labels, frame_columns, _columns(rows), overlay_items, commit))
        # The last partial block.
        writer.put(_empty_block(label_size, (tracker.state.to_json(), _decode_facts(stats))))
        writer.close()
    except KeyboardInterrupt:
        # A clean stop (Ctrl-C): commit every whole batch already handed to the writer, with
        # the tracker state after the last of them (a batch cut midway is not committed), so
        # nothing processed is lost and a rerun resumes right there.
        with contextlib.suppress(BaseException):
            if sent_state is not None:
                writer.put(_empty_block(label_size, (sent_state, _decode_facts(stats))))
            writer.close()
        if overlay_writer is not None:
            with contextlib.suppress(BaseException):
                overlay_writer.close()
        raise
    except BaseException:
        with contextlib.suppress(BaseException):
            writer.close()
        if overlay_writer is not None:
            with contextlib.suppress(BaseException):
                overlay_writer.close()
        raise
    finally:
        close = getattr(frame_stream, "close", None)
        if close is not None:
            close()
    if overlay_writer is not None:
        overlay_writer.close()
    messages = list(stats.warnings)
    if stats.corrupt_packets or stats.corrupt_frames:
        messages.insert(
            0,
            f"{source}: {stats.corrupt_packets} corrupt packet(s) skipped, "
            f"{stats.corrupt_frames} damaged frame(s)",
        )
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=2)
    store.finish(decode=_decode_facts(stats), warnings=messages)
    now = time.monotonic()
    elapsed = now - began
    segmenting = now - segment_began
    reader = StoreReader(out)
    return RunSummary(
        source=str(source),
        store=str(out),
        status="done",
        frames=reader.num_frames,
        resumed_from=done,
        segments=reader.num_segments,
        tracks=int(reader.attrs.get("tracks", 0)),
        seconds=elapsed,
        fps=processed / segmenting if segmenting > 0 else 0.0,
        label_size=label_size,
        corrupt_packets=stats.corrupt_packets,
        corrupt_frames=stats.corrupt_frames,
        overlay=str(overlay_path) if overlay_path is not None else None,
        warnings=messages,
    )


def _empty_block(label_size: tuple[int, int], commit: tuple[str, dict[str, Any]]) -> tuple:
    """A writer item without frames that only commits."""
    return (
        np.zeros((0, *label_size), np.int32),
        {key: np.zeros(0) for key in ("index", "pts", "time", "keyframe", "corrupt")},
        _columns([]),
        [],
        commit,
    )


def _decode_facts(stats: Any) -> dict[str, Any]:
    return {
        "decoded": stats.decoded,
        "corrupt_packets": stats.corrupt_packets,
        "corrupt_frames": stats.corrupt_frames,
        "unreadable_images": stats.unreadable_images,
        "truncated": bool(stats.truncated),
    }


def _track_names(reader: StoreReader, names: list[str]) -> dict[int, str]:
    tracks = summarize_tracks(reader.segments)
    return {
        int(t): names[int(c)] if 0 <= int(c) < len(names) else f"#{int(c)}"
        for t, c in zip(tracks["track_id"], tracks["class_id"], strict=True)
    }


def default_store_path(source: str | Path) -> Path:
    """`video.mp4` -> `video.zarr` beside it (a folder of frames -> `<folder>.zarr`)."""
    path = Path(os.fspath(source).rstrip("/"))
    return path.with_suffix(".zarr") if path.suffix else path.with_name(path.name + ".zarr")
