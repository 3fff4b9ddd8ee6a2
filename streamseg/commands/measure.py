"""`streamseg measure --out DIR`: PQ (in-vocab / out-of-vocab / ensemble, seen / unseen) and
VPQ / STQ of a model on freshly generated shapes-world validation data (docs/MEASURE.md)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

HELP = "measure a model on fresh shapes-world validation data: PQ seen/unseen per mode, VPQ, STQ"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, help="model name or folder (default: the embedded model)"
    )
    parser.add_argument(
        "--out", required=True, help="work folder (data, predictions, stores, measure.json)"
    )
    parser.add_argument("--images", type=int, default=100, help="validation images (0: none)")
    parser.add_argument("--videos", type=int, default=4, help="validation videos (0: none)")
    parser.add_argument("--frames", type=int, default=48, help="frames per video")
    parser.add_argument("--size", type=int, default=256, help="image and frame side in pixels")
    parser.add_argument(
        "--seed", type=int, default=100000, help="first seed of the images and of the videos"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--batch-size", type=int, default=4, help="images per model call")
    parser.add_argument(
        "--format", choices=["png", "jpg"], default="png", help="validation image files"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import json

    from streamseg.bench.quality import measure

    result = measure(
        args.model,
        args.out,
        images=args.images,
        videos=args.videos,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        device=args.device,
        image_format=args.format,
        batch_size=args.batch_size,
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result))
        print(f"wrote {args.out}/measure.json")
    return 0


def _percent(value: float | None) -> str:
    return "    -" if value is None else f"{100 * value:5.1f}"


def format_table(result: Mapping[str, Any]) -> str:
    """The short report: a row per mode (PQ, PQ seen, PQ unseen, SQ, RQ), then the video line."""
    lines = []
    settings = result["settings"]
    lines.append(f"model {settings['model_id']} on {settings['device']}")
    if settings["random_weights"]:
        lines.append("note: random weights (a preset, no trained model): the numbers are noise")
    images = result.get("images")
    if images:
        lines.append(
            f"{settings['n_images']} images of {settings['size']} px, seeds "
            f"{settings['image_seeds'][0]}..{settings['image_seeds'][1]}"
        )
        lines.append(f"{'mode':14s}|    PQ  PQ seen  PQ unseen     SQ     RQ")
        lines.append("-" * 56)
        for mode, r in images["modes"].items():
            lines.append(
                f"{mode:14s}| {_percent(r['all']['pq'])}    {_percent(r['seen']['pq'])}      "
                f"{_percent(r['unseen']['pq'])}  {_percent(r['all']['sq'])}  "
                f"{_percent(r['all']['rq'])}"
            )
        unseen = images["unseen_classes"]
        lines.append(f"unseen classes ({len(unseen)}): {', '.join(unseen) or 'none'}")
        if images["split_note"]:
            lines.append(f"note: {images['split_note']}")
    videos = result.get("videos")
    if videos:
        lines.append(
            f"{videos['videos']} videos x {settings['frames']} frames (ensemble): "
            f"VPQ {_percent(videos['vpq']).strip()}  STQ {_percent(videos['stq']).strip()}  "
            f"AQ {_percent(videos['aq']).strip()}  SQ {_percent(videos['sq']).strip()}"
        )
    lines.append(f"{settings['elapsed_seconds']:.1f} s")
    return "\n".join(lines)
