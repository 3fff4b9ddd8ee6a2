"""`streamseg run` on a live source: its flags (the `[live]` config section), their checks,
and the live summary.

Light to import: `streamseg --help` must stay fast, so nothing of the pipeline is imported here
at module level.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from streamseg.errors import UserError

if TYPE_CHECKING:
    from streamseg.config import RunConfig
    from streamseg.video.run_summary import LiveSummary


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `live` group of options to `streamseg run` (unset: the preset's `[live]`)."""
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
        help="live mode: a frame is segmented within about this many seconds of its arrival, "
        "or dropped before inference (default 2); --overlay is then a growing .ts or "
        "fragmented .mp4",
    )
    live.add_argument(
        "--reconnect",
        action="store_true",
        default=None,
        help="reopen a stream that ends, stalls or fails",
    )
    live.add_argument(
        "--reconnect-timeout",
        type=float,
        help="give up once the stream has been gone this many seconds (default 30)",
    )
    live.add_argument(
        "--read-timeout",
        type=float,
        help="seconds without data that count as a stall (default 5)",
    )
    live.add_argument("--input-format", help="FFmpeg input format (e.g. mpegts, matroska, v4l2)")
    live.add_argument(
        "--rtsp-transport",
        choices=("tcp", "udp"),
        help="rtsp:// over TCP (interleaved; through firewalls, no loss) or UDP (default: "
        "FFmpeg's, UDP first)",
    )
    live.add_argument(
        "--source-option",
        action="append",
        metavar="KEY=VALUE",
        help="an FFmpeg option for opening the source, passed as given (repeatable), e.g. "
        "--source-option buffer_size=4194304 or --source-option stimeout=3000000",
    )
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


def with_live_flags(config: RunConfig, args: argparse.Namespace) -> RunConfig:
    """`config` with the live flags given on the command line (they win over the preset).

    `--max-frames` (or the preset's `[decode] max_frames`) also stops a live run.
    """
    return config.with_overrides(
        live={
            "live": args.live,
            "max_latency": args.max_latency,
            "reconnect": args.reconnect,
            "reconnect_timeout": args.reconnect_timeout,
            "read_timeout": args.read_timeout,
            "input_format": args.input_format,
            "segment_duration": args.segment_duration,
            "max_frames": config.decode.max_frames,
            "rtsp_transport": args.rtsp_transport,
            "source_options": _source_options(args.source_option, config.live.source_options),
        }
    )


def _source_options(given: list[str] | None, preset: dict[str, str]) -> dict[str, str] | None:
    """--source-option KEY=VALUE flags over the preset's `[live.source_options]`."""
    if not given:
        return None
    options = dict(preset)
    for item in given:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--source-option: expected KEY=VALUE, got {item!r}")
        options[key.strip()] = value
    return options


def check_live_flags(args: argparse.Namespace, live_source: bool) -> None:
    """UserError for live-only flags on a file, or a live source the command cannot read.

    Args:
        live_source: SOURCE is a URL, a capture device or "-".
    """
    source = args.source
    if not live_source:
        if (
            args.segment_duration
            or args.events
            or args.live is True
            or args.rtsp_transport
            or args.source_option
        ):
            raise UserError(
                f"{source}: --live, --segment-duration, --events, --rtsp-transport and "
                "--source-option apply to live sources (a URL, a capture device, or - for stdin)"
            )
        return
    if not args.out:
        raise UserError(f"{source}: a live source needs --out STORE")
    if source == "-" and sys.stdin.isatty():
        raise UserError("-: standard input is a terminal; pipe a stream into it")


def print_live_summary(
    summary: LiveSummary, args: argparse.Namespace, caught: Sequence[warnings.WarningMessage]
) -> None:
    """The summary of a live run (a line, or with --json one JSON line), on stderr always:
    a live run's output is the store, and stdout may carry the --events feed."""
    report = sys.stderr
    for warning in caught:
        print(f"streamseg run: warning: {warning.message}", file=sys.stderr)
    for message in summary.warnings:
        print(f"streamseg run: warning: {message}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.to_dict()), file=report)
        return
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
