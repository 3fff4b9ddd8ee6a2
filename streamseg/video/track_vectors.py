"""Each track's search vector and best view, from the segments table (a pure function of it).

A segment's embedding is FC-CLIP's region CLIP embedding (its mask-pooled dense CLIP feature
through the CLIP head: the vector the out-of-vocabulary classifier compares with the class
names' text embeddings), so a track's vector lies in CLIP's joint image-text space and any
words can be scored against it later, without the model's vision side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from streamseg.video.store_schema import TRACK_BEST_COLUMNS as BEST_COLUMNS


@dataclass(frozen=True)
class TrackVectors:
    """Per track, in the tracks table's row order (sorted by track id).

    Attributes:
        embeddings: (T, D) float16 L2-normalized (zero rows where every weight was 0).
        best: TRACK_BEST_COLUMNS, (T,) each.
    """

    embeddings: np.ndarray
    best: dict[str, np.ndarray]


def summarize_track_vectors(
    segments: Mapping[str, np.ndarray], embeddings: np.ndarray
) -> TrackVectors:
    """Per track (rows sorted by track id, as the tracks table): the score-weighted mean of
    its segments' L2-normalized embeddings, normalized, and its best view.

    Args:
        segments: the segments table (track_id, score, area, frame, bbox_x/y/w/h), M rows.
        embeddings: (M, D) the segments' embeddings, one row per segment row.

    Returns:
        `TrackVectors`.
    """
    track = np.asarray(segments["track_id"], np.int64)
    dim = int(embeddings.shape[1]) if embeddings.ndim == 2 else 0
    if track.size == 0:
        columns = {name: np.zeros(0, dtype) for name, dtype in BEST_COLUMNS.items()}
        return TrackVectors(np.zeros((0, dim), np.float16), columns)
    ids, inverse = np.unique(track, return_inverse=True)
    weights = np.asarray(segments["score"], np.float64)
    means = weighted_unit_means(embeddings, weights, inverse, ids.size)
    # Best view: the largest score x area; the earliest row among equals.
    merit = weights * np.asarray(segments["area"], np.float64)
    order = np.lexsort((np.arange(track.size), -merit, inverse))
    first = order[np.searchsorted(inverse[order], np.arange(ids.size))]
    columns = {
        "best_frame": np.asarray(segments["frame"], np.int64)[first],
        "best_x": np.asarray(segments["bbox_x"], np.int32)[first],
        "best_y": np.asarray(segments["bbox_y"], np.int32)[first],
        "best_w": np.asarray(segments["bbox_w"], np.int32)[first],
        "best_h": np.asarray(segments["bbox_h"], np.int32)[first],
    }
    return TrackVectors(means.astype(np.float16), columns)


def row_embeddings(
    areas: np.ndarray, embeddings: np.ndarray, track_ids: np.ndarray, row_tracks: np.ndarray
) -> np.ndarray:
    """One embedding per segments-table row of a frame: the area-weighted mean of the row's
    pieces (several segments of one stuff track merge into one row), normalized.

    Args:
        areas: (N,) pixels of each segment the tracker saw.
        embeddings: (N, D) their embeddings.
        track_ids: (N,) the track of each.
        row_tracks: (R,) the rows' track ids (segments.segment_rows: sorted, unique).

    Returns:
        (R, D) float16.
    """
    vectors = np.asarray(embeddings, np.float32)
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    if len(row_tracks) == 0 or dim == 0:
        return np.zeros((len(row_tracks), dim), np.float16)
    position = np.searchsorted(np.asarray(row_tracks), np.asarray(track_ids))
    weights = np.asarray(areas, np.float64)
    return weighted_unit_means(vectors, weights, position, len(row_tracks)).astype(np.float16)


def weighted_unit_means(
    vectors: np.ndarray, weights: np.ndarray, group: np.ndarray, groups: int
) -> np.ndarray:
    """Per group, the weighted sum of its L2-normalized vectors, normalized.

    Args:
        vectors: (N, D); weights: (N,); group: (N,) in 0..groups-1.

    Returns:
        (groups, D) float64; zero rows where the sum is zero (no weight, or zero vectors).
    """
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    sums = np.zeros((groups, vectors.shape[1]), np.float64)
    np.add.at(sums, group, unit * np.asarray(weights, np.float64)[:, None])
    lengths = np.linalg.norm(sums, axis=1, keepdims=True)
    return np.divide(sums, lengths, out=np.zeros_like(sums), where=lengths > 0)
