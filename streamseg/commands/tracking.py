"""`streamseg tracking --out DIR`: the tracker on shapes-world videos with exact track ground
truth: IDF1, identity switches, fragmentations, cut crossings, AQ / STQ / VPQ by window, for
oracle and model segments, plain and stressed variants, today's tracker next to the one before
it and to round 4's leftover stages (docs/TRACKING.md)."""

from __future__ import annotations

import argparse

HELP = "measure the tracker: IDF1, ID switches, STQ/AQ/VPQ on oracle and model segments"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from streamseg.bench.tracking import TrackingBenchSettings

    defaults = TrackingBenchSettings()
    parser.add_argument("--out", required=True, help="folder of tracking.json")
    parser.add_argument(
        "--model", default=None, help="model name or folder (default: the embedded model)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--videos", type=int, default=defaults.videos, help="videos per scene kind")
    parser.add_argument("--frames", type=int, default=defaults.frames, help="frames per video")
    parser.add_argument("--size", type=int, default=defaults.size, help="frame side in pixels")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="first video seed")
    parser.add_argument(
        "--variants",
        default=",".join(defaults.variants),
        help="comma-separated variants (default: all)",
    )
    parser.add_argument(
        "--sources", default=",".join(defaults.sources), help="oracle, model or both"
    )
    parser.add_argument(
        "--cost-frames",
        type=int,
        default=defaults.cost_frames,
        help="frames timed at 1080p labels (0: none)",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import json

    from streamseg.bench.quality import load_model
    from streamseg.bench.tracking import (
        TrackingBenchSettings,
        check_settings,
        compared_trackers,
        format_report,
        run_tracking_bench,
        write_report,
    )
    from streamseg.model.vocab import parse_vocab

    settings = TrackingBenchSettings(
        videos=args.videos,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        variants=tuple(v for v in args.variants.split(",") if v),
        sources=tuple(s for s in args.sources.split(",") if s),
        cost_frames=args.cost_frames,
    )
    check_settings(settings)
    segmenter = load_model(args.model, args.device)
    segmenter.set_vocabulary(parse_vocab("shapes"), cache_dir=None)
    result = run_tracking_bench(settings, compared_trackers(), segmenter)
    path = write_report(result, args.out)
    print(json.dumps(result) if args.json else format_report(result))
    if not args.json:
        print(f"wrote {path}")
    return 0
