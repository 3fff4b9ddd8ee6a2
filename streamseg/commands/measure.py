"""`streamseg measure --out DIR`: PQ (in-vocab / out-of-vocab / ensemble, seen / unseen) and
VPQ / STQ of a model on freshly generated shapes-world validation data (docs/MEASURE.md)."""

from __future__ import annotations

import argparse

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

    from streamseg.synthetic.measure import format_table, measure

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
