"""The tracks table of a store, derived from its segments table (a pure function)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from streamseg.video.store_schema import TRACK_COLUMNS


def summarize_tracks(segments: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tracks table from the segments table (a pure function of it).

    Class = score-weighted vote over the track's segments (ties: lowest class id), as the
    tracker votes. Returns TRACK_COLUMNS, rows sorted by track id.
    """
    track = np.asarray(segments["track_id"], np.int64)
    if track.size == 0:
        return {name: np.zeros(0, dtype) for name, dtype in TRACK_COLUMNS.items()}
    ids, inverse = np.unique(track, return_inverse=True)
    classes = np.asarray(segments["class_id"], np.int64)
    # float32 sums in row order, like the tracker's votes
    scores = np.asarray(segments["score"], np.float32)
    frame = np.asarray(segments["frame"], np.int64)
    num_classes = int(classes.max()) + 1
    votes = np.zeros((ids.size, num_classes), np.float64)
    np.add.at(votes, (inverse, classes), scores.astype(np.float64))
    first = np.full(ids.size, np.iinfo(np.int64).max)
    last = np.full(ids.size, -1)
    np.minimum.at(first, inverse, frame)
    np.maximum.at(last, inverse, frame)
    # a stuff class may give several segments per frame to one track: count frames once
    unique_pairs = np.unique(np.stack([inverse, frame]), axis=1)
    frames_per_track = np.bincount(unique_pairs[0], minlength=ids.size)
    score_sum = np.bincount(inverse, weights=scores.astype(np.float64), minlength=ids.size)
    rows = np.bincount(inverse, minlength=ids.size)
    thing = np.zeros(ids.size, np.uint8)
    thing[inverse] = np.asarray(segments["is_thing"], np.uint8)
    return {
        "track_id": ids.astype(np.int32),
        "class_id": votes.argmax(axis=1).astype(np.int32),
        "is_thing": thing,
        "first_frame": first,
        "last_frame": last,
        "frames": frames_per_track.astype(np.int64),
        "score": (score_sum / np.maximum(rows, 1)).astype(np.float32),
    }
