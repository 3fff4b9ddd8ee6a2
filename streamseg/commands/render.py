"""`streamseg render STORE --video SRC --out overlay.mp4`: redraw an overlay from a store.

No model runs: the labels come from the store, the pixels and timestamps (and audio) from the
source video, decoded again with the store's decode settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

HELP = "draw a store's tracks over its video: an H.264 mp4 with masks, names and track ids"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="a .zarr store written by `streamseg run`")
    parser.add_argument(
        "--video", help="the source video (default: the path recorded in the store)"
    )
    parser.add_argument(
        "--out", help="the overlay .mp4 to write (default: STORE without .zarr + _overlay.mp4)"
    )
    parser.add_argument(
        "--alpha", type=float, default=0.5, help="colour share inside masks (default 0.5)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an --out file not written by streamseg"
    )
    parser.add_argument("--no-audio", action="store_true", help="do not copy the source audio")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def default_overlay_path(store: str | Path) -> Path:
    """`clip.zarr` -> `clip_overlay.mp4` beside it."""
    path = Path(str(store).rstrip("/"))
    stem = path.name[: -len(".zarr")] if path.name.endswith(".zarr") else path.name
    return path.with_name(f"{stem}_overlay.mp4")


def run(args: argparse.Namespace) -> int:
    from streamseg.errors import UserError
    from streamseg.video.render_store import render_store

    if not 0.0 <= args.alpha <= 1.0:
        raise UserError(f"--alpha: must be between 0 and 1, got {args.alpha}")
    out = Path(args.out) if args.out else default_overlay_path(args.store)
    bar = None
    progress = None
    if not (args.quiet or args.json) and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="frame", dynamic_ncols=True)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        summary = render_store(
            args.store,
            out,
            video=args.video,
            alpha=args.alpha,
            audio=not args.no_audio,
            progress=progress,
            overwrite=args.overwrite,
        )
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(dataclasses.asdict(summary)))
    else:
        audio = " with audio" if summary.audio else ""
        print(f"wrote {summary.out}: {summary.frames} frames{audio}")
    return 0
