"""`streamseg batch INPUTS... --out DIR`: segment a video archive on Dask (docs/BATCH.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from streamseg.errors import UserError

HELP = "segment many videos on a Dask cluster (local processes or an existing scheduler)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="video files, folders (walked for video files) or glob patterns",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder of the stores and manifest.json"
    )
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run on this existing Dask scheduler (default: a local cluster on 127.0.0.1)",
    )
    cluster.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local worker processes (default: cores; with visible CUDA devices and --device "
        "auto or cuda, one per GPU, each pinned to its GPU; N workers are dealt over the GPUs)",
    )
    cluster.add_argument(
        "--threads-per-worker",
        type=int,
        default=1,
        metavar="T",
        help="tasks at once per local worker, sharing its model (default 1)",
    )
    cluster.add_argument(
        "--resources",
        action="append",
        default=[],
        metavar="NAME=N",
        help="resources each task needs, e.g. GPU=1 (repeat or comma-separate); local "
        "workers offer them too",
    )
    cluster.add_argument(
        "--retries", type=int, default=2, metavar="K", help="retries of a failing task (2)"
    )
    cluster.add_argument(
        "--no-dashboard", action="store_true", help="do not serve the local Dask dashboard"
    )
    shards = parser.add_argument_group("long videos")
    shards.add_argument(
        "--shard-seconds",
        type=float,
        metavar="S",
        help="split videos longer than 1.5 S into time shards of S seconds run in parallel",
    )
    shards.add_argument(
        "--overlap-frames",
        type=int,
        default=4,
        metavar="F",
        help="frames two neighbouring shards share, for stitching tracks (default 4)",
    )
    shards.add_argument(
        "--iou-threshold",
        type=float,
        default=0.5,
        metavar="X",
        help="lowest mask IoU over the overlap that links tracks across shards (0.5)",
    )
    from streamseg.commands.run import add_settings_arguments

    add_settings_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_resources(items: list[str]) -> dict[str, float]:
    """`["GPU=1", "MEM=2,X=1"]` -> {"GPU": 1.0, "MEM": 2.0, "X": 1.0}."""
    resources: dict[str, float] = {}
    for item in items:
        for part in item.replace(" ", ",").split(","):
            if not part:
                continue
            name, sep, value = part.partition("=")
            try:
                amount = float(value)
            except ValueError:
                amount = -1.0
            if not sep or not name or amount <= 0:
                raise UserError(f"--resources: expected NAME=N with N > 0, got {part!r}")
            resources[name] = amount
    return resources


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from streamseg.batch.cluster import open_client
    from streamseg.batch.inputs import expand_inputs
    from streamseg.batch.layout import MANIFEST_NAME
    from streamseg.batch.run import run_batch
    from streamseg.batch.spec import RunSpec
    from streamseg.commands.run import build_config

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers: must be at least 1, got {args.workers}")
    if args.threads_per_worker < 1:
        raise UserError(f"--threads-per-worker: must be at least 1, got {args.threads_per_worker}")
    if args.retries < 0:
        raise UserError(f"--retries: must be at least 0, got {args.retries}")
    if args.shard_seconds is not None and args.shard_seconds <= 0:
        raise UserError(f"--shard-seconds: must be > 0, got {args.shard_seconds}")
    if args.overlap_frames < 1:
        raise UserError(f"--overlap-frames: must be at least 1, got {args.overlap_frames}")
    if not 0 < args.iou_threshold <= 1:
        raise UserError(f"--iou-threshold: must be in (0, 1], got {args.iou_threshold}")
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UserError('dask: not installed (pip install "streamseg[batch]")') from None
    resources = parse_resources(args.resources)
    videos = expand_inputs(args.inputs)
    args.overlay = None  # overlays are per video: not a batch setting
    config = build_config(args)
    if config.render.overlay:
        raise UserError(f"{args.pipeline}: [render] overlay is not supported by batch")
    gpus: list[str] = []
    if args.scheduler is None:
        # Local workers see this machine's files: a model that cannot load fails here, once.
        from streamseg.batch.cluster import local_gpu_ids
        from streamseg.model.load import check_model

        check_model(config.model.name, config.model.clip_weights)
        # So does a device this machine lacks (--device cuda without CUDA): one line, exit 2,
        # before any worker starts. With GPUs: one worker per GPU, pinned to it.
        gpus = local_gpu_ids(config.model.device)
        if gpus:
            print(
                f"streamseg batch: {args.workers or len(gpus)} GPU worker(s) on "
                f"CUDA_VISIBLE_DEVICES {', '.join(gpus)}",
                file=sys.stderr,
            )
    spec = RunSpec(config=config)
    with open_client(
        args.scheduler,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        resources=resources,
        dashboard=not args.no_dashboard,
        gpus=gpus,
    ) as client:
        if args.scheduler is not None:
            report_worker_devices(client, config.model.device)
        records = run_batch(
            videos,
            Path(args.out),
            spec,
            client,
            retries=args.retries,
            resources=resources or None,
            shard_seconds=args.shard_seconds,
            overlap_frames=args.overlap_frames,
            iou_threshold=args.iou_threshold,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    counts = {s: sum(r.status == s for r in records) for s in ("done", "skipped", "failed")}
    print(
        f"streamseg batch: {counts['done']} done, {counts['skipped']} skipped, "
        f"{counts['failed']} failed; manifest: {Path(args.out) / MANIFEST_NAME}",
        file=sys.stderr,
    )
    for record in records:
        if record.status == "failed":
            print(f"  failed: {record.input}: {record.error}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def report_worker_devices(client: Any, device: str) -> None:
    """On an existing scheduler: say which workers will not use the GPU the run expects
    (`cluster.check_worker_devices`); UserError when --device cuda finds no CUDA worker."""
    from streamseg.batch.cluster import check_worker_devices, cuda_device_count

    client_gpus = cuda_device_count() if device == "auto" else 0
    if not device.startswith("cuda") and client_gpus == 0:
        return  # nothing is expected of the workers' devices
    workers = client.run(cuda_device_count)
    for line in check_worker_devices(device, client_gpus, workers):
        print(f"streamseg batch: {line}", file=sys.stderr)
