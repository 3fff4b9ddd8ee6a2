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
    settings = AppSettings(
        model=args.model,
        device=args.device,
        work_dir=Path(args.work_dir) if args.work_dir else None,
        max_file_mb=args.max_file_mb,
        max_frames=args.max_frames,
    )
    try:
        launch(settings, host=args.host, port=args.port, share=args.share, block=True)
    except OSError as error:  # the port is taken, the address cannot be bound
        raise UserError(f"{args.host}:{args.port}: cannot serve ({error})") from None
    return 0
