"""The live options of `streamseg run` and the command path for live sources.

Kept out of commands/run.py (which handles files) and light to import: `streamseg --help`
must stay fast, so the pipeline is imported only when a live source actually runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `live` group of options to `streamseg run`."""
    live = parser.add_argument_group(
        "live sources (SOURCE = rtsp:// rtmp:// http(s):// udp:// tcp:// URL, /dev/videoN, or - "
        "for stdin)"
    )
    live.add_argument(
        "--live",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="drop frames the model cannot keep up with (default: on for URLs and devices, "
        "off for stdin)",
    )
    live.add_argument(
        "--max-latency",
        type=float,
        default=2.0,
        help="live mode: a frame is segmented within about this many seconds of its arrival, "
        "or dropped before inference (default 2); --overlay is then a growing .ts or "
        "fragmented .mp4",
    )
    live.add_argument(
        "--reconnect", action="store_true", help="reopen a stream that ends, stalls or fails"
    )
    live.add_argument(
        "--reconnect-timeout",
        type=float,
        default=30.0,
        help="give up once the stream has been gone this many seconds (default 30)",
    )
    live.add_argument(
        "--read-timeout",
        type=float,
        default=5.0,
        help="seconds without data that count as a stall (default 5)",
    )
    live.add_argument("--input-format", help="FFmpeg input format (e.g. mpegts, matroska, v4l2)")
    live.add_argument(
        "--segment-duration",
        type=float,
        help="start a new numbered store (OUT-0001.zarr, ...) every N seconds of stream",
    )
    live.add_argument(
        "--events",
        action="store_true",
        help="print one JSON line per processed frame on stdout (summary goes to stderr)",
    )


def wants_live(args: argparse.Namespace) -> bool:
    """True when `streamseg run` should take the live path for these arguments."""
    from streamseg.video.live_decode import is_live_source

    if is_live_source(args.source):
        return True
    # Live-only options on a file: taken to the live path, which says they do not apply.
    return bool(getattr(args, "segment_duration", None) or getattr(args, "events", False)) or (
        getattr(args, "live", None) is True
    )


def run_live_command(args: argparse.Namespace, config: Any, segmenter: Any = None) -> int:
    """`streamseg run SOURCE ...` for a live source (or --segment-duration)."""
    from pathlib import Path

    from streamseg.errors import UserError
    from streamseg.video.live_decode import LiveSettings, is_live_source
    from streamseg.video.live_run import run_live

    source = args.source
    if not is_live_source(source):
        raise UserError(
            f"{source}: --live, --segment-duration and --events apply to live sources "
            "(a URL, a capture device, or - for stdin)"
        )
    if not args.out:
        raise UserError(f"{source}: a live source needs --out STORE")
    if source == "-" and sys.stdin.isatty():
        raise UserError("-: standard input is a terminal; pipe a stream into it")
    settings = LiveSettings(
        live=args.live,
        max_latency=args.max_latency,
        reconnect=args.reconnect,
        reconnect_timeout=args.reconnect_timeout,
        read_timeout=args.read_timeout,
        input_format=args.input_format,
        segment_duration=args.segment_duration,
        max_frames=config.decode.max_frames,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_live(
            source,
            Path(args.out),
            config=config,
            live=settings,
            segmenter=segmenter,
            overwrite=args.overwrite,
            events=sys.stdout if args.events else None,
        )
    report = sys.stderr if args.events else sys.stdout
    for warning in caught:
        print(f"streamseg run: warning: {warning.message}", file=sys.stderr)
    for message in summary.warnings:
        print(f"streamseg run: warning: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.to_dict()), file=report)
        return 0
    height, width = summary.label_size
    stores = ", ".join(summary.stores) or "(no store: no frame arrived)"
    print(
        f"{stores}: {summary.frames} frames ({height}x{width} labels), {summary.segments} "
        f"segments, {summary.tracks} tracks in {summary.seconds:.1f} s ({summary.fps:.1f} "
        f"frames/s); {summary.received} received, {summary.dropped} dropped, latency max "
        f"{summary.latency_max:.2f} s; {summary.ended}",
        file=report,
    )
    if summary.overlay:
        print(f"  overlay: {summary.overlay}", file=report)
    return 0
