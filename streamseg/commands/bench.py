"""`streamseg bench`: per-stage throughput, FLOPs and pipeline overhead on this machine."""

from __future__ import annotations

import argparse
import json
import sys

from streamseg.model.precision import BENCH_PRECISIONS

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
    parser.add_argument("--precision", default="fp32", choices=BENCH_PRECISIONS)
    parser.add_argument(
        "--vocab", default=None, help="classes (default: shapes for shapes models, else 5 words)"
    )
    parser.add_argument(
        "--stages",
        default=None,
        help="comma-separated subset of decode,model,track,store,render,end_to_end,live,"
        "end_to_end_overlay,capacity,capacity_overlay,live_capacity",
    )
    parser.add_argument(
        "--capacity",
        action="store_true",
        help="capacity mode: run_video with the real model and with one recorded batch of its "
        "outputs replayed instead of the network (the pipeline's ceiling), with and without "
        "an overlay (docs/BENCHMARKS.md)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="with --capacity: add the live bench, with the model and with the replay",
    )
    parser.add_argument(
        "--live-fps",
        type=float,
        default=None,
        help="frame rate of the live bench's stream (default 25); a rate above what the "
        "pipeline keeps up with shows its live ceiling",
    )
    parser.add_argument(
        "--sync-debug",
        action="store_true",
        help="CUDA: run end to end once more under torch.cuda.set_sync_debug_mode warn and "
        "error; report the host synchronisations",
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
    from streamseg.bench.speed import BenchConfig, parse_size, run_benchmark

    stages = bench_stages(args.stages, capacity=args.capacity, live=args.live)
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
        sync_debug=args.sync_debug,
        live_fps=BenchConfig.live_fps if args.live_fps is None else args.live_fps,
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
            f"  {name:<18} {stage.fps:10.2f} fps  {stage.seconds_per_frame * 1000:10.1f} ms/frame"
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
        # Every frame kept: the source, not the pipeline, set the rate (and the rate counts
        # the run's start and finish, so it reads below the input's).
        bound = " (every frame: source-bound)" if live["dropped"] == 0 else ""
        print(
            f"live: {live['input_fps']:g} fps input -> "
            f"{live['processed_fps']:.2f} fps kept up with, "
            f"{live['dropped']} of {live['received']} frames dropped{bound}, "
            f"latency max {live['latency_max']:.2f} s / mean {live['latency_mean']:.2f} s"
        )
    if result.capacity is not None:
        print_capacity(result.capacity)
    if result.sync_debug is not None:
        print_sync_debug(result.sync_debug)
    print(f"peak RSS {result.peak_rss_mb:.0f} MiB, load average {result.load_average}")
    return 0


def bench_stages(text: str | None, *, capacity: bool, live: bool) -> tuple[str, ...]:
    """The stages to run: `--stages` (default: every per-stage one and live), with `--capacity`
    its stages added (alone, when `--stages` is not given), `--live` adding the live ones.

    Raises:
        UserError: --live without --capacity (the default run has the live bench already).
    """
    from streamseg.bench.capacity import capacity_stages
    from streamseg.bench.speed import LIVE, STAGES
    from streamseg.errors import UserError

    if live and not capacity:
        raise UserError("--live: goes with --capacity (a run without it has a live part)")
    chosen = tuple(s.strip() for s in text.split(",") if s.strip()) if text else ()
    if not capacity:
        return chosen or (*STAGES, LIVE)
    return (*chosen, *(s for s in capacity_stages(live) if s not in chosen))


def print_capacity(capacity: dict[str, object]) -> None:
    """The capacity summary as lines of text."""

    def rate(key: str) -> str:
        value = capacity.get(key)
        return f"{value:.2f} fps" if isinstance(value, float) else "-"

    print(
        f"capacity: one recorded batch of {capacity['recorded_frames']} frames replayed "
        f"(segments per frame {capacity['segments_per_frame']})"
    )
    print(f"  forward only (real model)      {rate('forward_fps')}")
    print(f"  model: forward + post-process  {rate('model_fps')}")
    print(f"  end to end, real model         {rate('end_to_end_fps')}")
    print(f"  end to end, real, overlay      {rate('end_to_end_overlay_fps')}")
    print(f"  capacity (replayed)            {rate('capacity_fps')}")
    print(f"  capacity (replayed), overlay   {rate('capacity_overlay_fps')}")
    print(f"  live, real model               {rate('live_fps')}")
    print(f"  live, replayed                 {rate('live_capacity_fps')}")
    if capacity.get("bound"):
        print(f"  bound by: {capacity['bound']}")


def print_sync_debug(sync: dict[str, object]) -> None:
    """The sync-debug check as lines of text."""
    if not sync["checked"]:
        print(f"sync debug: not checked ({sync['note']})")
        return
    verdict = f"raised: {sync['error']}" if sync["raised"] else "raised nothing"
    print(f"sync debug: mode error {verdict}; mode warn counted {sync['warn_syncs']} syncs")
    places = sync.get("places") or {}
    assert isinstance(places, dict)
    for place, count in places.items():
        print(f"  {count:6d}  {place}")
