"""The label store's schema: names, columns and the commit record (docs/FORMATS.md).

Shared by the writer and reader (store.py) and by the checks of a store's integrity
(store_commit.py, store_check.py), which store.py itself uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# 1: tables indexed by "row", no pyramid, no OME metadata, no consolidated metadata.
# 2: labels(t, y, x) with a root `time(t)` coordinate, tables indexed by t / segment / track,
#    an OME-Zarr 0.5 label image (multiscales + image-label) with a 2x pyramid, consolidated
#    metadata. Both are read; runs write 2.
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
ATTRS_KEY = "streamseg"
PROGRESS_FILE = "progress.json"
# Attribute set on stores whose writer stores chunks of zeros too (zarr skips them by default):
# in those every committed row has its file, so a missing file is damage, not zeros.
EMPTY_CHUNKS_KEY = "empty_chunks_written"

FRAME_COLUMNS: dict[str, str] = {
    "index": "int64",  # frame number in the source (counting every decoded frame)
    "pts": "int64",  # presentation timestamp in the stream time base (-1 = none)
    "time": "float64",  # seconds (pts x time base)
    "keyframe": "uint8",
    "corrupt": "uint8",  # decoder flagged the frame as damaged
    "segment_start": "int64",  # first row of this frame in segments
    "segment_count": "int32",  # rows of this frame in segments
}
SEGMENT_COLUMNS: dict[str, str] = {
    "frame": "int64",  # row in frames / labels (not the source index)
    "track_id": "int32",
    "class_id": "int32",  # this frame's class (the track's voted class is in tracks)
    "score": "float32",
    "area": "int64",  # pixels in the stored label map
    "bbox_x": "int32",
    "bbox_y": "int32",
    "bbox_w": "int32",
    "bbox_h": "int32",
    "is_thing": "uint8",
}
TRACK_COLUMNS: dict[str, str] = {
    "track_id": "int32",
    "class_id": "int32",  # score-weighted vote over the track's segments
    "is_thing": "uint8",
    "first_frame": "int64",  # row in frames
    "last_frame": "int64",
    "frames": "int64",  # frames with a segment of the track
    "score": "float32",  # mean segment score
}


# Dimension names (schema 2; schema 1 called every table's dimension "row").
TABLE_DIMS = {"frames": "t", "segments": "segment", "tracks": "track"}
# Root array (schema 2): a copy of frames/time, so that xarray sees labels(t, y, x) with a
# `time` coordinate (xarray reads one group's arrays; the tables are subgroups).
TIME_ARRAY = "time"
# Group of the lower-resolution label levels (schema 2): pyramid/1 is 2x smaller, pyramid/2 4x.
PYRAMID_GROUP = "pyramid"
# Levels are added while both sides of the next one stay at least this many pixels ...
PYRAMID_MIN_SIDE = 32
# ... and at most this many (level 0, the labels, not counted).
PYRAMID_MAX_LEVELS = 3


def pyramid_sizes(label_size: tuple[int, int]) -> list[tuple[int, int]]:
    """(h, w) of each lower level of the label pyramid of (H, W) labels: level k keeps every
    2^k-th pixel of each row and column (nearest), so it is ceil(H / 2^k) x ceil(W / 2^k)."""
    height, width = label_size
    sizes = []
    for level in range(1, PYRAMID_MAX_LEVELS + 1):
        size = (-(-height // 2**level), -(-width // 2**level))
        if min(size) < PYRAMID_MIN_SIDE:
            break
        sizes.append(size)
    return sizes


def schema_of(attrs: dict[str, Any]) -> int:
    """The schema version of a store with attributes `attrs`."""
    return int(attrs.get("schema_version", 1))


def frame_arrays(attrs: dict[str, Any]) -> list[str]:
    """Every array with one row per frame: labels, its pyramid, the frames table (and the
    time coordinate). The pyramid's levels are in the attributes (`pyramid_levels`)."""
    names = ["labels", *(f"frames/{c}" for c in FRAME_COLUMNS)]
    if schema_of(attrs) >= 2:
        names.append(TIME_ARRAY)
        levels = int(attrs.get("pyramid_levels", 0))
        names += [f"{PYRAMID_GROUP}/{k}" for k in range(1, levels + 1)]
    return names


# Search vectors (issue 21; docs/FORMATS.md), in stores whose attributes have `embedding_dim`:
# segments/embedding (segment, dim) float16, each segment row's CLIP embedding, written with
# the rows; at finish, per track (video/track_vectors.py) tracks/embedding (track, dim) and
# the best view's columns.
EMBEDDING_DIM_KEY = "embedding_dim"
SEGMENT_EMBEDDING = "segments/embedding"
TRACK_EMBEDDING = "tracks/embedding"
TRACK_BEST_COLUMNS: dict[str, str] = {
    "best_frame": "int64",  # row in frames of the track's best view: highest score x area
    "best_x": "int32",  # its COCO box in label pixels
    "best_y": "int32",
    "best_w": "int32",
    "best_h": "int32",
}


def embedding_dim(attrs: dict[str, Any]) -> int:
    """D of the store's search vectors; 0 for a store without them."""
    return int(attrs.get(EMBEDDING_DIM_KEY, 0))


def segment_vector_arrays(attrs: dict[str, Any]) -> list[str]:
    """Arrays with one row per segment besides the segments table's columns."""
    return [SEGMENT_EMBEDDING] if embedding_dim(attrs) else []


def track_vector_arrays(attrs: dict[str, Any]) -> list[str]:
    """Arrays with one row per track besides the tracks table's columns (written at finish)."""
    if not embedding_dim(attrs):
        return []
    return [TRACK_EMBEDDING, *(f"tracks/{c}" for c in TRACK_BEST_COLUMNS)]


@dataclass(frozen=True)
class Progress:
    """The commit record (progress.json)."""

    frames: int = 0
    segments: int = 0
    tracker: str | None = None  # TrackerState JSON after the last committed frame
    extra: dict[str, Any] | None = None  # e.g. decode counters

    def to_json(self) -> str:
        return json.dumps(
            {
                "frames": self.frames,
                "segments": self.segments,
                "tracker": self.tracker,
                "extra": self.extra or {},
            }
        )


def read_progress(path: str | Path) -> Progress:
    """The committed counts of a store (zeros if it has none yet). Lenient, for polling a run
    from outside; `load_progress` is the strict reading that readers and writers use."""
    file = Path(path) / PROGRESS_FILE
    if not file.is_file():
        return Progress()
    data = json.loads(file.read_text())
    return Progress(
        frames=int(data["frames"]),
        segments=int(data["segments"]),
        tracker=data.get("tracker"),
        extra=data.get("extra") or {},
    )


def is_store(path: str | Path) -> bool:
    """True if `path` is a streamseg store (a zarr group with our attributes)."""
    meta = Path(path) / "zarr.json"
    if not meta.is_file():
        return False
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return ATTRS_KEY in data.get("attributes", {})
