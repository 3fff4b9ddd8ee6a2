"""`run_batch`: submit a batch's tasks to a Dask cluster, collect their results as they finish,
and keep the manifest and the progress bars up to date."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamseg.batch.cluster import has_bokeh
from streamseg.batch.inputs import VideoInput
from streamseg.batch.layout import (
    MANIFEST_NAME,
    assign_outputs,
    shard_folder,
    shard_store,
    short_hash,
)
from streamseg.batch.manifest import BatchRecord, merge_records, read_manifest, write_manifest
from streamseg.batch.progress import PROGRESS_TOPIC, ProgressBars
from streamseg.batch.shards import ShardPlan
from streamseg.batch.spec import RunSpec
from streamseg.batch.tasks import (
    plan_video,
    process_video,
    recorded_source_facts,
    settings_mismatch,
    stitch_video,
    store_frames_if_done,
)

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

# Seconds between two manifest rewrites while results come in (and once more at the end).
_SAVE_INTERVAL = 2.0


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _task_key(kind: str, output: Path, *parts: object) -> str:
    """Explicit task key: readable on the dashboard, unique per video and settings."""
    return f"streamseg-{kind}-{output.stem}-{short_hash(repr((str(output), *parts)))}"


def run_batch(
    videos: Sequence[VideoInput],
    out_dir: str | os.PathLike[str],
    spec: RunSpec,
    client: Client,
    *,
    retries: int = 2,
    resources: dict[str, float] | None = None,
    shard_seconds: float | None = None,
    overlap_frames: int = 4,
    iou_threshold: float = 0.5,
    progress: bool = True,
) -> list[BatchRecord]:
    """Segment every video on the cluster of `client`; write and return the manifest.

    One task per video (or per time shard plus one stitching task, for videos longer than
    1.5 shards when `shard_seconds` is set), each with an explicit key, `retries` retries of
    exceptions, and `resources` (e.g. {"GPU": 1}: only workers offering it run the task).
    Results are collected as they finish; the manifest is rewritten (atomically) as they come
    in, so an interrupted batch keeps what it did. Sharding needs every frame of the time
    range, so it is not used with a decode stride > 1 or a frame limit.

    Returns:
        This batch's records, in the order of `videos`.
    """
    from distributed import as_completed

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST_NAME
    old_records = read_manifest(manifest_path)
    outputs = assign_outputs(videos, out, {r.input: r.output for r in old_records})
    fingerprint = spec.fingerprint()
    decode = spec.config.decode
    if shard_seconds is not None and (decode.stride != 1 or decode.max_frames is not None):
        print("streamseg batch: no time shards with --stride or --max-frames", file=sys.stderr)
        shard_seconds = None
    records: dict[int, BatchRecord] = {}
    pending: dict[Any, tuple[int, str]] = {}
    bar = ProgressBars(enabled=progress, total=len(videos))

    def finish(
        index: int,
        status: str,
        frames: int = 0,
        seconds: float = 0.0,
        error: str | None = None,
        damage: str | None = None,
        still_image: bool = False,
    ) -> None:
        record = BatchRecord(
            input=str(videos[index].path),
            output=str(outputs[index]),
            status=status,
            frames=frames,
            seconds=round(seconds, 3),
            error=error,
            damage=damage,
            still_image=still_image,
        )
        records[index] = record
        bar.video_finished(record)

    def submit_run(index: int, key_parts: tuple[object, ...] = ()) -> Any:
        source, output = str(videos[index].path), outputs[index]
        return client.submit(
            process_video,
            source,
            str(output),
            spec,
            key=_task_key("run", output, source, fingerprint, *key_parts),
            retries=retries,
            resources=resources,
        )

    def submit_shards(index: int, shards: list[ShardPlan]) -> Any:
        source, output = str(videos[index].path), outputs[index]
        folder = shard_folder(out, output, shard_seconds or 0.0, overlap_frames)
        shard_outputs, shard_futures = [], []
        for shard in shards:
            shard_output = shard_store(folder, shard.index)
            shard_outputs.append(str(shard_output))
            shard_futures.append(
                client.submit(
                    process_video,
                    source,
                    str(shard_output),
                    spec,
                    shard.start,
                    shard.end,
                    str(output),
                    key=_task_key("shard", shard_output, source, fingerprint, shard),
                    retries=retries,
                    resources=resources,
                )
            )
        return client.submit(
            stitch_video,
            shard_outputs,
            str(output),
            shard_futures,
            spec,
            iou_threshold,
            key=_task_key("stitch", output, source, fingerprint, tuple(shards)),
            retries=retries,
        )

    def save() -> None:
        done = [records[i] for i in sorted(records)]
        write_manifest(manifest_path, merge_records(old_records, done))

    if progress:
        client.subscribe_topic(PROGRESS_TOPIC, bar.on_event)
        # A LocalCluster has its dashboard only with bokeh; a remote scheduler decides itself.
        has_dashboard = client.scheduler_info().get("services", {}).get("dashboard")
        if has_dashboard and (getattr(client, "cluster", None) is None or has_bokeh()):
            print(f"streamseg batch: Dask dashboard at {client.dashboard_link}", file=sys.stderr)
    last_save = 0.0
    if any(store_frames_if_done(output) is None for output in outputs):
        from streamseg.batch.warm_up import warm_workers

        warm_workers(client, spec, resources)  # models built before the first task
    try:
        for index, output in enumerate(outputs):
            frames = store_frames_if_done(output)
            if frames is not None:
                mismatch = settings_mismatch(output, spec)
                if mismatch is not None:
                    finish(index, "failed", error=mismatch)
                else:
                    finish(index, "skipped", frames=frames, **recorded_source_facts(output))
                continue
            source = str(videos[index].path)
            if shard_seconds is None:
                pending[submit_run(index)] = (index, "run")
            else:
                future = client.submit(
                    plan_video,
                    source,
                    shard_seconds,
                    overlap_frames,
                    decode.start,
                    decode.end,
                    decode.stream,
                    key=_task_key(
                        "plan", output, source, shard_seconds, overlap_frames, fingerprint
                    ),
                    retries=retries,
                )
                pending[future] = (index, "plan")
        completed = as_completed(list(pending))
        for future in completed:
            index, kind = pending.pop(future)
            if future.status != "finished":
                error = future.exception() if future.status == "error" else None
                message = _one_line(error) if error is not None else f"task {future.status}"
                finish(index, "failed", error=message)
            elif kind == "plan":
                shards = future.result()
                if isinstance(shards, str):  # a UserError's line: deterministic, not retried
                    finish(index, "failed", error=shards)
                    future.release()
                    continue
                follow = submit_run(index) if len(shards) <= 1 else submit_shards(index, shards)
                pending[follow] = (index, "stitch" if len(shards) > 1 else "run")
                completed.add(follow)
            else:
                result = future.result()
                finish(
                    index,
                    result["status"],
                    result["frames"],
                    result["seconds"],
                    error=result.get("error"),
                    damage=result.get("damage"),
                    still_image=bool(result.get("still_image", False)),
                )
            future.release()
            if time.monotonic() - last_save > _SAVE_INTERVAL:
                save()
                last_save = time.monotonic()
    finally:
        save()
        bar.close()
        if progress:
            try:
                client.unsubscribe_topic(PROGRESS_TOPIC)
            except Exception:  # noqa: BLE001 - the client may already be closing
                pass
    return [records[i] for i in range(len(videos)) if i in records]
