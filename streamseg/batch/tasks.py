"""The Dask tasks of a batch, run on the workers: segment a video (or a time shard), plan a
long video's shards, stitch finished shards.

Every video (or time shard) goes through the same `run_video` as `streamseg run`: there is no
second code path for segmenting a video. Idempotence: a task first looks at its store; a
finished store is skipped, an interrupted one is resumed by `run_video`'s own progress record,
and nothing is ever written to the final path except through `run_video`'s atomic protocol
(or, for shards, a temp store moved in place with `os.replace`). So a worker that dies
mid-task costs a retry of that task and nothing else.

Fail fast: a `UserError` (the input is not a video, a store made with other settings) is
deterministic, so a task returns it as a "failed" result instead of raising: Dask retries
exceptions only, and a retry would fail the same way after loading the model again. A
finished store is reported done only when its recorded settings are the request's.

Dask ships these functions by reference (module and name): they stay module-level here.
"""

from __future__ import annotations

import json
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
from streamseg.errors import UserError

# Settings that do not change what a store holds (where and how fast it runs, what it draws,
# how often it commits): a finished store made with other values of these is still the
# request's.
_NOT_OUTPUT: dict[str, tuple[str, ...]] = {
    "model": ("device", "compile"),
    "decode": ("queue_size",),
    "store": ("commit_frames",),
    "render": (),  # the whole section
}


def settings_mismatch(output: str | os.PathLike[str], spec: RunSpec) -> str | None:
    """Why a finished store at `output` is not the request's (one line), or None when its
    recorded settings are the request's (or it records none to compare)."""
    from streamseg.video.file_run import file_settings
    from streamseg.video.store import StoreReader

    try:
        recorded = StoreReader(output).attrs.get("settings")
    except Exception:  # noqa: BLE001 - an unreadable store: run_video says what is wrong
        return None
    if not isinstance(recorded, dict):
        return None
    wanted = json.loads(json.dumps(file_settings(spec.config)))
    differing = sorted(
        f"{section}.{key}"
        for section in set(wanted) | set(recorded)
        if section != "render"
        for key in set(wanted.get(section) or {}) | set(recorded.get(section) or {})
        if key not in _NOT_OUTPUT.get(section, ())
        and (wanted.get(section) or {}).get(key) != (recorded.get(section) or {}).get(key)
    )
    if not differing:
        return None
    return (
        f"{output}: finished with other settings (differs in: {', '.join(differing)}); "
        "delete it or choose another output folder"
    )


def _failed(error: UserError | str, began: float) -> dict[str, Any]:
    """A failed result; the error as the manifest writes any error: "UserError: <line>"."""
    return {
        "status": "failed",
        "frames": 0,
        "seconds": time.monotonic() - began,
        "error": _user_error_line(error),
    }


def _user_error_line(error: UserError | str) -> str:
    text = str(error).strip()
    return text if text.startswith("UserError: ") else f"UserError: {text}"


def store_frames_if_done(output: str | os.PathLike[str]) -> int | None:
    """Frames of a finished store at `output`, or None if it is missing or unfinished."""
    from streamseg.video.store import store_status

    return store_status(output)


def recorded_source_facts(output: str | os.PathLike[str]) -> dict[str, Any]:
    """What a finished store recorded about its source: {"damage": line | None,
    "still_image": bool} (both empty for a store without a decode record)."""
    from streamseg.video.store import StoreReader

    try:
        attrs = StoreReader(output).attrs
    except Exception:  # noqa: BLE001 - facts only: a store that cannot be read has none
        return {"damage": None, "still_image": False}
    warnings = attrs.get("warnings") if isinstance(attrs.get("warnings"), list) else []
    damage = next((w for w in warnings if isinstance(w, str) and ": damaged input: " in w), None)
    decode = attrs.get("decode") if isinstance(attrs.get("decode"), dict) else {}
    return {"damage": damage, "still_image": bool(decode.get("still_image", False))}


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
        {"status": "done" | "skipped", "frames": int, "seconds": float, "damage": str | None,
        "still_image": bool}, or {"status": "failed", "error": line, ...} on a `UserError`
        (not retried).
    """
    began = time.monotonic()
    frames = store_frames_if_done(output)
    if frames is not None:
        mismatch = settings_mismatch(output, spec)
        if mismatch is not None:
            return _failed(mismatch, began)
    if frames is None and final is not None and store_frames_if_done(final) is not None:
        frames = 0
    if frames is not None:
        own = store_frames_if_done(output) is not None
        facts = recorded_source_facts(output) if own else {}
        return {"status": "skipped", "frames": frames, "seconds": 0.0, **facts}
    # Imported when a task runs, so that importing streamseg.batch stays light for the client.
    from streamseg.video.pipeline import run_video

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    try:
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
    except UserError as error:
        return _failed(error, began)
    return {
        "status": "done",
        "frames": int(summary.frames),
        "seconds": time.monotonic() - began,
        "damage": summary.damage,
        "still_image": summary.still_image,
    }


def plan_video(
    source: str,
    shard_seconds: float,
    overlap_frames: int,
    start: float | None = None,
    end: float | None = None,
    stream: int | None = None,
) -> list[ShardPlan] | str:
    """One task: probe `source` and cut it into time shards (`plan_shards`); a `UserError`
    comes back as its one line (a str), not raised, so that it is not retried."""
    from streamseg.video.decode import probe

    try:
        info = probe(source, stream=stream)
        return plan_shards(
            info.duration, info.fps, shard_seconds, overlap_frames, start=start, end=end
        )
    except UserError as error:
        return _user_error_line(error)


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
    began = time.monotonic()
    failed = [r for r in shard_results if r.get("status") == "failed"]
    if failed:
        # The shard stores stay: a rerun after the cause is fixed resumes them.
        return _failed(str(failed[0].get("error")), began)  # already "UserError: ..."
    frames = store_frames_if_done(output)
    if frames is not None:
        mismatch = settings_mismatch(output, spec)
        if mismatch is not None:
            return _failed(mismatch, began)
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
    damages = [r["damage"] for r in shard_results if r.get("damage")]
    return {
        "status": "done",
        "frames": int(frames),
        "seconds": sum(float(r["seconds"]) for r in shard_results),
        # Each shard's line names its own part of the video: the first one speaks for all.
        "damage": damages[0] if damages else None,
        "still_image": False,
    }
