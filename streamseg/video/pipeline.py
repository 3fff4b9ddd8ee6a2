"""`run_video`: the one way from a source to a label store (CLI, app, batch and bench call it).

```
source -> decode -> batch -> segment (model) -> filter -> track -> store + overlay (thread)
```
Files, image folders and globs go to `file_run.run_file` (bounded queues, commits, resume);
live sources (network URLs, capture devices, "-" for stdin) to `live_run.run_live` (bounded
latency, drops, rollover). Both share the same stages: `run_setup` (settings, segmenter,
vocabulary), `SegmentAndTrack`, `StoreBlock` and the `StoreWriter` thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from streamseg.config import RunConfig
from streamseg.model.segmenter_like import SegmenterLike
from streamseg.video.file_run import run_file
from streamseg.video.live_decode import is_live_source
from streamseg.video.live_run import run_live
from streamseg.video.run_summary import LiveSummary, RunSummary
from streamseg.video.segments import filter_segmentation, segment_rows

__all__ = [
    "LiveSummary",
    "RunSummary",
    "default_store_path",
    "filter_segmentation",
    "run_video",
    "segment_rows",
]


def run_video(
    source: str | Path,
    out: str | Path,
    *,
    config: RunConfig | None = None,
    segmenter: SegmenterLike | None = None,
    vocabulary: Any = None,
    overlay: str | Path | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    start: float | None = None,
    end: float | None = None,
    total_callback: Callable[[int | None, int], None] | None = None,
    events: TextIO | None = None,
) -> RunSummary:
    """Segment and track a video into a label store (and optionally an overlay video).

    Args:
        source: video file, image folder or glob; or a live source (network URL, capture
            device, "-" for stdin), read as `config.live` says (docs/LIVE.md).
        out: the store folder (`.zarr`); an unfinished store of the same run is resumed, a
            finished one is left as it is, one of another video / settings is refused. A live
            run writes a new store (numbered ones with `config.live.segment_duration`).
        config: the pipeline settings (default `RunConfig()`).
        segmenter: a ready segmenter (`SegmenterLike`: e.g. `Segmenter`); built from
            `config.model` when None.
        vocabulary: classes (a `Vocabulary`, CLI-syntax string, or list); default from
            `config.model.vocab` / `vocab_file`, else the segmenter's current one, else the
            model folder's default (streamseg/model/default_vocab.py).
        overlay: output video of the overlay (overrides `config.render.overlay`); live: a
            growing `.ts` or fragmented `.mp4`.
        overwrite: delete an existing store at `out` first.
        progress: called from the writer thread with the number of frames done so far
            (committed, or committed within the next `commit_frames`), after each batch.
        start, end: seconds from the first frame (override `config.decode`; used by time
            shards). Files only.
        total_callback: called once with (expected frames or None, frames already done) before
            the first frame (progress bars). Files only.
        events: live only: a text stream for the JSON-lines feed of every processed frame.

    Returns:
        `RunSummary` (a `LiveSummary` for a live source).

    Raises:
        UserError: bad source, unwritable or mismatching store, missing vocabulary.
    """
    config = config or RunConfig()
    if is_live_source(source):
        return run_live(
            source,
            out,
            config=config,
            segmenter=segmenter,
            vocabulary=vocabulary,
            overlay=overlay,
            overwrite=overwrite,
            events=events,
            progress=progress,
        )
    if start is not None or end is not None:
        config = config.with_overrides(decode={"start": start, "end": end})
    return run_file(
        source,
        out,
        config=config,
        segmenter=segmenter,
        vocabulary=vocabulary,
        overlay=overlay,
        overwrite=overwrite,
        progress=progress,
        total_callback=total_callback,
    )


def default_store_path(source: str | Path) -> Path:
    """`video.mp4` -> `video.zarr` beside it (a folder of frames -> `<folder>.zarr`)."""
    path = Path(os.fspath(source).rstrip("/"))
    return path.with_suffix(".zarr") if path.suffix else path.with_name(path.name + ".zarr")
