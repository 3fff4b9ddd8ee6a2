"""Search tracks by words: rank an index's (or stores') track vectors against a text query.

The query goes through the same CLIP text tower and prompt templates as a run's class names
(`Segmenter.encode_texts`), so any words score against every track: classes the run never
had in its vocabulary included. Scores are cosine similarities in CLIP's joint space.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.catalog.index import (
    INDEX_FILE,
    IndexArrays,
    IndexedStore,
    IndexInfo,
    find_stores,
    indexed_store,
    open_index,
    track_records,
)
from streamseg.catalog.store_tracks import StoreTracks, read_store_tracks
from streamseg.errors import UserError

CHUNK_ROWS = 1 << 17  # rows scored per step: bounded memory over a memory-mapped index


@dataclass(frozen=True)
class SearchHit:
    """One ranked track."""

    rank: int  # 1 = best
    score: float  # cosine similarity of the track's vector and the query's
    store: str
    track_id: int
    class_name: str  # the track's class in its own run's vocabulary
    first_time: float  # seconds of video
    last_time: float
    best_time: float  # the track's best view (highest score x area)
    best_frame: int  # its row in the store's frames
    box: tuple[int, int, int, int]  # its COCO box in label-map pixels
    source: str | None  # the video the store was made from
    label_size: tuple[int, int]


def top_rows(
    embeddings: np.ndarray, alive: np.ndarray | None, query: np.ndarray, top_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The `top_k` rows of (N, D) float16 `embeddings` by dot product with `query` (D,).

    Chunk by chunk (bounded memory over a memory map), in float16 products with float32
    accumulation: torch's CPU half kernels, ~5x faster here than converting to float32.

    Returns:
        rows (k,) int64 and scores (k,) float32, best first; dead rows never returned.
    """
    import torch

    count = int(embeddings.shape[0])
    k = min(top_k, count)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    vector = torch.from_numpy(np.asarray(query, np.float32)).half()
    best_scores = torch.full((0,), float("-inf"))
    best_rows = torch.zeros(0, dtype=torch.long)
    for start in range(0, count, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, count)
        with warnings.catch_warnings():
            # A read-only memory map: torch warns that it could write to it; it never does.
            warnings.simplefilter("ignore", UserWarning)
            part = torch.from_numpy(np.ascontiguousarray(embeddings[start:stop]))
        scores = (part @ vector).float()
        if alive is not None:
            scores[torch.from_numpy(~np.asarray(alive[start:stop], bool))] = float("-inf")
        values, rows = scores.topk(min(k, stop - start))
        best_scores = torch.cat([best_scores, values])
        best_rows = torch.cat([best_rows, rows + start])
        if best_scores.numel() > k:
            best_scores, keep = best_scores.topk(k)
            best_rows = best_rows[keep]
    order = torch.argsort(best_scores, descending=True, stable=True)
    scores, rows = best_scores[order], best_rows[order]
    live = torch.isfinite(scores)
    return rows[live].numpy(), scores[live].numpy()


def encode_query(
    query: str, model_id: str, segmenter: Any = None, device: str = "auto"
) -> np.ndarray:
    """The query's vector: its synonyms ("red kite|kite") through the CLIP text tower with
    the prompt templates, averaged and normalized, by the model that made the vectors.

    Raises:
        UserError: an empty query, or a model whose weights differ from `model_id`'s.
    """
    synonyms = [name.strip() for name in query.split("|") if name.strip()]
    if not synonyms:
        raise UserError("--query: no words given")
    if segmenter is None:
        from streamseg.model.load import load_segmenter

        segmenter = load_segmenter(model_id.split("@")[0], device=device)
    if segmenter.model_id != model_id:
        raise UserError(
            f"the vectors were made by {model_id}, but the model here is {segmenter.model_id}: "
            "give the same weights with --model"
        )
    vectors = segmenter.encode_texts(synonyms).float().mean(0)
    return (vectors / vectors.norm().clamp(min=1e-12)).cpu().numpy()


def open_searchable(sources: str | Path | Sequence[str | Path]) -> IndexArrays:
    """An index folder, memory-mapped; or stores (and folders of stores) read into memory as
    an index of their own. All must come from one model."""
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if len(items) == 1 and (Path(items[0]) / INDEX_FILE).is_file():
        return open_index(items[0])
    tracks = [read_store_tracks(path) for path in find_stores(items)]
    return stores_as_index(tracks)


def stores_as_index(tracks: Sequence[StoreTracks]) -> IndexArrays:
    """Stores' tracks as an in-memory index (same model required)."""
    if not tracks:
        raise UserError("no stores to search")
    model = tracks[0].model
    for item in tracks:
        if item.model != model or item.dim != tracks[0].dim:
            raise UserError(
                f"{item.path}: made by {item.model}, but {tracks[0].path} by {model}: a CLIP's "
                "vectors only compare with the same CLIP's (search them separately)"
            )
    table = np.concatenate([track_records(item, i) for i, item in enumerate(tracks)])
    stores: list[IndexedStore] = []
    row = 0
    for item in tracks:
        stores.append(indexed_store(item, row))
        row = stores[-1].stop
    info = IndexInfo(model=model, dim=tracks[0].dim, rows=row, dead=0, stores=stores)
    embeddings = np.concatenate([t.embeddings for t in tracks]).astype(np.float16)
    return IndexArrays(info, embeddings, table)


def search(
    sources: str | Path | Sequence[str | Path],
    query: str,
    top_k: int = 10,
    segmenter: Any = None,
    device: str = "auto",
) -> list[SearchHit]:
    """Tracks of an index (or of stores) ranked by how well `query` describes them.

    Args:
        sources: an index folder (`streamseg index`), or stores / folders of stores.
        query: words; "a|b" gives synonyms of one query.
        top_k: how many hits.
        segmenter: the model that made the vectors, already loaded (else loaded here by the
            name the index records, and checked by its weights' sha256).
        device: where to load it.
    """
    if top_k <= 0:
        raise UserError(f"--top {top_k}: must be at least 1")
    arrays = open_searchable(sources)
    if arrays.info.rows == 0 or arrays.info.model is None:
        return []
    vector = encode_query(query, arrays.info.model, segmenter, device)
    rows, scores = top_rows(arrays.embeddings, arrays.tracks["alive"], vector, top_k)
    hits = []
    for rank, (row, score) in enumerate(zip(rows.tolist(), scores.tolist(), strict=True), 1):
        record = arrays.tracks[row]
        store = arrays.info.stores[int(record["store"])]
        class_id = int(record["class_id"])
        hits.append(
            SearchHit(
                rank=rank,
                score=float(score),
                store=store.path,
                track_id=int(record["track_id"]),
                class_name=store.classes[class_id] if 0 <= class_id < len(store.classes) else "?",
                first_time=float(record["first_time"]),
                last_time=float(record["last_time"]),
                best_time=float(record["best_time"]),
                best_frame=int(record["best_frame"]),
                box=tuple(int(v) for v in record["box"]),  # type: ignore[arg-type]
                source=store.source,
                label_size=(int(store.label_size[0]), int(store.label_size[1])),
            )
        )
    return hits
