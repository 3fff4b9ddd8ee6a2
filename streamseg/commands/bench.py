"""`streamseg bench`: per-stage throughput, FLOPs and pipeline overhead on this machine."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "benchmark every pipeline stage (decode, model, track, store, render, end to end)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, help="model name or path (default: the default model)"
    )
    parser.add_argument(
        "--size", default=None, help="HxW of the generated video (default: the model's native size)"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="frames per model call")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    parser.add_argument("--frames", type=int, default=8, help="frames of the generated video")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed repeats after a warm-up (median reported)"
    )
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument(
        "--vocab", default=None, help="classes (default: shapes for shapes models, else 5 words)"
    )
    parser.add_argument(
        "--stages",
        default=None,
        help="comma-separated subset of decode,model,track,store,render,end_to_end",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network (compiled in the untimed warm-up)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    from streamseg.bench.speed import LIVE, STAGES, BenchConfig, parse_size, run_benchmark

    stages = (
        tuple(s.strip() for s in args.stages.split(",") if s.strip())
        if args.stages
        else (*STAGES, LIVE)
    )
    config = BenchConfig(
        model=args.model,
        size=parse_size(args.size) if args.size else None,
        batch_size=args.batch_size,
        device=args.device,
        frames=args.frames,
        repeats=args.repeats,
        precision=args.precision,
        vocab=args.vocab,
        stages=stages,
        threads=args.threads,
        compile=args.compile,
    )
    result = run_benchmark(config, log=lambda m: print(f"bench: {m}", file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    compiled = ", torch.compile" if result.compile else ""
    print(
        f"model {result.model} on {result.device} "
        f"({result.precision}, {result.threads} threads{compiled})"
    )
    print(
        f"frames {result.frame_size[0]}x{result.frame_size[1]} -> model input "
        f"{result.input_size[0]}x{result.input_size[1]}, batch {result.batch_size}, "
        f"{result.num_classes} classes"
    )
    for name, stage in result.stages.items():
        print(
            f"  {name:<11} {stage.fps:10.2f} fps  {stage.seconds_per_frame * 1000:10.1f} ms/frame"
        )
    print(
        f"parameters: frozen CLIP {result.params_frozen_clip:,}, trained {result.params_trained:,}"
    )
    print(
        f"forward {result.gflops_per_frame:.2f} GFLOP/frame, "
        f"{result.forward_seconds_per_frame:.3f} s/frame, "
        f"{result.forward_gflops_per_second:.1f} GFLOP/s "
        f"= {100 * result.forward_share_of_matmul:.0f}% of matmul "
        f"{result.matmul_gflops_per_second:.1f} GFLOP/s"
    )
    if result.pipeline_overhead is not None:
        print(f"pipeline overhead (end-to-end / model-only): {result.pipeline_overhead:.3f}")
    if result.live is not None:
        live = result.live
        print(
            f"live: {live['input_fps']:g} fps input -> "
            f"{live['processed_fps']:.2f} fps kept up with, "
            f"{live['dropped']} of {live['received']} frames dropped, "
            f"latency max {live['latency_max']:.2f} s / mean {live['latency_mean']:.2f} s"
        )
    print(f"peak RSS {result.peak_rss_mb:.0f} MiB, load average {result.load_average}")
    return 0
