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
        dashboard_address="127.0.0.1:0" if dashboard and _has_bokeh() else None,
        resources=resources or None,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()
