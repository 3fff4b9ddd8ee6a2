"""Where a batch writes under its output folder: one store per video, the manifest, the shard
stores of long videos, and the short hashes that keep these names apart."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from streamseg.batch.inputs import VideoInput
from streamseg.errors import UserError

MANIFEST_NAME = "manifest.json"
STORE_SUFFIX = ".zarr"


def short_hash(text: str) -> str:
    """8 hex digits of sha256(text): short enough for a file name, enough to tell apart."""
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
                output = out_dir / f"{stem}-{short_hash(key)}{STORE_SUFFIX}"
        if taken.get(str(output), key) != key:
            raise UserError(f"{output}: would be written by both {taken[str(output)]} and {key}")
        taken[str(output)] = key
        outputs.append(output)
    return outputs


def shard_folder(out_dir: Path, output: Path, shard_seconds: float, overlap_frames: int) -> Path:
    """Where the shard stores of one video go; a new shard plan gets a new folder, so stores
    of an older plan are never resumed as if they were shards of this one."""
    tag = short_hash(repr((str(output), shard_seconds, overlap_frames)))
    return out_dir / ".shards" / f"{output.stem}-{tag}"


def shard_store(folder: Path, index: int) -> Path:
    """The store of shard `index` inside its video's shard folder."""
    return folder / f"{index:05d}{STORE_SUFFIX}"
