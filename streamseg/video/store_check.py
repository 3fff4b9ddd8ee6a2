"""`streamseg info --check`: verify a whole label store, and report every problem.

Opening a store (store.py) stops at the first broken promise and decodes nothing. This reads
everything: the commit record against the arrays, each file that the committed rows need,
every chunk decoded (label frames included), and the tables against each other (the frames'
segment counts and starts against the segments table, a finished store's tracks against the
tracks the segments give). The last catches zeros where data was in a store written before
`empty_chunks_written`, whose missing chunks cannot be told from chunks of zeros.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError
from streamseg.video.store import summarize_tracks
from streamseg.video.store_commit import load_progress, store_problems
from streamseg.video.store_damage import (
    ArrayLayout,
    DamagedStore,
    decode_reason,
    read_layout,
    stored_files,
)
from streamseg.video.store_schema import (
    ATTRS_KEY,
    EMPTY_CHUNKS_KEY,
    FRAME_COLUMNS,
    PYRAMID_GROUP,
    SEGMENT_COLUMNS,
    TIME_ARRAY,
    TRACK_COLUMNS,
    frame_arrays,
    is_store,
)

# Bytes of label frames decoded at once (a 4K int32 frame is 33 MB).
READ_BYTES = 64 << 20


@dataclass(frozen=True)
class StoreCheck:
    """The verdict on one store: its problems (none = intact) and what was verified."""

    path: str
    problems: tuple[str, ...]
    facts: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> str:
        return json.dumps(
            {"store": self.path, "ok": self.ok, "problems": self.problems, "facts": self.facts}
        )


def check_store(path: str | Path) -> StoreCheck:
    """Verify the store at `path` (see the module's docstring).

    Raises:
        UserError: `path` is not a streamseg store at all (a damaged one is a StoreCheck).
    """
    import zarr

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such store")
    if not is_store(path):
        raise UserError(f"{path}: not a streamseg store")
    attrs = dict(json.loads((path / "zarr.json").read_text())["attributes"][ATTRS_KEY])
    group = zarr.open_group(str(path), mode="r", use_consolidated=False)
    problems: list[str] = []
    frames = segments = None  # unknown without a commit record: what the arrays hold is read
    try:
        progress = load_progress(path, attrs)
        frames, segments = progress.frames, progress.segments
        problems += store_problems(path, group, attrs, progress)
    except DamagedStore as damage:
        problems += damage.problems
    extents = _extents(path, attrs, frames, segments)
    decoded = 0
    for name, rows in extents.items():
        bad, count = _decode_problems(path, group, name, rows, problems)
        problems += bad
        decoded += count
    if not problems:
        problems += _table_problems(path, group, attrs, extents)
    facts = [
        f"commit record: {frames} frames, {segments} segments, status {attrs.get('status')}",
        f"{decoded} chunk and shard files of {len(extents)} arrays decoded",
    ]
    if not attrs.get(EMPTY_CHUNKS_KEY):
        facts.append(
            "written before empty_chunks_written: chunks of zeros were not stored, so only the "
            "tables' agreement shows data lost to a missing chunk"
        )
    return StoreCheck(str(path), tuple(problems), tuple(facts))


def _extents(
    path: Path, attrs: dict[str, Any], frames: int | None, segments: int | None
) -> dict[str, int]:
    """Committed rows per array; with no commit record to trust, the rows each array holds."""
    wanted: dict[str, int | None] = {name: frames for name in frame_arrays(attrs)}
    wanted.update({f"segments/{c}": segments for c in SEGMENT_COLUMNS})
    tracks = attrs.get("tracks") if attrs.get("status") == "done" else 0
    wanted.update({f"tracks/{c}": tracks for c in TRACK_COLUMNS})
    extents: dict[str, int] = {}
    for name, rows in wanted.items():
        try:
            held = read_layout(path, name).shape[0]
        except DamagedStore:
            continue  # reported by store_problems (or unknowable without a commit record)
        extents[name] = held if rows is None else min(int(rows), held)
    return extents


def _decode_problems(
    path: Path, group: Any, name: str, rows: int, known: list[str]
) -> tuple[list[str], int]:
    """Decode every file of array `name` holding rows [0, rows); one problem per bad file."""
    layout = read_layout(path, name)
    present = stored_files(path, layout)
    try:
        array = group[name]
    except Exception as error:  # noqa: BLE001 - metadata that zarr rejects, in any way
        return [f"{name} metadata {name}/zarr.json unreadable ({decode_reason(error)})"], 0
    problems: list[str] = []
    count = 0
    for key, first, stop in layout.files(rows):
        what, span = layout.what(key, first, stop)
        if key not in present or any(p.startswith(what + " ") for p in known):
            continue  # missing (zeros) or already reported
        count += 1
        try:
            for start, end in _pieces(layout, first, stop):
                array[start:end]
        except Exception as error:  # noqa: BLE001 - zarr's decoders raise many kinds
            problems.append(f"{what} unreadable ({span}: {decode_reason(error)})")
    return problems, count


def _pieces(layout: ArrayLayout, first: int, stop: int) -> Iterator[tuple[int, int]]:
    """Row ranges of at most READ_BYTES (assuming 8-byte values) covering [first, stop)."""
    row_bytes = 8 * int(np.prod(layout.shape[1:], dtype=np.int64))
    step = max(1, READ_BYTES // max(row_bytes, 1))
    for start in range(first, stop, step):
        yield start, min(start + step, stop)


def _table_problems(
    path: Path, group: Any, attrs: dict[str, Any], extents: dict[str, int]
) -> list[str]:
    """The tables against each other (only run on a store whose chunks all decode)."""
    frames = _table(group, extents, "frames", FRAME_COLUMNS)
    segments = _table(group, extents, "segments", SEGMENT_COLUMNS)
    problems: list[str] = []
    counts = frames["segment_count"].astype(np.int64)
    total = len(segments["frame"])
    if int(counts.sum()) != total:
        problems.append(
            f"frames/segment_count adds up to {int(counts.sum())} segments, the commit record "
            f"says {total}"
        )
        return problems
    starts = np.cumsum(counts) - counts
    wrong = np.flatnonzero(frames["segment_start"] != starts)
    if wrong.size:
        problems.append(f"frames/segment_start is wrong from frame {int(wrong[0])}")
    owner = np.repeat(np.arange(len(counts)), counts)
    wrong = np.flatnonzero(segments["frame"] != owner)
    if wrong.size:
        problems.append(f"segments/frame disagrees with frames/segment_count at row {wrong[0]}")
    wrong = np.flatnonzero(segments["track_id"] <= 0)
    if wrong.size:
        problems.append(f"segments/track_id holds no track (0) at row {int(wrong[0])}")
    if TIME_ARRAY in extents:
        time = np.asarray(group[TIME_ARRAY][: extents[TIME_ARRAY]])
        if not np.array_equal(time, frames["time"]):
            problems.append(f"{TIME_ARRAY} disagrees with frames/time")
    problems += _pyramid_problems(group, extents)
    if attrs.get("status") == "done" and not problems:
        stored = _table(group, extents, "tracks", TRACK_COLUMNS)
        derived = summarize_tracks(segments)
        differ = [c for c in TRACK_COLUMNS if not np.array_equal(stored[c], derived[c])]
        if differ:
            problems.append(
                f"tracks table disagrees with the segments table in {', '.join(differ)}"
            )
    return problems


def _pyramid_problems(group: Any, extents: dict[str, int]) -> list[str]:
    """Each pyramid level against the labels it is taken from (every 2^k-th pixel)."""
    levels = sorted(n for n in extents if n.startswith(f"{PYRAMID_GROUP}/"))
    if not levels:
        return []
    labels = group["labels"]
    frames = extents["labels"]
    step = max(1, READ_BYTES // max(1, 4 * int(np.prod(labels.shape[1:], dtype=np.int64))))
    problems = []
    for name in levels:
        factor = 2 ** int(name.rpartition("/")[2])
        level = group[name]
        for start in range(0, frames, step):
            stop = min(start + step, frames)
            want = np.asarray(labels[start:stop])[:, ::factor, ::factor]
            wrong = np.flatnonzero((np.asarray(level[start:stop]) != want).any(axis=(1, 2)))
            if wrong.size:
                problems.append(f"{name} disagrees with labels at frame {start + int(wrong[0])}")
                break
    return problems


def _table(
    group: Any, extents: dict[str, int], table: str, columns: Iterable[str]
) -> dict[str, np.ndarray]:
    return {c: np.asarray(group[f"{table}/{c}"][: extents[f"{table}/{c}"]]) for c in columns}
