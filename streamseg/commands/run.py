"""`streamseg run VIDEO --vocab ... --out STORE`: segment and track a video into a Zarr store."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import warnings
from typing import Any

from streamseg.commands.run_live import (
    add_live_arguments,
    check_live_flags,
    print_live_summary,
    with_live_flags,
)
from streamseg.model.precision import PRECISIONS

HELP = "segment and track a video into a Zarr label store (and an optional overlay mp4)"

# Test hook: "module:function" building the segmenter instead of --model (the kill-and-resume
# test runs a deterministic fake model in a subprocess through it).
FACTORY_ENV = "STREAMSEG_SEGMENTER_FACTORY"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="video file, folder of frames, or glob ('clip/*.jpg')")
    parser.add_argument("--out", help="output store (default: SOURCE with .zarr)")
    add_settings_arguments(parser)
    store = parser.add_argument_group("output")
    store.add_argument("--overlay", help="also write an overlay mp4 here")
    store.add_argument("--overwrite", action="store_true", help="replace an existing store")
    out = parser.add_argument_group("reporting")
    out.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")
    out.add_argument("--json", action="store_true", help="print the summary as JSON")
    # Live sources (URLs, devices, stdin): their options in commands/run_live.py.
    add_live_arguments(parser)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The run-settings flags that `build_config` reads; `streamseg batch` shares them."""
    parser.add_argument("--pipeline", help="pipeline preset: TOML file or name in pipelines/")
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="model name, weights folder or official .pth")
    model.add_argument("--clip-weights", help="open_clip weights for a checkpoint without CLIP")
    model.add_argument("--vocab", help="classes: 'person|people,car,red panda' or a dataset name")
    model.add_argument("--stuff", help="comma-separated names of --vocab classes that are stuff")
    model.add_argument("--vocab-file", help="class-name file (id:name,synonym or one per line)")
    model.add_argument("--batch-size", type=int, help="frames per forward pass")
    model.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    model.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32 | tf32 (CUDA TensorFloat-32 products) | bf16 | fp16 (autocast)",
    )
    model.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the network (compiles at the first batch: slow start, maybe faster)",
    )
    model.add_argument("--score-threshold", type=float, help="drop segments scoring below")
    model.add_argument("--min-area", type=int, help="drop segments smaller (label pixels)")
    model.add_argument("--keep", help="comma-separated class names to keep (default all)")
    decode = parser.add_argument_group("frames")
    decode.add_argument("--stride", type=int, help="segment every K-th frame")
    decode.add_argument("--start", type=float, help="seconds from the first frame")
    decode.add_argument("--end", type=float, help="stop at this second (from the first frame)")
    decode.add_argument("--max-frames", type=int, help="stop after this many frames")
    decode.add_argument("--stream", type=int, help="video stream number (default: the default)")
    parser.add_argument(
        "--label-scale", type=float, help="store labels at this fraction of the source size"
    )


def build_config(args: argparse.Namespace) -> Any:
    """The `RunConfig` of a preset (or the defaults) with the command-line flags applied."""
    from streamseg.config import RunConfig, load_run_config

    config = load_run_config(args.pipeline) if args.pipeline else RunConfig()
    if args.vocab is not None or args.vocab_file is not None:
        # A vocabulary flag replaces the preset's vocabulary, whichever form each uses;
        # both flags at once are refused by the one resolver (model/vocab.py).
        import dataclasses

        model = dataclasses.replace(config.model, vocab=None, vocab_file=None)
        config = dataclasses.replace(config, model=model)
    keep = None
    if args.keep:
        keep = tuple(name.strip() for name in args.keep.split(",") if name.strip())
    return config.with_overrides(
        model={
            "name": args.model,
            "clip_weights": args.clip_weights,
            "device": args.device,
            "precision": args.precision,
            "compile": args.compile,
            "batch_size": args.batch_size,
            "vocab": args.vocab,
            "stuff": args.stuff,
            "vocab_file": args.vocab_file,
            "score_threshold": args.score_threshold,
            "min_area": args.min_area,
            "keep": keep,
        },
        decode={
            "stride": args.stride,
            "start": args.start,
            "end": args.end,
            "max_frames": args.max_frames,
            "stream": args.stream,
        },
        store={"label_scale": args.label_scale},
        render={"overlay": args.overlay},
    )


def _factory_segmenter() -> Any:
    spec = os.environ.get(FACTORY_ENV)
    if not spec:
        return None
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)()


class _Bar:
    """tqdm bar fed by the pipeline's callbacks (frames committed)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def total(self, expected: int | None, done: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=expected, initial=done, unit="frame", dynamic_ncols=True)

    def update(self, frames: int) -> None:
        if self.bar is not None:
            self.bar.update(frames - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from streamseg.errors import UserError
    from streamseg.video.live_decode import is_live_source
    from streamseg.video.pipeline import default_store_path, run_video
    from streamseg.video.run_summary import LiveSummary

    config = with_live_flags(build_config(args), args)
    source = args.source
    live = is_live_source(source)
    check_live_flags(args, live)
    if live:
        out = Path(args.out)
    else:
        if not Path(source).exists() and not any(ch in source for ch in "*?["):
            raise UserError(f"{source}: no such file or folder")
        out = Path(args.out) if args.out else default_store_path(source)
        # Like `mkdir -p` for the outputs' folders: the README's first command writes into
        # out/, which a fresh clone lacks. A parent that cannot be made is reported by the
        # writers.
        for target in (out, config.render.overlay):
            if target:
                try:
                    Path(target).parent.mkdir(parents=True, exist_ok=True)
                except OSError:
                    pass
    # A live run has no expected length (no bar); its summary may share stderr with nothing.
    bar = _Bar(enabled=not (args.quiet or args.json or live) and sys.stderr.isatty())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            summary = run_video(
                source,
                out,
                config=config,
                segmenter=_factory_segmenter(),
                overwrite=args.overwrite,
                progress=bar.update,
                total_callback=bar.total,
                events=sys.stdout if args.events else None,
            )
        finally:
            bar.close()
    if isinstance(summary, LiveSummary):
        print_live_summary(summary, args, caught)
        return 0
    for warning in caught:
        print(f"streamseg run: warning: {warning.message}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.to_dict()))
        return 0
    height, width = summary.label_size
    resumed = f", resumed at frame {summary.resumed_from}" if summary.resumed_from else ""
    if summary.status == "already done":
        print(f"{out}: already done ({summary.frames} frames); --overwrite to redo")
        return 0
    print(
        f"{out}: {summary.frames} frames ({height}x{width} labels), {summary.segments} segments, "
        f"{summary.tracks} tracks in {summary.seconds:.1f} s ({summary.fps:.1f} frames/s"
        f"{resumed})"
    )
    if summary.corrupt_packets:
        print(f"  {summary.corrupt_packets} corrupt packet(s) skipped (recorded in the store)")
    if summary.overlay:
        print(f"  overlay: {summary.overlay}")
    return 0
