"""Batch jobs over video archives on Dask distributed: `streamseg batch`.

Every video (or every time shard of a long video, streamseg/shard.py) is one Dask task that
calls the same `run_video` as `streamseg run`: there is no second code path for segmenting a
video. The pieces, in the order a batch uses them:

- `expand_inputs` turns files, folders (walked for video extensions) and glob patterns into a
  deterministic list of videos, `assign_outputs` gives each one a collision-free store path.
- The manifest (`DIR/manifest.json`) records one `BatchRecord` per input; it is rewritten
  atomically (temp file + `os.replace`) and merged with the previous one on a rerun.
- `open_client` starts a loopback LocalCluster or connects to an existing scheduler.
- `run_batch` submits one task per video with explicit keys, retries and resources, collects
  the results as they finish, and shows a progress bar over videos (and frames).

Idempotence: a task first looks at its store; a finished store is skipped, an interrupted one
is resumed by `run_video`'s own progress record, and nothing is ever written to the final path
except through `run_video`'s atomic protocol (or, for shards, a temp store moved in place with
`os.replace`). So a worker that dies mid-task costs a retry of that task and nothing else.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from streamseg.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

    from streamseg.config import RunConfig

# File name endings walked for in folders and kept from glob matches (lower case). A file
# named explicitly on the command line is taken whatever its ending.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".3g2", ".3gp", ".asf", ".avi", ".divx", ".dv", ".f4v", ".flv", ".gif", ".m2t",
        ".m2ts", ".m2v", ".m4v", ".mj2", ".mjpeg", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg",
        ".mts", ".mxf", ".nut", ".ogv", ".qt", ".rm", ".rmvb", ".ts", ".vob", ".webm", ".wmv",
        ".y4m",
    }
)  # fmt: skip

MANIFEST_NAME = "manifest.json"
STORE_SUFFIX = ".zarr"
STATUSES = ("done", "failed", "skipped")
_GLOB_MAGIC = ("*", "?", "[")


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class VideoInput:
    """One video of a batch.

    Attributes:
        path: the video file, absolute.
        name: where its store goes under the output folder, without the `.zarr` ending
            (the file's path relative to the folder or glob base it was found under).
    """

    path: Path
    name: PurePosixPath


def _is_video_name(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _walk_videos(folder: Path) -> Iterator[Path]:
    """Video files under `folder`, depth first in sorted order, hidden entries skipped."""
    for root, dirs, files in os.walk(folder):
        # Sorting in place fixes os.walk's descent order; hidden folders (.git, .cache) and
        # stores (*.zarr, which may sit next to the videos) are not descended into.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(".zarr"))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and _is_video_name(path):
                yield path


def _glob_base(pattern: str) -> Path:
    """The longest leading part of a glob pattern without magic characters."""
    parts: list[str] = []
    for part in Path(pattern).parts:
        if any(ch in part for ch in _GLOB_MAGIC):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _relative_name(path: Path, base: Path) -> PurePosixPath:
    relative = path.resolve().relative_to(base.resolve())
    return PurePosixPath(relative.as_posix())


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[VideoInput]:
    """Turn command-line inputs into a deterministic list of videos.

    - a file is taken as it is (any ending: a corrupt or non-video file becomes a failed
      record, not a crash);
    - a folder is walked recursively for files with a video ending (`VIDEO_EXTENSIONS`),
      in sorted order, skipping hidden entries and `*.zarr` folders;
    - anything else containing `*`, `?` or `[` is a glob pattern (`**` recurses); its
      matches are taken in sorted order, folders among them walked, files kept if they have
      a video ending.

    The same file reached twice is kept once (first occurrence). Order: inputs in the order
    given, each expanded in sorted order.

    Raises:
        UserError: an input that does not exist, or a folder or pattern without any video.
    """
    videos: list[VideoInput] = []
    seen: set[Path] = set()

    def add(path: Path, name: PurePosixPath) -> None:
        resolved = path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            videos.append(VideoInput(path=resolved, name=name))

    for item in inputs:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_file():
            add(path, PurePosixPath(path.name))
        elif path.is_dir():
            found = list(_walk_videos(path))
            if not found:
                raise UserError(f"{text}: no video files in this folder")
            for video in found:
                add(video, _relative_name(video, path))
        elif any(ch in text for ch in _GLOB_MAGIC):
            base = _glob_base(str(path))
            found = []
            for match in sorted(glob.glob(str(path), recursive=True)):
                candidate = Path(match)
                if candidate.is_dir():
                    found.extend(_walk_videos(candidate))
                elif candidate.is_file() and _is_video_name(candidate):
                    found.append(candidate)
            if not found:
                raise UserError(f"{text}: no video files match this pattern")
            for video in found:
                add(video, _relative_name(video, base))
        else:
            raise UserError(f"{text}: no such file or folder")
    return videos


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def assign_outputs(
    videos: Sequence[VideoInput], out_dir: Path, previous: dict[str, str] | None = None
) -> list[Path]:
    """Store path of each video under `out_dir`, one per video, never two alike.

    The store is `out_dir / name.zarr` (the video's relative name with its ending replaced).
    If that path is taken, by an earlier video of this batch or by another input in the
    previous manifest, the name gets `-<8 hex digits of sha256(input path)>` before `.zarr`.
    An input already in the previous manifest (`previous`: input -> output) keeps its output,
    so reruns are stable whatever else changed.
    """
    previous = previous or {}
    out_dir = out_dir.resolve()
    # Outputs the previous manifest gave to other inputs are taken.
    taken: dict[str, str] = {output: input_ for input_, output in previous.items()}
    outputs: list[Path] = []
    for video in videos:
        key = str(video.path)
        if key in previous:
            output = Path(previous[key])
        else:
            stem = video.name.with_suffix("") if video.name.suffix else video.name
            output = out_dir / f"{stem}{STORE_SUFFIX}"
            if taken.get(str(output), key) != key:
                output = out_dir / f"{stem}-{_short_hash(key)}{STORE_SUFFIX}"
        if taken.get(str(output), key) != key:
            raise UserError(f"{output}: would be written by both {taken[str(output)]} and {key}")
        taken[str(output)] = key
        outputs.append(output)
    return outputs


# ----------------------------------------------------------------------------- manifest


@dataclass
class BatchRecord:
    """What happened to one input of a batch (one entry of `DIR/manifest.json`).

    Attributes:
        input: the video file, absolute.
        output: its store, absolute.
        status: "done" (segmented now), "failed" (after all retries; see `error`) or "skipped"
            (its store was already finished).
        frames: frames in the store (0 when failed).
        seconds: wall time spent on it in this batch (sum over its shards when sharded).
        error: the last error, one line, when failed; None otherwise.
    """

    input: str
    output: str
    status: str
    frames: int = 0
    seconds: float = 0.0
    error: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def read_manifest(path: Path) -> list[BatchRecord]:
    """Records of an existing manifest, [] if there is none.

    Raises:
        UserError: the file exists but is not a manifest.
    """
    if not path.exists():
        return []
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
        return [BatchRecord(**item) for item in items]
    except (ValueError, TypeError) as error:
        raise UserError(f"{path}: not a batch manifest ({error})") from None


def write_manifest(path: Path, records: Sequence[BatchRecord]) -> None:
    """Write the manifest atomically: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps([asdict(r) for r in records], indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def merge_records(old: Sequence[BatchRecord], new: Sequence[BatchRecord]) -> list[BatchRecord]:
    """The previous manifest updated by this batch's records (matched by input).

    Old records keep their place (inputs not in this batch stay as they were); records of new
    inputs follow in batch order.
    """
    by_input = {r.input: r for r in new}
    merged = [by_input.pop(r.input, r) for r in old]
    merged.extend(r for r in new if r.input in by_input)
    return merged


# ----------------------------------------------------------------------------- cluster


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def open_client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    resources: dict[str, float] | None = None,
    dashboard: bool = True,
) -> Iterator[Client]:
    """A Dask client on an existing scheduler, or on a new LocalCluster on this machine.

    Args:
        scheduler: address of a running scheduler (`tcp://host:8786`); None starts a
            LocalCluster of worker processes bound to 127.0.0.1 (loopback only).
        n_workers: worker processes of the LocalCluster (default: CPU cores // threads).
        threads_per_worker: tasks a LocalCluster worker runs at once (each holds its model).
        resources: what each LocalCluster worker offers (e.g. {"GPU": 1}), so that tasks
            asking for these resources can run on it.
        dashboard: serve the Dask dashboard on a free loopback port (when bokeh is installed).
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as error:
            raise UserError(
                f"{scheduler}: cannot connect to the Dask scheduler ({error})"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    if n_workers is None:
        n_workers = max(1, (os.cpu_count() or 1) // max(1, threads_per_worker))
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        host="127.0.0.1",
        # The scheduler's HTTP server runs in any case (health, metrics): on a free loopback
        # port, not a fixed one; the dashboard pages on it only when wanted and bokeh is there.
        dashboard_address="127.0.0.1:0",
        scheduler_kwargs={"dashboard": dashboard and _has_bokeh()},
        resources=resources or None,
        # A failing task's traceback would be logged by every worker that tried it; the
        # manifest and the summary carry the error instead.
        silence_logs=logging.CRITICAL,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


# ----------------------------------------------------------------------------- worker side


@dataclass(frozen=True)
class RunSpec:
    """How every video of a batch is segmented: what a worker needs besides the video.

    Attributes:
        config: the pipeline settings of `run_video` (model, vocabulary, decode range,
            tracker, store), the same for every video of the batch.
        segmenter_factory: builds the segmenter instead of `config.model` (Python API and
            tests); must be picklable (a module-level function or class).
    """

    config: RunConfig = field(default_factory=lambda: _default_config())
    segmenter_factory: Callable[[], Any] | None = None

    def fingerprint(self) -> str:
        """8 hex digits identifying these settings (part of task keys)."""
        return _short_hash(repr(self))


def _default_config() -> RunConfig:
    from streamseg.config import RunConfig

    return RunConfig()


# Per worker process: the segmenters built so far (one model per worker, kept across tasks),
# and how many times a model was built (read by the tests through `client.run`).
_SEGMENTERS: dict[tuple[Any, ...], Any] = {}
_SEGMENTER_LOCK = threading.Lock()
_MODEL_LOADS = 0


def model_loads() -> int:
    """How many segmenters this process has built (one per worker is the goal)."""
    return _MODEL_LOADS


def cached_segmenter(spec: RunSpec) -> Any:
    """The segmenter of `spec`, built once per process and then reused by every task.

    Keyed by what builds the model (name, CLIP weights, device; or the factory). Only the
    latest model is kept: a worker serves one batch's settings at a time, and two large
    models would not fit on one GPU. The vocabulary is set by `run_video` per task (its text
    classifier is cached in the segmenter and on disk).
    """
    global _MODEL_LOADS
    model = spec.config.model
    key = (model.name, model.clip_weights, model.device, spec.segmenter_factory)
    with _SEGMENTER_LOCK:
        segmenter = _SEGMENTERS.get(key)
        if segmenter is None:
            _SEGMENTERS.clear()
            if spec.segmenter_factory is not None:
                segmenter = spec.segmenter_factory()
            else:
                from streamseg.model.segmenter import DEFAULT_MODEL, Segmenter

                segmenter = Segmenter.from_pretrained(
                    model.name or DEFAULT_MODEL,
                    clip_weights=model.clip_weights,
                    device=model.device,
                )
            _SEGMENTERS[key] = segmenter
            _MODEL_LOADS += 1
    return segmenter


PROGRESS_TOPIC = "streamseg-batch-progress"
# Seconds between two progress events of one task (the client's frames bar).
PROGRESS_INTERVAL = 0.5


def _progress_reporter(task: str) -> Callable[[int], None]:
    """A `run_video` progress callback that sends (task, frames done) to the client, at most
    every PROGRESS_INTERVAL seconds; silent outside a Dask worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return lambda frames: None
    last = [0.0]

    def report(frames: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_INTERVAL:
            last[0] = now
            # Called from run_video's writer thread: hand the event to the worker's event
            # loop (add_callback is the thread-safe way in).
            message = {"task": task, "frames": int(frames)}
            worker.loop.add_callback(worker.log_event, PROGRESS_TOPIC, message)

    return report


def store_frames_if_done(output: str | os.PathLike[str]) -> int | None:
    """Frames of a finished store at `output`, or None if it is missing or unfinished."""
    from streamseg.video.store import store_status

    return store_status(output)


def process_video(
    source: str,
    output: str,
    spec: RunSpec,
    start: float | None = None,
    end: float | None = None,
    final: str | None = None,
) -> dict[str, Any]:
    """One task: segment `source` (or its time range) into the store `output` by `run_video`.

    A finished store is left alone ("skipped"); an unfinished one is resumed by `run_video`
    from its progress record, so a retry after a crash repeats at most one block of frames.
    A time shard names its video's final store as `final`: once that is stitched the shard
    is not needed any more (Dask may rerun a shard whose result was lost with a worker).

    Returns:
        {"status": "done" | "skipped", "frames": int, "seconds": float}
    """
    began = time.monotonic()
    frames = store_frames_if_done(output)
    if frames is None and final is not None and store_frames_if_done(final) is not None:
        frames = 0
    if frames is not None:
        return {"status": "skipped", "frames": frames, "seconds": 0.0}
    from streamseg.video.pipeline import run_video

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    segmenter = cached_segmenter(spec)
    summary = run_video(
        source,
        output,
        config=spec.config,
        segmenter=segmenter,
        start=start,
        end=end,
        progress=_progress_reporter(output),
    )
    return {
        "status": "done",
        "frames": int(summary.frames),
        "seconds": time.monotonic() - began,
    }


def plan_video(
    source: str,
    shard_seconds: float,
    overlap_frames: int,
    start: float | None = None,
    end: float | None = None,
    stream: int | None = None,
) -> list[Any]:
    """One task: probe `source` and cut it into time shards (`streamseg.shard.plan_shards`)."""
    from streamseg.shard import plan_shards
    from streamseg.video.decode import probe

    info = probe(source, stream=stream)
    return plan_shards(info.duration, info.fps, shard_seconds, overlap_frames, start=start, end=end)


def stitch_video(
    shard_outputs: list[str],
    output: str,
    shard_results: list[dict[str, Any]],
    spec: RunSpec,
    iou_threshold: float,
) -> dict[str, Any]:
    """One task: stitch finished shard stores into the final store (streamseg.shard).

    `shard_results` are the shard tasks' results: passing them makes Dask run this task after
    every shard, and their seconds add up to the video's. The shard stores are deleted once
    the final store is in place.
    """
    import shutil

    from streamseg.shard import stitch_stores

    frames = store_frames_if_done(output)
    if frames is None:
        decode = spec.config.decode
        frames = stitch_stores(
            shard_outputs,
            output,
            iou_threshold=iou_threshold,
            start=decode.start,
            end=decode.end,
        )
    for path in shard_outputs:
        shutil.rmtree(path, ignore_errors=True)
    # Empty folders go too (rmdir refuses non-empty ones, e.g. another video's shards).
    for folder in (Path(shard_outputs[0]).parent, Path(shard_outputs[0]).parent.parent):
        try:
            folder.rmdir()
        except OSError:
            break
    return {
        "status": "done",
        "frames": int(frames),
        "seconds": sum(float(r["seconds"]) for r in shard_results),
    }


# ----------------------------------------------------------------------------- client side


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _task_key(kind: str, output: Path, *parts: object) -> str:
    """Explicit task key: readable on the dashboard, unique per video and settings."""
    return f"streamseg-{kind}-{output.stem}-{_short_hash(repr((str(output), *parts)))}"


def _shard_folder(out_dir: Path, output: Path, shard_seconds: float, overlap_frames: int) -> Path:
    """Where the shard stores of one video go (a new plan gets a new folder)."""
    tag = _short_hash(repr((str(output), shard_seconds, overlap_frames)))
    return out_dir / ".shards" / f"{output.stem}-{tag}"


@dataclass
class _Progress:
    """The client's bars: videos (always) and frames (from the workers' events)."""

    enabled: bool
    total: int
    videos: Any = None
    frames: Any = None
    _seen: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.enabled:
            from tqdm import tqdm

            self.videos = tqdm(total=self.total, unit="video", desc="videos", position=0)
            self.frames = tqdm(unit="frame", desc="frames", position=1)

    def on_event(self, event: Any) -> None:
        _, message = event
        if self.frames is None or not isinstance(message, dict):
            return
        task, frames = str(message.get("task")), int(message.get("frames", 0))
        delta = frames - self._seen.get(task, 0)
        if delta > 0:
            self._seen[task] = frames
            self.frames.update(delta)

    def video_finished(self, record: BatchRecord) -> None:
        if self.videos is not None:
            self.videos.set_postfix_str(f"{record.status}: {Path(record.input).name}")
            self.videos.update(1)

    def close(self) -> None:
        for bar in (self.frames, self.videos):
            if bar is not None:
                bar.close()


def run_batch(
    videos: Sequence[VideoInput],
    out_dir: str | os.PathLike[str],
    spec: RunSpec,
    client: Client,
    *,
    retries: int = 2,
    resources: dict[str, float] | None = None,
    shard_seconds: float | None = None,
    overlap_frames: int = 4,
    iou_threshold: float = 0.5,
    progress: bool = True,
) -> list[BatchRecord]:
    """Segment every video on the cluster of `client`; write and return the manifest.

    One task per video (or per time shard plus one stitching task, for videos longer than
    1.5 shards when `shard_seconds` is set), each with an explicit key, `retries` retries of
    exceptions, and `resources` (e.g. {"GPU": 1}: only workers offering it run the task).
    Results are collected as they finish; the manifest is rewritten (atomically) as they come
    in, so an interrupted batch keeps what it did. Sharding needs every frame of the time
    range, so it is not used with a decode stride > 1 or a frame limit.

    Returns:
        This batch's records, in the order of `videos`.
    """
    from distributed import as_completed

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST_NAME
    old_records = read_manifest(manifest_path)
    outputs = assign_outputs(videos, out, {r.input: r.output for r in old_records})
    fingerprint = spec.fingerprint()
    decode = spec.config.decode
    if shard_seconds is not None and (decode.stride != 1 or decode.max_frames is not None):
        print("streamseg batch: no time shards with --stride or --max-frames", file=sys.stderr)
        shard_seconds = None
    records: dict[int, BatchRecord] = {}
    pending: dict[Any, tuple[int, str]] = {}
    bar = _Progress(enabled=progress, total=len(videos))

    def finish(index: int, status: str, frames: int = 0, seconds: float = 0.0, error=None) -> None:
        record = BatchRecord(
            input=str(videos[index].path),
            output=str(outputs[index]),
            status=status,
            frames=frames,
            seconds=round(seconds, 3),
            error=error,
        )
        records[index] = record
        bar.video_finished(record)

    def submit_run(index: int, key_parts: tuple[object, ...] = ()) -> Any:
        source, output = str(videos[index].path), outputs[index]
        return client.submit(
            process_video,
            source,
            str(output),
            spec,
            key=_task_key("run", output, source, fingerprint, *key_parts),
            retries=retries,
            resources=resources,
        )

    def submit_shards(index: int, shards: list[Any]) -> Any:
        source, output = str(videos[index].path), outputs[index]
        folder = _shard_folder(out, output, shard_seconds or 0.0, overlap_frames)
        shard_outputs, shard_futures = [], []
        for shard in shards:
            shard_output = folder / f"{shard.index:05d}{STORE_SUFFIX}"
            shard_outputs.append(str(shard_output))
            shard_futures.append(
                client.submit(
                    process_video,
                    source,
                    str(shard_output),
                    spec,
                    shard.start,
                    shard.end,
                    str(output),
                    key=_task_key("shard", shard_output, source, fingerprint, shard),
                    retries=retries,
                    resources=resources,
                )
            )
        return client.submit(
            stitch_video,
            shard_outputs,
            str(output),
            shard_futures,
            spec,
            iou_threshold,
            key=_task_key("stitch", output, source, fingerprint, tuple(shards)),
            retries=retries,
        )

    def save() -> None:
        done = [records[i] for i in sorted(records)]
        write_manifest(manifest_path, merge_records(old_records, done))

    if progress:
        client.subscribe_topic(PROGRESS_TOPIC, bar.on_event)
        # A LocalCluster has its dashboard only with bokeh; a remote scheduler decides itself.
        has_dashboard = client.scheduler_info().get("services", {}).get("dashboard")
        if has_dashboard and (getattr(client, "cluster", None) is None or _has_bokeh()):
            print(f"streamseg batch: Dask dashboard at {client.dashboard_link}", file=sys.stderr)
    last_save = 0.0
    try:
        for index, output in enumerate(outputs):
            frames = store_frames_if_done(output)
            if frames is not None:
                finish(index, "skipped", frames=frames)
                continue
            source = str(videos[index].path)
            if shard_seconds is None:
                pending[submit_run(index)] = (index, "run")
            else:
                future = client.submit(
                    plan_video,
                    source,
                    shard_seconds,
                    overlap_frames,
                    decode.start,
                    decode.end,
                    decode.stream,
                    key=_task_key(
                        "plan", output, source, shard_seconds, overlap_frames, fingerprint
                    ),
                    retries=retries,
                )
                pending[future] = (index, "plan")
        completed = as_completed(list(pending))
        for future in completed:
            index, kind = pending.pop(future)
            if future.status != "finished":
                error = future.exception() if future.status == "error" else None
                message = _one_line(error) if error is not None else f"task {future.status}"
                finish(index, "failed", error=message)
            elif kind == "plan":
                shards = future.result()
                follow = submit_run(index) if len(shards) <= 1 else submit_shards(index, shards)
                pending[follow] = (index, "stitch" if len(shards) > 1 else "run")
                completed.add(follow)
            else:
                result = future.result()
                finish(index, result["status"], result["frames"], result["seconds"])
            future.release()
            if time.monotonic() - last_save > 2.0:
                save()
                last_save = time.monotonic()
    finally:
        save()
        bar.close()
        if progress:
            try:
                client.unsubscribe_topic(PROGRESS_TOPIC)
            except Exception:  # noqa: BLE001 - the client may already be closing
                pass
    return [records[i] for i in range(len(videos)) if i in records]
