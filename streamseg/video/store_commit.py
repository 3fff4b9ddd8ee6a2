"""Whether a store keeps the promise of its commit record (cheap checks, on every open).

`load_progress` reads the record strictly; `store_problems` measures the arrays and their files
against it (store_damage.py, nothing decoded); `undecodable_tables` decodes the tables, which
are small next to the labels; `read_rows` turns a decoder's error into a DamagedStore that names
the file; `intact_commit` is all of it for a writer about to resume a store (or to call it
done). `streamseg info --check` (store_check.py) goes further and decodes everything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.video.store_damage import (
    DamagedStore,
    Promise,
    check_promises,
    locate_unreadable,
    read_layout,
)
from streamseg.video.store_schema import (
    EMPTY_CHUNKS_KEY,
    FRAME_COLUMNS,
    PROGRESS_FILE,
    SEGMENT_COLUMNS,
    TIME_ARRAY,
    TRACK_COLUMNS,
    Progress,
    frame_arrays,
    segment_vector_arrays,
    track_vector_arrays,
)

# What a run on a damaged store says to do.
START_OVER = "; --overwrite to start over"


def load_progress(path: str | Path, attrs: Mapping[str, Any]) -> Progress:
    """The commit record of the store at `path` (with attributes `attrs`).

    Raises:
        DamagedStore: the record is missing (but for an unfinished store whose arrays are all
            still empty: a run stopped before its first commit), unreadable or malformed.
    """
    path = Path(path)
    file = path / PROGRESS_FILE
    try:
        text = file.read_bytes()
    except FileNotFoundError:
        if attrs.get("status") != "done" and _nothing_written(path, attrs):
            return Progress()
        raise DamagedStore(path, [f"commit record {PROGRESS_FILE} missing"]) from None
    except OSError as error:
        reason = error.strerror or str(error)
        raise DamagedStore(path, [f"commit record {PROGRESS_FILE} unreadable ({reason})"]) from None
    try:
        data = json.loads(text)
        progress = Progress(
            frames=int(data["frames"]),
            segments=int(data["segments"]),
            tracker=data.get("tracker"),
            extra=dict(data.get("extra") or {}),
        )
        if progress.frames < 0 or progress.segments < 0:
            raise ValueError("negative counts")
        if progress.tracker is not None and not isinstance(progress.tracker, str):
            raise ValueError("tracker state is not a string")
    except KeyError as error:
        raise DamagedStore(path, [f"commit record {PROGRESS_FILE} has no {error}"]) from None
    except (ValueError, TypeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DamagedStore(path, [f"commit record {PROGRESS_FILE} unreadable ({reason})"]) from None
    return progress


def _nothing_written(path: Path, attrs: Mapping[str, Any]) -> bool:
    """True if every array of the store is there and holds no row."""
    names = [*frame_arrays(attrs), *(f"segments/{c}" for c in SEGMENT_COLUMNS)]
    try:
        return all(read_layout(path, name).shape[0] == 0 for name in names)
    except DamagedStore:
        return False


def store_problems(
    path: str | Path, group: Any, attrs: Mapping[str, Any], progress: Progress
) -> list[str]:
    """What is wrong with a store against its commit record: array lengths and the files that
    the committed rows need (see store_damage.py). Empty = intact; no chunk is decoded."""
    path = Path(path)
    done = attrs.get("status") == "done"
    problems: list[str] = []
    if done:
        for key, value in (("frames", progress.frames), ("segments", progress.segments)):
            if key in attrs and int(attrs[key]) != value:
                problems.append(
                    f"commit record {PROGRESS_FILE} says {value} {key}, the finished store "
                    f"{attrs[key]}"
                )
        if problems:
            return problems  # the arrays measured against a wrong record would only echo it
    for table in ("frames", "segments", "tracks"):
        if not (path / table / "zarr.json").is_file():
            problems.append(f"{table} metadata {table}/zarr.json missing")
    # A store that skipped chunks of zeros only promises the files it knows to hold data.
    complete = bool(attrs.get(EMPTY_CHUNKS_KEY))
    skip = None if complete else np.zeros(0, np.int64)
    tables = [Promise(f"frames/{c}", progress.frames, done, skip) for c in FRAME_COLUMNS]
    # Schema 2's other per-frame arrays: the time coordinate and the label pyramid.
    others = [n for n in frame_arrays(attrs) if n != "labels" and not n.startswith("frames/")]
    tables += [Promise(name, progress.frames, done, skip) for name in others]
    tables += [Promise(f"segments/{c}", progress.segments, done, skip) for c in SEGMENT_COLUMNS]
    tables += [Promise(n, progress.segments, done, skip) for n in segment_vector_arrays(attrs)]
    if done and "tracks" in attrs:
        rows = int(attrs["tracks"])
        tables += [Promise(f"tracks/{c}", rows, True, skip) for c in TRACK_COLUMNS]
        tables += [Promise(n, rows, True, skip) for n in track_vector_arrays(attrs)]
    problems += check_promises(path, tables)
    if problems and not complete:
        return problems  # the labels' needs below come from the frames table
    stored = None if complete else _labelled_frames(path, group, progress.frames)
    problems += check_promises(path, [Promise("labels", progress.frames, done, stored)])
    return problems


def _labelled_frames(path: Path, group: Any, frames: int) -> np.ndarray:
    """Frames with segments, hence with label pixels (for stores that skipped zero chunks)."""
    counts = read_rows(path, group, "frames/segment_count", 0, frames)
    return np.flatnonzero(counts > 0)


def read_rows(path: Path, group: Any, name: str, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of array `name`; a chunk that cannot be decoded is a DamagedStore
    naming its file, not a decoder's traceback."""
    array = group[name]
    try:
        return np.asarray(array[start:stop])
    except Exception:
        problem = locate_unreadable(path, name, array, start, stop)
        if problem is None:
            raise
        raise DamagedStore(path, [problem]) from None


def undecodable_tables(
    path: Path, group: Any, meta: Mapping[str, Any], progress: Progress
) -> list[str]:
    """The table chunks of committed rows that cannot be decoded (all of them are read)."""
    tables = [(f"frames/{c}", progress.frames) for c in FRAME_COLUMNS]
    if TIME_ARRAY in frame_arrays(meta):
        tables.append((TIME_ARRAY, progress.frames))
    tables += [(f"segments/{c}", progress.segments) for c in SEGMENT_COLUMNS]
    tables += [(name, progress.segments) for name in segment_vector_arrays(meta)]
    if meta.get("status") == "done":
        tables += [(f"tracks/{c}", int(meta.get("tracks", 0))) for c in TRACK_COLUMNS]
        tables += [(name, int(meta.get("tracks", 0))) for name in track_vector_arrays(meta)]
    problems = []
    for name, rows in tables:
        try:
            read_rows(path, group, name, 0, rows)
        except DamagedStore as damage:
            problems += damage.problems
    return problems


def intact_commit(path: Path, group: Any, meta: Mapping[str, Any]) -> Progress:
    """The commit record of a store about to be resumed (or reported "already done"), after
    checking that everything it commits is there: its files, and its tables decoded (small;
    a label shard's index is checked, its frames are not decoded). Data past the commit does
    not matter: resuming drops it.

    Raises:
        DamagedStore: with the way out (--overwrite); nothing has been written yet.
    """
    try:
        progress = load_progress(path, meta)
        problems = store_problems(path, group, meta, progress)
        problems = problems or undecodable_tables(path, group, meta, progress)
    except DamagedStore as damage:
        raise DamagedStore(path, damage.problems, START_OVER) from None
    if problems:
        raise DamagedStore(path, problems, START_OVER)
    return progress


def written_files(array: Any, name: str, start: int, stop: int) -> list[str]:
    """The files (relative to the store) holding rows [start, stop) of array `name`.

    Computed from the array's metadata, not by walking the store: a commit's rows live in a
    few files (the storage grid's shard, or chunk, along the rows), so this costs nothing
    however long the store has grown.
    """
    if stop <= start:
        return []
    rows = int((array.shards or array.chunks)[0])
    tail = (0,) * (len(array.shape) - 1)
    keys = range(start // rows, (stop - 1) // rows + 1)
    return [f"{name}/{array.metadata.encode_chunk_key((k, *tail))}" for k in keys]


def sync_files(store: Path, files: Iterable[str]) -> None:
    """fsync `files` (relative to `store`; missing ones skipped: zarr need not write a chunk)
    and every folder from theirs up to the store's, once each: zarr writes a file as a temp
    file renamed into place, and a rename (or a new folder) is durable only once its folder
    is synced."""
    folders: set[Path] = set()
    for relative in sorted(set(files)):
        file = store / relative
        try:
            fd = os.open(file, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        folder = file.parent
        while folder != store and store in folder.parents:
            folders.add(folder)
            folder = folder.parent
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        sync_dir(folder)
    sync_dir(store)


def replace_file(path: Path, text: str) -> None:
    """Write `path` whole or not at all, durably: a synced temp file renamed over it, then its
    folder synced (the rename itself is durable only then)."""
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    sync_dir(path.parent)


def sync_dir(folder: Path) -> None:
    """fsync a folder (the names in it: renames, new files, new subfolders)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
