"""The Dask tasks of a batch, run on the workers: segment a video (or a time shard), plan a
long video's shards, stitch finished shards.

Every video (or time shard) goes through the same `run_video` as `streamseg run`: there is no
second code path for segmenting a video. Idempotence: a task first looks at its store; a
finished store is skipped, an interrupted one is resumed by `run_video`'s own progress record,
and nothing is ever written to the final path except through `run_video`'s atomic protocol
(or, for shards, a temp store moved in place with `os.replace`). So a worker that dies
mid-task costs a retry of that task and nothing else.

Dask ships these functions by reference (module and name): they stay module-level here.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from streamseg.batch.model_cache import cached_segmenter
from streamseg.batch.progress import progress_reporter
from streamseg.batch.shards import ShardPlan, plan_shards
from streamseg.batch.spec import RunSpec
from streamseg.batch.stitch import stitch_stores


def store_frames_if_done(output: str | os.PathLike[str]) -> int | None:
    """Frames of a finished store at `output`, or None if it is missing or unfinished."""
    from streamseg.video.store import store_status

    return store_status(output)


def process_video(
    source: str,
    output: str,
    spec: RunSpec,
    start: float | None = None,
    end: float | None = None,
    final: str | None = None,
) -> dict[str, Any]:
    """One task: segment `source` (or its time range) into the store `output` by `run_video`.

    A finished store is left alone ("skipped"); an unfinished one is resumed by `run_video`
    from its progress record, so a retry after a crash repeats at most one block of frames.
    A time shard names its video's final store as `final`: once that is stitched the shard
    is not needed any more (Dask may rerun a shard whose result was lost with a worker).

    Returns:
        {"status": "done" | "skipped", "frames": int, "seconds": float}
    """
    began = time.monotonic()
    frames = store_frames_if_done(output)
    if frames is None and final is not None and store_frames_if_done(final) is not None:
        frames = 0
    if frames is not None:
        return {"status": "skipped", "frames": frames, "seconds": 0.0}
    # Imported when a task runs, so that importing streamseg.batch stays light for the client.
    from streamseg.video.pipeline import run_video

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    segmenter = cached_segmenter(spec)
    summary = run_video(
        source,
        output,
        config=spec.config,
        segmenter=segmenter,
        start=start,
        end=end,
        progress=progress_reporter(output),
    )
    return {
        "status": "done",
        "frames": int(summary.frames),
        "seconds": time.monotonic() - began,
    }


def plan_video(
    source: str,
    shard_seconds: float,
    overlap_frames: int,
    start: float | None = None,
    end: float | None = None,
    stream: int | None = None,
) -> list[ShardPlan]:
    """One task: probe `source` and cut it into time shards (`plan_shards`)."""
    from streamseg.video.decode import probe

    info = probe(source, stream=stream)
    return plan_shards(info.duration, info.fps, shard_seconds, overlap_frames, start=start, end=end)


def stitch_video(
    shard_outputs: list[str],
    output: str,
    shard_results: list[dict[str, Any]],
    spec: RunSpec,
    iou_threshold: float,
) -> dict[str, Any]:
    """One task: stitch finished shard stores into the final store (`stitch_stores`).

    `shard_results` are the shard tasks' results: passing them makes Dask run this task after
    every shard, and their seconds add up to the video's. The shard stores are deleted once
    the final store is in place.
    """
    frames = store_frames_if_done(output)
    if frames is None:
        decode = spec.config.decode
        frames = stitch_stores(
            shard_outputs,
            output,
            iou_threshold=iou_threshold,
            start=decode.start,
            end=decode.end,
        )
    for path in shard_outputs:
        shutil.rmtree(path, ignore_errors=True)
    # Empty folders go too (rmdir refuses non-empty ones, e.g. another video's shards).
    for folder in (Path(shard_outputs[0]).parent, Path(shard_outputs[0]).parent.parent):
        try:
            folder.rmdir()
        except OSError:
            break
    return {
        "status": "done",
        "frames": int(frames),
        "seconds": sum(float(r["seconds"]) for r in shard_results),
    }
