"""`streamseg train --pipeline FILE [--resume] [--out DIR]`: train FC-CLIP (the [fcclip] table).

Multi-GPU / multi-node: launch with torchrun, e.g.
`torchrun --nproc_per_node 8 -m streamseg train --pipeline FILE --out DIR`.
"""

from __future__ import annotations

import argparse

HELP = "train FC-CLIP on COCO-panoptic-format data from a TOML recipe (torchrun for DDP)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pipeline", required=True, help="TOML recipe with an [fcclip] table")
    parser.add_argument("--out", default="runs/train", help="output folder (default runs/train)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (exactly)")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=0.0,
        help="stop with a checkpoint after this wall time (rerun with --resume)",
    )
    parser.add_argument(
        "--stop-after", type=int, default=None, help="stop with a checkpoint after step N"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import json

    from streamseg.train.config import load_train_config
    from streamseg.train.loop import train

    config = load_train_config(args.pipeline)
    result = train(
        config,
        args.out,
        resume=args.resume,
        stop_after=args.stop_after,
        max_minutes=args.max_minutes,
        progress=not args.no_progress,
    )
    import os

    if os.environ.get("RANK", "0") == "0":
        status = "done" if result["done"] else "stopped (resume with --resume)"
        print(f"step {result['step']}: {status}")
        if result["eval"]:
            print(json.dumps(result["eval"]))
    return 0
