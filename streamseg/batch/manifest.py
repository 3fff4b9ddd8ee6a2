"""The batch manifest (`DIR/manifest.json`): one record per input, rewritten atomically and
merged with the previous one on a rerun."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from streamseg.errors import UserError

STATUSES = ("done", "failed", "skipped")


@dataclass(frozen=True)
class BatchRecord:
    """What happened to one input of a batch (one entry of `DIR/manifest.json`).

    Attributes:
        input: the video file, absolute.
        output: its store, absolute.
        status: "done" (segmented now), "failed" (after all retries; see `error`) or "skipped"
            (its store was already finished).
        frames: frames in the store (0 when failed).
        seconds: wall time spent on it in this batch (sum over its shards when sharded).
        error: the last error, one line, when failed; None otherwise.
        damage: the line that says its video is damaged (decoder errors, gaps: frames may
            be missing or corrupted); None when nothing said so.
        still_image: the input was one picture, processed as one frame.
    """

    input: str
    output: str
    status: str
    frames: int = 0
    seconds: float = 0.0
    error: str | None = None
    damage: str | None = None
    still_image: bool = False

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def read_manifest(path: Path) -> list[BatchRecord]:
    """Records of an existing manifest, [] if there is none.

    Raises:
        UserError: the file exists but is not a manifest.
    """
    if not path.exists():
        return []
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
        return [BatchRecord(**item) for item in items]
    except (ValueError, TypeError) as error:
        raise UserError(f"{path}: not a batch manifest ({error})") from None


def write_manifest(path: Path, records: Sequence[BatchRecord]) -> None:
    """Write the manifest atomically: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps([asdict(r) for r in records], indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def merge_records(old: Sequence[BatchRecord], new: Sequence[BatchRecord]) -> list[BatchRecord]:
    """The previous manifest updated by this batch's records (matched by input).

    Old records keep their place (inputs not in this batch stay as they were); records of new
    inputs follow in batch order.
    """
    by_input = {r.input: r for r in new}
    merged = [by_input.pop(r.input, r) for r in old]
    merged.extend(r for r in new if r.input in by_input)
    return merged
