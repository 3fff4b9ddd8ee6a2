"""`streamseg clip train|eval`: train the shapes world's small CLIP, measure it zero-shot."""

from __future__ import annotations

import argparse

HELP = "train the small shapes-world CLIP ([clip] table of a pipeline) or evaluate it zero-shot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["train", "eval"], help="what to do")
    parser.add_argument("--pipeline", help="pipeline TOML with a [clip] table (train)")
    parser.add_argument(
        "--out",
        required=True,
        help="run folder: checkpoints, log.jsonl, clip.safetensors (resumed "
        "if it holds last.pt); eval reads clip.safetensors from it",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="train: stop with a checkpoint after this many minutes",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="train: stop at this step this time (the schedule keeps its length)",
    )
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--size", type=int, default=256, help="eval: image size")
    parser.add_argument(
        "--n",
        type=int,
        default=240,
        help="eval: single-object images (and half as many multi-object scenes)",
    )
    parser.add_argument("--json", help="eval: also write the full result to this JSON file")
    parser.add_argument("--threads", type=int, default=1, help="eval: torch threads")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from streamseg.errors import UserError

    if args.action == "train":
        from streamseg.train.clip.loop import load_clip_train_config, train_clip

        if not args.pipeline:
            raise UserError("--pipeline: required for `clip train`")
        config = load_clip_train_config(args.pipeline)
        step = train_clip(
            config,
            args.out,
            device=args.device,
            max_minutes=args.max_minutes,
            max_steps=args.max_steps,
        )
        print(f"clip: step {step}/{config.steps}, checkpoint in {args.out}")
        return 0

    import torch

    from streamseg.train.clip.evaluate import evaluate_clip, format_report
    from streamseg.train.clip.loop import load_clip

    torch.set_num_threads(args.threads)
    if not (Path(args.out) / "clip.safetensors").exists():
        raise UserError(f"{args.out}: no clip.safetensors (train first)")
    model = load_clip(args.out, args.device)
    result = evaluate_clip(
        model, args.device, num_single=args.n, num_scenes=max(1, args.n // 2), size=args.size
    )
    print(format_report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
