"""What a label store promises on disk, and the cheap checks that it keeps the promise.

A commit record says "T frames, N segments": every array then holds at least that many rows,
and every file that stores them is there and whole. zarr cannot see a broken promise - a
missing chunk reads as the fill value (all-zero labels, exit 0) - so these checks read the
arrays' metadata, compute the file keys that the committed rows need, and list the store's
folder. Nothing here decodes a chunk; a shard file's index (a few bytes at its end) is read.

This module knows zarr v3's on-disk layout, and of streamseg's schema only that the rows of
`labels` are frames (for messages): store_commit.py says which arrays must hold how many rows
(`Promise`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError

# Shard index entries are (offset, nbytes) uint64 pairs; this pair marks an absent chunk.
ABSENT = 2**64 - 1


class DamagedStore(UserError):
    """A store that breaks its own promises; the message names the first problem."""

    def __init__(self, path: str | Path, problems: Sequence[str], hint: str = "") -> None:
        self.path = Path(path)
        self.problems = list(problems)
        more = len(self.problems) - 1
        # One line whatever the count: `streamseg info --check` lists them all.
        extra = f" (and {more} more: streamseg info --check {path})" if more else ""
        super().__init__(f"{path}: damaged store: {self.problems[0]}{extra}{hint}")


@dataclass(frozen=True)
class Promise:
    """Rows [0, rows) of array `name` are committed.

    Attributes:
        exact: the array holds exactly `rows` rows (a finished store is trimmed).
        stored: rows whose files must exist; None = every committed row. A store that skipped
            chunks of fill values (written before `empty_chunks_written`) needs none but those
            it knows to hold data.
    """

    name: str
    rows: int
    exact: bool = False
    stored: np.ndarray | None = None


@dataclass(frozen=True)
class ArrayLayout:
    """Where an array's rows live on disk, from its zarr.json (zarr v3, regular grid)."""

    name: str
    shape: tuple[int, ...]
    file_shape: tuple[int, ...]  # elements per file: the shard shape, or the chunk shape
    inner_shape: tuple[int, ...] | None  # chunk shape inside a shard; None = not sharded
    prefix: str  # "c/" for the default key encoding, "" for "v2"
    separator: str
    index_at_end: bool = True
    index_crc: bool = True

    @property
    def inner_per_file(self) -> int:
        if self.inner_shape is None:
            return 1
        return math.prod(f // i for f, i in zip(self.file_shape, self.inner_shape, strict=True))

    @property
    def index_bytes(self) -> int:
        """Size of a shard's index (0 when not sharded)."""
        if self.inner_shape is None:
            return 0
        return 16 * self.inner_per_file + (4 if self.index_crc else 0)

    def key(self, coords: Sequence[int]) -> str:
        return self.prefix + self.separator.join(str(c) for c in coords)

    def files(self, rows: int) -> Iterator[tuple[str, int, int]]:
        """(key, first row, stop row) of each file holding rows [0, rows), stop clipped."""
        per = self.file_shape[0]
        rest = [range(-(-s // f)) for s, f in zip(self.shape[1:], self.file_shape[1:], strict=True)]
        for index in range(-(-rows // per)):
            first, stop = index * per, min((index + 1) * per, rows)
            for others in itertools.product(*rest):
                yield self.key((index, *others)), first, stop

    def file_of_row(self, row: int) -> str:
        return self.key((row // self.file_shape[0],) + (0,) * (len(self.shape) - 1))

    def what(self, key: str, first: int, stop: int) -> tuple[str, str]:
        """("label shard c/1/0/0", "frames 8-15") for messages."""
        if self.name == "labels":
            kind = "label shard" if self.inner_shape is not None else "label chunk"
            return f"{kind} {key}", f"frames {first}-{stop - 1}"
        kind = "shard" if self.inner_shape is not None else "chunk"
        return f"{self.name} {kind} {key}", f"rows {first}-{stop - 1}"


def read_layout(path: Path, name: str) -> ArrayLayout:
    """The layout of array `name` of the store at `path`.

    Raises:
        DamagedStore: its metadata is missing or unreadable.
    """
    meta_file = path / name / "zarr.json"
    if not meta_file.is_file():
        raise DamagedStore(path, [f"{name} metadata {name}/zarr.json missing"])
    try:
        meta = json.loads(meta_file.read_text())
        shape = tuple(int(s) for s in meta["shape"])
        file_shape = tuple(int(c) for c in meta["chunk_grid"]["configuration"]["chunk_shape"])
        encoding = meta.get("chunk_key_encoding", {"name": "default"})
        default = encoding["name"] == "default"
        separator = encoding.get("configuration", {}).get("separator", "/" if default else ".")
        inner_shape, at_end, crc = None, True, True
        for codec in meta.get("codecs", []):
            if codec["name"] == "sharding_indexed":
                config = codec["configuration"]
                inner_shape = tuple(int(c) for c in config["chunk_shape"])
                at_end = config.get("index_location", "end") == "end"
                crc = any(c["name"] == "crc32c" for c in config.get("index_codecs", []))
        if len(file_shape) != len(shape) or (inner_shape and len(inner_shape) != len(shape)):
            raise ValueError("chunk shape does not match the array's dimensions")
    except (OSError, ValueError, KeyError, TypeError) as error:
        problem = f"{name} metadata {name}/zarr.json unreadable ({error})"
        raise DamagedStore(path, [problem]) from None
    return ArrayLayout(
        name=name,
        shape=shape,
        file_shape=file_shape,
        inner_shape=inner_shape,
        prefix=f"c{separator}" if default else "",
        separator=separator,
        index_at_end=at_end,
        index_crc=crc,
    )


def stored_files(path: Path, layout: ArrayLayout) -> dict[str, int]:
    """key -> size in bytes of every chunk or shard file of the array (one folder walk)."""
    root = path / layout.name
    found: dict[str, int] = {}
    # "c/0/0/0" lives in folders under c/; "c.0.0.0" or "0.0.0" sit beside zarr.json.
    top = root / "c" if layout.prefix and layout.separator == "/" else root
    if not top.is_dir():
        return found
    base = len(str(root)) + 1
    for folder, _, names in os.walk(top):
        for name in names:
            file = os.path.join(folder, name)
            key = file[base:].replace(os.sep, layout.separator)
            try:
                found[key] = os.stat(file).st_size
            except OSError:
                continue  # replaced meanwhile by the writer (atomic rename): not ours to judge
    return found


def shard_index(file: Path, layout: ArrayLayout, size: int) -> np.ndarray | str:
    """A shard's (inner chunks, 2) offsets and lengths, or what is wrong with it."""
    count = layout.index_bytes
    with open(file, "rb") as handle:
        handle.seek(size - count if layout.index_at_end else 0)
        raw = handle.read(count)
    body = raw[:-4] if layout.index_crc else raw
    if layout.index_crc:
        try:
            import google_crc32c
        except ImportError:  # zarr's own dependency; without it the index goes unchecked
            google_crc32c = None
        if google_crc32c is not None:
            if google_crc32c.value(body).to_bytes(4, "little") != raw[-4:]:
                return "index checksum mismatch"
    entries = np.frombuffer(body, "<u8").reshape(-1, 2)
    present = entries[:, 0] != ABSENT
    data_start = 0 if layout.index_at_end else count
    data_stop = size - count if layout.index_at_end else size
    offsets, lengths = entries[present, 0], entries[present, 1]
    if np.any(offsets < data_start) or np.any(offsets + lengths > data_stop):
        return "index points past the file's end"
    return entries


def check_promises(path: Path, promises: Iterable[Promise]) -> list[str]:
    """Problems of the arrays' lengths and files against `promises` (empty = intact)."""
    problems: list[str] = []
    short: dict[tuple[str, int, int], list[str]] = {}  # (table, held, promised) -> columns
    for promise in promises:
        try:
            layout = read_layout(path, promise.name)
        except DamagedStore as damage:
            problems.extend(damage.problems)
            continue
        have = layout.shape[0]
        if have < promise.rows or (promise.exact and have != promise.rows):
            table, _, column = promise.name.rpartition("/")
            short.setdefault((table, have, promise.rows), []).append(column)
            continue
        problems.extend(_file_problems(path, layout, promise))
    # One line per table, not per column: a table's columns are cut together.
    for (table, have, rows), columns in short.items():
        if not table:
            name, unit = columns[0], "frames" if columns[0] == "labels" else "rows"
        else:
            name = f"{table}/{columns[0]}" if len(columns) == 1 else f"{table} table"
            unit = "rows"
        problems.append(f"{name} holds {have} {unit}, the commit record {rows}")
    return problems


def _file_problems(path: Path, layout: ArrayLayout, promise: Promise) -> list[str]:
    files = stored_files(path, layout)
    needed = None if promise.stored is None else set(np.asarray(promise.stored).tolist())
    problems: list[str] = []
    for key, first, stop in layout.files(promise.rows):
        rows = range(first, stop)
        if needed is not None:
            rows = [r for r in rows if r in needed]
        if not rows:
            continue
        what, span = layout.what(key, first, stop)
        size = files.get(key)
        if size is None:
            problems.append(f"{what} missing ({span})")
        elif size == 0 or size <= layout.index_bytes:
            problems.append(f"{what} truncated ({size} bytes; {span})")
        elif layout.inner_shape is not None:
            file = path / layout.name / key
            problems.extend(_shard_problems(file, layout, size, rows, what, span))
    return problems


def _shard_problems(
    file: Path, layout: ArrayLayout, size: int, rows: Sequence[int], what: str, span: str
) -> list[str]:
    try:
        entries = shard_index(file, layout, size)
    except OSError as error:
        return [f"{what} unreadable ({error.strerror or error}; {span})"]
    if isinstance(entries, str):
        return [f"{what} truncated or overwritten ({entries}; {span})"]
    inner = layout.inner_shape or layout.file_shape
    grid = tuple(f // i for f, i in zip(layout.file_shape, inner, strict=True))
    # The index is the grid of inner chunks in C order; a row is absent if any of its chunks is.
    missing = (entries[:, 0] == ABSENT).reshape(grid).reshape(grid[0], -1).any(axis=1)
    base = rows[0] - rows[0] % layout.file_shape[0]
    absent = [r for r in rows if missing[(r - base) // inner[0]]]
    if not absent:
        return []
    return [f"{what} lacks {_spans(absent)}"]


def _spans(frames: Sequence[int]) -> str:
    """Rows as words: 'frame 3', 'frames 3-5, 9'."""
    parts: list[str] = []
    start = prev = frames[0]
    for f in [*frames[1:], None]:
        if f is not None and f == prev + 1:
            prev = f
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if f is not None:
            start = prev = f
    return ("frame " if len(frames) == 1 else "frames ") + ", ".join(parts)


def locate_unreadable(path: Path, name: str, array: Any, first: int, stop: int) -> str | None:
    """After a read of rows [first, stop) of `array` failed: the file that cannot be decoded
    ("segments/area chunk c/1 unreadable (rows 16-31: ...)"), or None if every piece alone
    reads (then the failure was not damage, and the caller re-raises it)."""
    layout = read_layout(path, name)
    per = layout.file_shape[0]
    # One inner chunk (a label frame) at a time: a whole shard of large frames is gigabytes.
    step = layout.inner_shape[0] if layout.inner_shape else per
    for start in range(first, stop, step):
        try:
            array[start : min(start + step, stop)]
        except Exception as error:  # noqa: BLE001 - zarr's decoders raise many kinds
            file_first = start - start % per
            file_stop = min(file_first + per, array.shape[0])
            what, span = layout.what(layout.file_of_row(start), file_first, file_stop)
            return f"{what} unreadable ({span}: {decode_reason(error)})"
    return None


def decode_reason(error: BaseException) -> str:
    """The gist of a decoder's message: its first sentence, without the bytes it dumps."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = text.split(". ")[0].rstrip(".")
    return text if len(text) <= 100 else text[:97] + "..."
