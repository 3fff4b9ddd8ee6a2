"""One store's tracks as the search index takes them: vectors, classes, times, best views."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamseg.errors import UserError
from streamseg.video.store_reader import StoreReader


@dataclass(frozen=True)
class StoreTracks:
    """The tracks of one store (T tracks, vectors of D floats).

    Attributes:
        path: the store (absolute).
        signature: `store_signature` when read (a changed store is indexed again).
        model: id of the model (name@sha256:...) whose CLIP made the vectors.
        classes: the run's class names (class_id indexes them).
        source: the video the store was made from (thumbnails are cut from it).
        label_size: (H, W) of the label maps (boxes are in these pixels).
        embeddings: (T, D) float16 L2-normalized track vectors.
        track_id, class_id, score: (T,) per track.
        first_time, last_time, best_time: (T,) seconds of video.
        best_frame: (T,) row in frames of the best view; best_box: (T, 4) its COCO box.
    """

    path: str
    signature: str
    model: str
    classes: list[str]
    source: str | None
    label_size: tuple[int, int]
    embeddings: np.ndarray
    track_id: np.ndarray
    class_id: np.ndarray
    score: np.ndarray
    first_time: np.ndarray
    last_time: np.ndarray
    best_frame: np.ndarray
    best_time: np.ndarray
    best_box: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])


def store_signature(path: str | Path) -> str:
    """What changes whenever a store's committed content does: its commit record and its
    attributes (status "done" and the tracks table come with the last commit)."""
    path = Path(path)
    digest = hashlib.sha256()
    for name in ("progress.json", "zarr.json"):
        file = path / name
        digest.update(file.read_bytes() if file.is_file() else b"-")
    return digest.hexdigest()


def read_store_tracks(path: str | Path) -> StoreTracks:
    """The tracks of the store at `path` (committed frames; a running store too).

    Raises:
        UserError: no such store, damage, or a store written without segment embeddings.
    """
    signature = store_signature(path)
    reader = StoreReader(path)
    vectors = reader.track_vectors()
    if vectors is None:
        raise UserError(
            f"{path}: no track vectors (the store was written before search existed, or "
            "with store.segment_embeddings off): run it again to search it"
        )
    embeddings, best = vectors.embeddings, vectors.best
    tracks = reader.tracks
    times = np.asarray(reader.frames["time"], np.float64)

    def time_of(rows: np.ndarray) -> np.ndarray:
        return times[np.asarray(rows, np.int64)] if len(rows) else np.zeros(0)

    model = reader.attrs.get("model", {}).get("id")
    if not model:
        raise UserError(f"{path}: the store does not say which model made it")
    return StoreTracks(
        path=str(Path(path).resolve()),
        signature=signature,
        model=str(model),
        classes=reader.class_names,
        source=reader.attrs.get("source", {}).get("path"),
        label_size=reader.label_size,
        embeddings=np.asarray(embeddings, np.float16),
        track_id=np.asarray(tracks["track_id"], np.int32),
        class_id=np.asarray(tracks["class_id"], np.int32),
        score=np.asarray(tracks["score"], np.float32),
        first_time=time_of(tracks["first_frame"]),
        last_time=time_of(tracks["last_frame"]),
        best_frame=np.asarray(best["best_frame"], np.int64),
        best_time=time_of(best["best_frame"]),
        best_box=np.stack(
            [np.asarray(best[f"best_{c}"], np.int32) for c in ("x", "y", "w", "h")], -1
        ).reshape(-1, 4),
    )
