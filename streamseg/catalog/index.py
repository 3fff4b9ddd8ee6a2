"""A search index over many stores' tracks: one folder, built and updated incrementally.

```
INDEX/index.json           what is in it: the model, the vector size, the stores and their rows
INDEX/embeddings-G.f16     (rows, D) float16, row-major: one track vector per row
INDEX/tracks-G.bin         (rows,) TRACK_DTYPE records: store, track, class, times, best view
```

The two data files only grow: a new store's tracks are appended; a store whose commit changed
(a run resumed, a live store grown) gets its old rows marked dead and its tracks appended
again. `index.json` names how many rows are valid and is replaced atomically after the data is
on disk, so an update killed halfway leaves the previous index intact (bytes past its rows are
ignored, then cut by the next update). When half the rows are dead, the live ones are copied
into files of the next generation G, which `index.json` then names; the old ones are deleted
after. Search memory-maps the files: memory stays bounded whatever the index size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.catalog.store_tracks import StoreTracks, read_store_tracks, store_signature
from streamseg.errors import UserError

INDEX_FILE = "index.json"
FORMAT = "streamseg-index"
VERSION = 1

TRACK_DTYPE = np.dtype(
    [
        ("store", "<i4"),  # position in IndexInfo.stores
        ("track_id", "<i4"),
        ("class_id", "<i4"),  # the track's voted class, in its store's vocabulary
        ("first_time", "<f8"),  # seconds of video
        ("last_time", "<f8"),
        ("best_frame", "<i8"),  # row in the store's frames of the track's best view
        ("best_time", "<f8"),
        ("box", "<i4", (4,)),  # its COCO box (x, y, w, h) in label-map pixels
        ("score", "<f4"),  # mean segment score
        ("alive", "u1"),  # 0 once its store was indexed again
    ]
)


@dataclass(frozen=True)
class IndexedStore:
    """One store in the index: its rows are start..stop-1 (when alive)."""

    path: str
    signature: str
    start: int
    stop: int
    classes: list[str]
    source: str | None
    label_size: list[int]


@dataclass(frozen=True)
class IndexInfo:
    """The contents of `index.json`."""

    model: str | None  # model id (name@sha256:...) whose CLIP made every vector
    dim: int
    rows: int  # valid rows in the data files
    dead: int  # rows of replaced stores
    stores: list[IndexedStore] = field(default_factory=list)
    generation: int = 0  # of the data files' names

    def embeddings_file(self, folder: Path) -> Path:
        return folder / f"embeddings-{self.generation}.f16"

    def tracks_file(self, folder: Path) -> Path:
        return folder / f"tracks-{self.generation}.bin"

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "version": VERSION, **asdict(self)}, indent=1)

    @classmethod
    def read(cls, folder: Path) -> IndexInfo:
        path = folder / INDEX_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{folder}: not a streamseg index (no {INDEX_FILE})") from None
        except ValueError as error:
            raise UserError(f"{path}: unreadable index ({error})") from None
        if data.pop("format", None) != FORMAT or data.pop("version", None) != VERSION:
            raise UserError(f"{path}: not a version-{VERSION} streamseg index")
        stores = [IndexedStore(**store) for store in data.pop("stores")]
        return cls(**data, stores=stores)


@dataclass(frozen=True)
class UpdateReport:
    """What `update_index` did."""

    added: list[str]
    replaced: list[str]
    unchanged: list[str]
    tracks: int  # live tracks in the index after the update
    compacted: bool


def find_stores(inputs: Iterable[str | Path]) -> list[Path]:
    """Stores named or found under folders (`*.zarr` with a zarr.json), in a stable order.

    Raises:
        UserError: an input that is neither a store nor a folder holding one.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if (path / "zarr.json").is_file() and (path / "labels").exists():
            found.append(path.resolve())
            continue
        if not path.is_dir():
            raise UserError(f"{path}: no such store or folder")
        inside = sorted(p.parent.resolve() for p in path.rglob("*.zarr/zarr.json"))
        if not inside:
            raise UserError(f"{path}: no streamseg store (*.zarr) in this folder")
        found.extend(inside)
    return list(dict.fromkeys(found))


def update_index(
    folder: str | Path,
    inputs: Sequence[str | Path],
    client: Any = None,
    say: Callable[[str], None] | None = None,
) -> UpdateReport:
    """Add new stores to the index at `folder` (created if missing) and re-add changed ones.

    Args:
        folder: the index folder.
        inputs: stores, or folders searched for `*.zarr` stores.
        client: a dask.distributed Client: stores are read in parallel on its workers.
        say: progress lines.

    Raises:
        UserError: a store without track vectors, or made by another model than the index's.
    """
    folder = Path(folder)
    say = say or (lambda _line: None)
    stores = find_stores(inputs)
    info = IndexInfo.read(folder) if (folder / INDEX_FILE).is_file() else None
    known = {s.path: s for s in info.stores} if info else {}
    todo = [p for p in stores if known.get(str(p)) is None or _changed(known[str(p)], p)]
    unchanged = [str(p) for p in stores if p not in todo]
    say(f"{len(todo)} store(s) to read, {len(unchanged)} unchanged")
    report = add_to_index(folder, _read_all(todo, client))
    return replace(report, unchanged=unchanged)


def add_to_index(folder: str | Path, read: Sequence[StoreTracks]) -> UpdateReport:
    """Append stores' tracks to the index at `folder` (created if missing); a store already
    in it is replaced (its old rows marked dead)."""
    folder = Path(folder)
    info = IndexInfo.read(folder) if (folder / INDEX_FILE).is_file() else None
    model = info.model if info and info.stores else None
    dim = info.dim if info and info.stores else None
    for tracks in read:
        model = model or tracks.model
        dim = dim if dim is not None else tracks.dim
        if tracks.model != model or tracks.dim != dim:
            raise UserError(
                f"{tracks.path}: made by {tracks.model}, but the index holds {model}'s "
                "vectors: a CLIP's vectors only compare with the same CLIP's (use another index)"
            )
    folder.mkdir(parents=True, exist_ok=True)
    rows = info.rows if info else 0
    dead = info.dead if info else 0
    generation = info.generation if info else 0
    entries = {s.path: s for s in info.stores} if info else {}
    current = IndexInfo(model=model, dim=dim or 0, rows=rows, dead=dead, generation=generation)
    embeddings_path, tracks_path = current.embeddings_file(folder), current.tracks_file(folder)
    _remove_other_generations(folder, generation)
    _cut(embeddings_path, rows * (dim or 0) * 2)
    _cut(tracks_path, rows * TRACK_DTYPE.itemsize)
    order = list(entries)
    replaced = [t.path for t in read if t.path in entries]
    if replaced:
        table = np.memmap(tracks_path, TRACK_DTYPE, mode="r+", shape=(rows,))
        for path in replaced:
            old = entries[path]
            table["alive"][old.start : old.stop] = 0
            dead += old.stop - old.start
        table.flush()
        del table
    with open(embeddings_path, "ab") as vectors, open(tracks_path, "ab") as records:
        for tracks in read:
            position = order.index(tracks.path) if tracks.path in order else len(order)
            if tracks.path not in order:
                order.append(tracks.path)
            vectors.write(np.ascontiguousarray(tracks.embeddings, np.float16).tobytes())
            records.write(track_records(tracks, position).tobytes())
            entries[tracks.path] = indexed_store(tracks, rows)
            rows += len(tracks.track_id)
        for handle in (vectors, records):
            handle.flush()
            os.fsync(handle.fileno())
    new_info = IndexInfo(
        model=model,
        dim=dim or 0,
        rows=rows,
        dead=dead,
        stores=[entries[p] for p in order],
        generation=generation,
    )
    compacted = dead > 0 and dead * 2 > rows
    if compacted:
        new_info = _compact(folder, new_info)
    _write_info(folder, new_info)
    if compacted:
        _remove_other_generations(folder, new_info.generation)
    return UpdateReport(
        added=[t.path for t in read if t.path not in replaced],
        replaced=replaced,
        unchanged=[],
        tracks=new_info.rows - new_info.dead,
        compacted=compacted,
    )


def _changed(entry: IndexedStore, path: Path) -> bool:
    return entry.signature != store_signature(path)


def _read_all(paths: Sequence[Path], client: Any) -> list[StoreTracks]:
    if client is None or not paths:
        return [read_store_tracks(p) for p in paths]
    futures = client.map(read_store_tracks, [str(p) for p in paths], pure=False)
    return list(client.gather(futures))


def indexed_store(tracks: StoreTracks, start: int) -> IndexedStore:
    """The index's entry of a store whose tracks take rows start..start + T - 1."""
    return IndexedStore(
        path=tracks.path,
        signature=tracks.signature,
        start=start,
        stop=start + len(tracks.track_id),
        classes=tracks.classes,
        source=tracks.source,
        label_size=list(tracks.label_size),
    )


def track_records(tracks: StoreTracks, store: int) -> np.ndarray:
    """A store's tracks as (T,) TRACK_DTYPE records, all alive, of store number `store`."""
    records = np.zeros(len(tracks.track_id), TRACK_DTYPE)
    records["store"] = store
    records["track_id"] = tracks.track_id
    records["class_id"] = tracks.class_id
    records["first_time"] = tracks.first_time
    records["last_time"] = tracks.last_time
    records["best_frame"] = tracks.best_frame
    records["best_time"] = tracks.best_time
    records["box"] = tracks.best_box
    records["score"] = tracks.score
    records["alive"] = 1
    return records


def _cut(path: Path, size: int) -> None:
    """Drop bytes past `size` (an update killed after appending, before index.json)."""
    if path.exists() and path.stat().st_size > size:
        with open(path, "r+b") as handle:
            handle.truncate(size)


def _remove_other_generations(folder: Path, generation: int) -> None:
    """Data files of another generation: the old ones after a compaction, or the new ones of
    a compaction killed before index.json named them."""
    keep = {f"embeddings-{generation}.f16", f"tracks-{generation}.bin"}
    for path in [*folder.glob("embeddings-*.f16"), *folder.glob("tracks-*.bin")]:
        if path.name not in keep:
            path.unlink()


def _write_info(folder: Path, info: IndexInfo) -> None:
    temporary = folder / f"{INDEX_FILE}.tmp"
    with open(temporary, "w") as handle:
        handle.write(info.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, folder / INDEX_FILE)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _compact(folder: Path, info: IndexInfo) -> IndexInfo:
    """The live rows copied into data files of the next generation (named by the info that
    this returns; the caller writes it, then removes the old files)."""
    table = np.memmap(info.tracks_file(folder), TRACK_DTYPE, mode="r", shape=(info.rows,))
    vectors = np.memmap(
        info.embeddings_file(folder), np.float16, mode="r", shape=(info.rows, info.dim)
    )
    stores: list[IndexedStore] = []
    rows = 0
    following = IndexInfo(info.model, info.dim, 0, 0, [], info.generation + 1)
    with (
        open(following.embeddings_file(folder), "wb") as new_vectors,
        open(following.tracks_file(folder), "wb") as new_records,
    ):
        for position, store in enumerate(info.stores):
            part = slice(store.start, store.stop)
            alive = table["alive"][part].astype(bool)
            records = np.array(table[part][alive])
            records["store"] = position
            new_records.write(records.tobytes())
            new_vectors.write(np.ascontiguousarray(vectors[part][alive]).tobytes())
            count = int(alive.sum())
            stores.append(IndexedStore(**{**asdict(store), "start": rows, "stop": rows + count}))
            rows += count
        for handle in (new_vectors, new_records):
            handle.flush()
            os.fsync(handle.fileno())
    del table, vectors
    return IndexInfo(info.model, info.dim, rows, 0, stores, following.generation)


@dataclass(frozen=True)
class IndexArrays:
    """An index's data, memory-mapped (read-only)."""

    info: IndexInfo
    embeddings: np.ndarray  # (rows, D) float16
    tracks: np.ndarray  # (rows,) TRACK_DTYPE


def open_index(folder: str | Path) -> IndexArrays:
    """The index at `folder`, memory-mapped."""
    folder = Path(folder)
    info = IndexInfo.read(folder)
    if info.rows == 0:
        return IndexArrays(info, np.zeros((0, info.dim), np.float16), np.zeros(0, TRACK_DTYPE))
    vectors = np.memmap(
        info.embeddings_file(folder), np.float16, mode="r", shape=(info.rows, info.dim)
    )
    table = np.memmap(info.tracks_file(folder), TRACK_DTYPE, mode="r", shape=(info.rows,))
    return IndexArrays(info, vectors, table)
