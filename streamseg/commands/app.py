"""`streamseg app`: the Gradio demo in a browser (binds 127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import argparse

HELP = "serve the Gradio demo (upload a video or image, name classes, see tracks)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument("--model", help="model preselected in the page (default: embedded)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    parser.add_argument(
        "--max-file-mb", type=float, default=200.0, help="largest upload in MB (default 200)"
    )
    parser.add_argument(
        "--max-frames", type=int, default=300, help="upper end of the max-frames slider"
    )
    parser.add_argument("--work-dir", help="the app's temp folder (default: a new one)")
    parser.add_argument(
        "--max-classes", type=int, default=300, help="largest vocabulary a request may give"
    )
    parser.add_argument(
        "--queue-size", type=int, default=16, help="requests that may wait (default 16)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests run at once (default 1)"
    )
    parser.add_argument(
        "--no-warm-up",
        action="store_true",
        help="serve at once; the first run loads the model and its classifier (default: "
        "both are loaded before serving)",
    )
    parser.add_argument(
        "--text-cache-mb",
        type=float,
        help="bound of the text-embedding cache in MB, least recently used out (default 256)",
    )


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from streamseg.errors import UserError

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("gradio: not installed (pip install 'streamseg[app]')") from None
    from streamseg.app import AppSettings, launch

    if not 0 < args.max_file_mb:
        raise UserError(f"--max-file-mb: must be positive, got {args.max_file_mb}")
    if args.max_frames < 1:
        raise UserError(f"--max-frames: must be at least 1, got {args.max_frames}")
    for flag, value in (
        ("--max-classes", args.max_classes),
        ("--queue-size", args.queue_size),
        ("--concurrency", args.concurrency),
    ):
        if value < 1:
            raise UserError(f"{flag}: must be at least 1, got {value}")
    if args.text_cache_mb is not None:
        if not args.text_cache_mb >= 0:
            raise UserError(f"--text-cache-mb: must be 0 or more, got {args.text_cache_mb}")
        from streamseg.model.text_classifier import CACHE_MB_ENV

        os.environ[CACHE_MB_ENV] = str(args.text_cache_mb)
    import sys

    from streamseg.app import exposure_warning

    warning = exposure_warning(args.host, args.share)
    if warning:
        print(f"streamseg app: {warning}", file=sys.stderr)
    settings = AppSettings(
        model=args.model,
        device=args.device,
        work_dir=Path(args.work_dir) if args.work_dir else None,
        max_file_mb=args.max_file_mb,
        max_frames=args.max_frames,
        max_classes=args.max_classes,
        queue_size=args.queue_size,
        concurrency=args.concurrency,
        warm_up=not args.no_warm_up,
    )
    try:
        launch(settings, host=args.host, port=args.port, share=args.share, block=True)
    except OSError as error:  # the port is taken, the address cannot be bound
        raise UserError(f"{args.host}:{args.port}: cannot serve ({error})") from None
    return 0
