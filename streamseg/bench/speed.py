"""`run_benchmark`: where the time of a video run goes, stage by stage, on this machine.

Every stage is timed alone on the same generated shapes-world video (after one warm-up call,
median over `repeats`), then `run_video` end to end on that video:

```
decode (PyAV) -> model (forward + panoptic post-processing) -> track -> store write -> render
```
Besides throughput: peak resident memory, parameters (frozen CLIP / trained parts), GFLOPs per
frame counted by `torch.utils.flop_counter.FlopCounterMode` over the model's inference call, the
achieved GFLOP/s of that call next to the machine's dense matmul GFLOP/s (2048 x 2048, fp32,
or bf16 with --precision bf16: the practical limit), and the pipeline overhead = end-to-end
time / model-only time.

With `compile` the network runs through `torch.compile` (`Segmenter.compile`) in the model,
forward-only, end-to-end and live stages; the compile happens in the model stage's warm-up call
(which sees every batch size of the timed calls), so the timed repeats exclude it. FLOPs are
counted on the eager network either way (same operations; a compiled graph hides its fused ops
from the counter).

Capacity mode (bench/capacity.py, `--capacity`) adds `run_video` with an overlay and the same
two runs with one recorded batch of model outputs replayed in place of the network: the
pipeline's own ceiling. `sync_debug` (CUDA only, bench/sync_debug.py) runs the end-to-end loop
once more under `torch.cuda.set_sync_debug_mode` "warn" and "error" and reports the host
synchronisations it makes.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamseg.bench.capacity import (
    CAPACITY,
    CAPACITY_OVERLAY,
    CAPACITY_STAGES,
    END_TO_END_OVERLAY,
    LIVE_CAPACITY,
    REPLAY_STAGES,
)
from streamseg.errors import UserError
from streamseg.model.precision import BENCH_PRECISIONS, autocast, check_precision

if TYPE_CHECKING:
    from streamseg.video.block import StoreBlock

STAGES = ("decode", "model", "track", "store", "render", "end_to_end")
# Live mode: a stream served on 127.0.0.1 at LIVE_FPS, read by `run_live` with bounded latency;
# reported apart from the per-stage table (`BenchResult.live`).
LIVE = "live"
LIVE_FPS = 25.0
MAX_LIVE_FPS = 240.0  # the stream is encoded in memory first: LIVE_SECONDS at this rate
LIVE_SECONDS = 4.0
# Every stage name `stages` accepts (the default runs STAGES and LIVE).
KNOWN_STAGES = (*STAGES, *CAPACITY_STAGES, LIVE, LIVE_CAPACITY)
# A small vocabulary for models without their own (the text tower of a large CLIP is slow).
DEFAULT_VOCAB = "person,car,dog,tree,sky"
MATMUL_SIZE = 2048
# --precision of the bench: fp16 has no matmul limit measured here (`matmul_gflops`).


@dataclass(frozen=True)
class BenchConfig:
    """What `run_benchmark` measures."""

    model: str | None = None  # model name or path (None = DEFAULT_MODEL)
    size: tuple[int, int] | None = None  # (H, W) of the generated video (None = native)
    batch_size: int = 4  # frames per model call (also `run_video`'s batch size)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    frames: int = 8  # frames of the generated video
    repeats: int = 3  # timed repeats per stage after one warm-up (median reported)
    precision: str = "fp32"  # fp32 | bf16 (autocast around the model call)
    vocab: str | None = None  # CLI vocabulary syntax (None = the model default or DEFAULT_VOCAB)
    stages: tuple[str, ...] = (*STAGES, LIVE)  # stages to time (the large model: model, end_to_end)
    seed: int = 0  # of the generated video
    threads: int | None = None  # torch intra-op threads (None = torch's default); 1 is faster
    # for small models on an oversubscribed machine (docs/BENCHMARKS.md)
    compile: bool = False  # torch.compile the network (compiled in the warm-up, not timed)
    # CUDA: one more end-to-end run under torch.cuda.set_sync_debug_mode "warn", one under
    # "error" (untimed; bench/sync_debug.py); elsewhere reported as not checked
    sync_debug: bool = False
    live_fps: float = LIVE_FPS  # frame rate of the live bench's stream


@dataclass
class StageResult:
    """Median time of one stage over the repeats."""

    frames: int  # frames processed per repeat
    seconds: float  # median seconds per repeat
    fps: float  # frames / seconds
    seconds_per_frame: float
    repeats: list[float] = field(default_factory=list)  # every repeat's seconds


@dataclass
class BenchResult:
    """Everything one benchmark run measured (`to_dict()` is the `--json` output)."""

    model: str
    device: str
    precision: str
    compile: bool  # the network ran through torch.compile
    batch_size: int
    frame_size: tuple[int, int]  # (H, W) of the generated video
    input_size: tuple[int, int]  # (H, W) the model sees (test-time resize)
    num_classes: int
    stages: dict[str, StageResult]
    params_frozen_clip: int
    params_trained: int
    gflops_per_frame: float  # FlopCounterMode over the inference call (forward + out-of-vocab)
    forward_seconds_per_frame: float  # median, the counted call only (no post-processing)
    forward_gflops_per_second: float  # achieved: gflops_per_frame / forward_seconds_per_frame
    matmul_gflops_per_second: float  # measured dense matmul in `precision`, 2048 x 2048, median
    forward_share_of_matmul: float  # achieved / matmul
    pipeline_overhead: float | None  # end-to-end seconds / model-only seconds (same frames)
    live: dict[str, Any] | None  # live mode: sustained processed fps, drops, latency (LiveRate)
    peak_rss_mb: float  # peak resident memory of this process
    threads: int  # torch intra-op threads
    load_average: tuple[float, float, float]  # os.getloadavg() at the end (a shared machine)
    cpu_count: int
    platform: str
    torch_version: str
    # capacity mode (bench/capacity.py): the live bench with the replay, and the summary
    live_capacity: dict[str, Any] | None = None
    capacity: dict[str, Any] | None = None
    sync_debug: dict[str, Any] | None = None  # SyncCheck.to_dict() with --sync-debug
    device_name: str = ""  # the GPU's name (torch.cuda.get_device_name), else the CPU's

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["frame_size"] = list(self.frame_size)
        data["input_size"] = list(self.input_size)
        data["load_average"] = list(self.load_average)
        return data


def measure(function: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of each of `repeats` calls of `function` after `warmup` untimed calls."""
    for _ in range(warmup):
        function()
    seconds = []
    for _ in range(max(1, repeats)):
        began = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - began)
    return seconds


def stage_result(frames: int, seconds: list[float]) -> StageResult:
    """Median of the repeats as a `StageResult`."""
    median = float(statistics.median(seconds))
    return StageResult(
        frames=frames,
        seconds=median,
        fps=frames / median if median > 0 else float("inf"),
        seconds_per_frame=median / max(frames, 1),
        repeats=[float(s) for s in seconds],
    )


def matmul_gflops(
    device: Any, size: int = MATMUL_SIZE, repeats: int = 5, precision: str = "fp32"
) -> float:
    """Measured dense matmul speed in `precision` (fp32 | bf16): 2 size^3 FLOPs per product,
    median of `repeats`. bf16 is measured apart because CPUs with AMX (and GPUs' tensor cores)
    run it several times faster than fp32: the limit of a `--precision bf16` run."""
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)

    def product() -> None:
        torch.mm(a, b)
        _synchronize(device)

    seconds = statistics.median(measure(product, repeats))
    return 2.0 * size**3 / seconds / 1e9


def count_gflops(function: Callable[[], Any], module: Any = None) -> float:
    """GFLOPs of one call of `function` as counted by torch's FlopCounterMode (matmuls,
    convolutions, attention; element-wise ops are not counted).

    `module`'s parameters are set not to require grad meanwhile: FlopCounterMode's module
    tracker fails on parameters that require grad inside inference mode (torch 2.x).
    """
    from torch.utils.flop_counter import FlopCounterMode

    parameters = list(module.parameters()) if module is not None else []
    flags = [p.requires_grad for p in parameters]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            function()
    finally:
        for parameter, flag in zip(parameters, flags, strict=True):
            parameter.requires_grad_(flag)
    return counter.get_total_flops() / 1e9


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def parse_size(text: str) -> tuple[int, int]:
    """ "HxW" -> (H, W); both positive and even (H.264 yuv420p needs even sizes)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {text}: expected HxW, e.g. 800x1066") from None
    if height < 32 or width < 32 or height % 2 or width % 2:
        raise UserError(f"--size {text}: height and width must be even and at least 32")
    return height, width


def device_name(device: Any) -> str:
    """The GPU's name for a CUDA device; else the CPU model (Linux /proc/cpuinfo) or arch."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _synchronize(device: Any) -> None:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def write_video(path: Path, size: tuple[int, int], frames: int, seed: int) -> None:
    """A generated shapes-world mp4 of `frames` frames at (H, W) = `size`."""
    from dataclasses import replace

    from streamseg.synthetic.video import VideoConfig, iter_video
    from streamseg.synthetic.writers import encode_mp4

    config = replace(VideoConfig(), height=size[0], width=size[1], num_frames=frames)
    encode_mp4((scene.image for scene in iter_video(seed, config)), path)


def run_benchmark(config: BenchConfig, log: Callable[[str], None] | None = None) -> BenchResult:
    """Measure every stage of `config.stages` (see the module docstring).

    Raises:
        UserError: bad sizes, counts, stage names, threads, precision or live rate.
    """
    import torch

    unknown = [s for s in config.stages if s not in KNOWN_STAGES]
    if unknown:
        raise UserError(
            f"--stages: unknown {', '.join(unknown)} (known: {', '.join(KNOWN_STAGES)})"
        )
    if config.frames < 1 or config.repeats < 1 or config.batch_size < 1:
        raise UserError("--frames, --repeats and --batch-size must be at least 1")
    check_precision(config.precision, BENCH_PRECISIONS)  # validates the name early
    if config.threads is not None and config.threads < 1:
        raise UserError(f"--threads: must be at least 1, got {config.threads}")
    if not 0 < config.live_fps <= MAX_LIVE_FPS:
        raise UserError(
            f"--live-fps: must be above 0 and at most {MAX_LIVE_FPS:g}, got {config.live_fps:g}"
        )
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, log or (lambda message: None))
    finally:
        torch.set_num_threads(previous_threads)


def _run(config: BenchConfig, say: Callable[[str], None]) -> BenchResult:
    import torch

    from streamseg.model.embedded import DEFAULT_MODEL
    from streamseg.model.load import load_segmenter

    name = config.model or DEFAULT_MODEL
    say(f"building {name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "random weights" is expected here
        segmenter = load_segmenter(name, device=config.device)
    device = segmenter.device
    from streamseg.model.default_vocab import default_vocabulary

    # The model's own default vocabulary (as `streamseg run` uses it), else a few words.
    vocab = config.vocab or default_vocabulary(segmenter, name) or DEFAULT_VOCAB
    say(f"text classifier for {vocab if isinstance(vocab, str) else 'the model default'!r}")
    vocabulary = segmenter.set_vocabulary(vocab, cache_dir=None)
    short = segmenter.config.test_short_edge or 128
    size = config.size or (short + short % 2, short + short % 2)
    input_size = segmenter.input_size(*size)
    stages: dict[str, StageResult] = {}
    n = config.frames
    with tempfile.TemporaryDirectory(prefix="streamseg-bench-") as tmp:
        video = Path(tmp) / "bench.mp4"
        say(f"generating a {n}-frame {size[0]}x{size[1]} video")
        write_video(video, size, n, config.seed)
        from streamseg.video.decode import iter_frames

        def decode() -> list[Any]:
            return list(iter_frames(video, size=input_size))

        if "decode" in config.stages:
            say("decode")
            stages["decode"] = stage_result(n, measure(decode, config.repeats))
        images = [frame.image for frame in decode()]
        batches = [images[i : i + config.batch_size] for i in range(0, n, config.batch_size)]

        segmentations: list[Any] = []

        def model() -> None:
            segmentations.clear()
            for batch in batches:
                with autocast(device, config.precision):
                    segmentations.extend(segmenter.segment(batch, output_size=size))
            _synchronize(device)

        def forward() -> None:
            with autocast(device, config.precision):
                segmenter.segment_raw(batches[0])
            _synchronize(device)

        def forward_fp32() -> None:
            segmenter.segment_raw(batches[0])

        forward_frames = len(batches[0])
        # Counted before any compile: the eager network runs the same operations, and a
        # compiled graph hides its fused kernels from FlopCounterMode. Counted in fp32 whatever
        # --precision: the count does not depend on it, and under FlopCounterMode (a dispatch
        # mode) einsum's inner bmm escapes autocast and fails on mixed bf16 / fp32 operands.
        say("FLOP count")
        gflops = count_gflops(forward_fp32, segmenter.model) / forward_frames
        if config.compile:
            say("torch.compile (compiles in the model stage's warm-up)")
            segmenter.compile()

        replay = None
        if any(s in config.stages for s in REPLAY_STAGES):
            from streamseg.bench.replay import record_batch

            say(f"recording the model's outputs for {len(batches[0])} frames (capacity mode)")
            replay = record_batch(segmenter, batches[0], size, config.precision)

        need_model = any(s in config.stages for s in ("model", "track", "store", "render"))
        real_runs = ("end_to_end", END_TO_END_OVERLAY)
        warm = need_model or config.sync_debug or any(s in config.stages for s in real_runs)
        if warm:
            say("model (forward + post-processing)")
            # the warm-up call covers every batch (and batch size): compiles happen there
            stages["model"] = stage_result(n, measure(model, config.repeats))
        say("forward only")
        # batches[0] was in the model stage's warm-up (or recorded); else one warm-up here
        forward_warmup = 0 if warm or replay is not None else 1
        forward_seconds = statistics.median(measure(forward, config.repeats, warmup=forward_warmup))
        forward_per_frame = forward_seconds / forward_frames

        if "track" in config.stages:
            say("track")
            stages["track"] = stage_result(
                n, measure(lambda: _track(segmentations), config.repeats)
            )
        if "store" in config.stages:
            say("store")
            blocks = _store_blocks(segmentations, config.batch_size)
            runs = iter(range(10**9))

            def store() -> None:
                _write_store(Path(tmp) / f"store-{next(runs)}.zarr", blocks, size)

            stages["store"] = stage_result(n, measure(store, config.repeats))
        if "render" in config.stages:
            say("render")
            labels = [block.labels[0] for block in _store_blocks(segmentations, 1)]
            names = {i: str(i) for i in range(1, 1 + max(len(s.segments) for s in segmentations))}
            renders = iter(range(10**9))

            def render() -> None:
                _render(Path(tmp) / f"overlay-{next(renders)}.mp4", images, labels, names, size)

            stages["render"] = stage_result(n, measure(render, config.repeats))
        from streamseg.bench.capacity import video_run
        from streamseg.config import ModelSettings, RunConfig

        # compile=True reaches run_video's segmenter.compile(): a no-op on this compiled one
        run_config = RunConfig(
            model=ModelSettings(
                batch_size=config.batch_size,
                precision=config.precision,
                compile=config.compile,
            )
        )
        folder = Path(tmp)
        real = {"segmenter": segmenter, "vocabulary": vocabulary, "config": run_config}
        for name, overlay in (("end_to_end", False), (END_TO_END_OVERLAY, True)):
            if name in config.stages:
                say(f"end to end (run_video{', overlay' if overlay else ''})")
                run = video_run(video, folder, **real, overlay=overlay, prefix=name)
                # the model is warm already (model stage): a warm-up would double the slowest
                # stage
                stages[name] = stage_result(n, measure(run, config.repeats, warmup=0))
        if replay is not None:
            # the replay has nothing to compile (run_video would refuse compile=True)
            replay_config = RunConfig(
                model=ModelSettings(batch_size=config.batch_size, precision=config.precision)
            )
            replayed = {"segmenter": replay, "vocabulary": vocabulary, "config": replay_config}
            for name, overlay in ((CAPACITY, False), (CAPACITY_OVERLAY, True)):
                if name in config.stages:
                    with_overlay = ", overlay" if overlay else ""
                    say(f"capacity: run_video with the replayed outputs{with_overlay}")
                    run = video_run(video, folder, **replayed, overlay=overlay, prefix=name)
                    # cheap: a warm-up keeps first-call costs (codecs, imports) out
                    stages[name] = stage_result(n, measure(run, config.repeats, warmup=1))
        sync = None
        if config.sync_debug:
            from streamseg.bench.sync_debug import check_syncs

            say("sync debug: end to end under set_sync_debug_mode warn, then error")
            run = video_run(video, folder, **real, overlay=False, prefix="sync-debug")
            sync = check_syncs(run, device).to_dict()

    def live_rate(subject: Any) -> dict[str, Any]:
        """The live bench (a stream at `config.live_fps`) through `subject`, at batch 1: the
        live preset's (pipelines/live.toml), the lowest latency."""
        from streamseg.bench.live import measure_live_rate
        from streamseg.config import ModelSettings, RunConfig

        return measure_live_rate(
            subject,
            size=size,
            input_fps=config.live_fps,
            seconds=LIVE_SECONDS,
            max_latency=1.0,
            config=RunConfig(model=ModelSettings(batch_size=1, precision=config.precision)),
        ).to_dict()

    live = None
    if LIVE in config.stages:
        say(f"live mode: a {config.live_fps:g} fps stream on 127.0.0.1, --max-latency 1, batch 1")
        if config.compile:
            # batch size 1 may be new to the compiled network: compile it outside the timing
            with autocast(device, config.precision):
                segmenter.segment(images[:1], output_size=size)
        live = live_rate(segmenter)
    live_capacity = None
    if LIVE_CAPACITY in config.stages and replay is not None:
        say(f"live mode with the replayed outputs: {config.live_fps:g} fps, batch 1")
        live_capacity = live_rate(replay)
    capacity = None
    if replay is not None or any(s in stages for s in CAPACITY_STAGES):
        from streamseg.bench.capacity import summarize

        capacity = summarize(
            replay.recorded if replay is not None else [],
            forward_frames / forward_seconds if forward_seconds > 0 else float("inf"),
            {name: stage.fps for name, stage in stages.items()},
            live,
            live_capacity,
        ).to_dict()

    model_seconds = stages["model"].seconds if "model" in stages else None
    overhead = None
    if "end_to_end" in stages and model_seconds:
        overhead = stages["end_to_end"].seconds / model_seconds
    if "model" in stages and "model" not in config.stages:
        del stages["model"]  # measured for the other stages' inputs only
    say("matmul")
    matmul = matmul_gflops(device, repeats=max(5, config.repeats), precision=config.precision)
    achieved = gflops / forward_per_frame if forward_per_frame > 0 else 0.0
    frozen = sum(p.numel() for p in segmenter.model.backbone.parameters())
    total = sum(p.numel() for p in segmenter.model.parameters())
    return BenchResult(
        model=segmenter.name,
        device=str(device),
        precision=config.precision,
        compile=config.compile,
        batch_size=config.batch_size,
        frame_size=size,
        input_size=tuple(input_size),
        num_classes=len(vocabulary.names),
        stages=stages,
        params_frozen_clip=frozen,
        params_trained=total - frozen,
        gflops_per_frame=gflops,
        forward_seconds_per_frame=forward_per_frame,
        forward_gflops_per_second=achieved,
        matmul_gflops_per_second=matmul,
        forward_share_of_matmul=achieved / matmul if matmul > 0 else 0.0,
        pipeline_overhead=overhead,
        live=live,
        peak_rss_mb=peak_rss_mb(),
        threads=torch.get_num_threads(),
        load_average=tuple(os.getloadavg()),
        cpu_count=os.cpu_count() or 1,
        platform=platform.platform(),
        torch_version=torch.__version__,
        live_capacity=live_capacity,
        capacity=capacity,
        sync_debug=sync,
        device_name=device_name(device),
    )


def _track(segmentations: list[Any]) -> None:
    from streamseg.video.track import Tracker

    tracker = Tracker()
    for index, segmentation in enumerate(segmentations):
        tracker.step(index, segmentation)


def _store_blocks(segmentations: list[Any], batch_size: int) -> list[StoreBlock]:
    """Blocks of `batch_size` frames as the pipeline writes them (tracked, no overlay)."""
    from streamseg.video.block import StoreBlock
    from streamseg.video.segments import segment_columns, segment_rows
    from streamseg.video.track import Tracker

    tracker = Tracker()
    blocks = []
    for start in range(0, len(segmentations), batch_size):
        chunk = segmentations[start : start + batch_size]
        labels = np.zeros((len(chunk), *chunk[0].panoptic.shape), np.int32)
        rows = []
        for i, segmentation in enumerate(chunk):
            result = tracker.step(start + i, segmentation)
            labels[i] = result.labels
            rows.extend(segment_rows(i, segmentation.segments, result))
        index = np.arange(start, start + len(chunk))
        frames = {
            "index": index,
            "pts": index,
            "time": index / 12.0,
            "keyframe": np.zeros(len(chunk), np.uint8),
            "corrupt": np.zeros(len(chunk), np.uint8),
        }
        blocks.append(StoreBlock(tuple(labels), frames, segment_columns(rows)))
    return blocks


def _write_store(path: Path, blocks: list[StoreBlock], size: tuple[int, int]) -> None:
    from streamseg.video.store import LabelStore

    store = LabelStore.open(
        path, label_size=size, identity={"bench": True}, attrs={"bench": True}, overwrite=True
    )
    for block in blocks:
        store.write_block(block.labels, block.frames, block.segments, tracker_state="{}")
    store.finish()


def _render(
    path: Path,
    images: list[np.ndarray],
    labels: list[np.ndarray],
    names: dict[int, str],
    size: tuple[int, int],
) -> None:
    from streamseg.video.render import OverlayWriter

    with OverlayWriter(path, size=size, rate=12) as writer:
        for image, label in zip(images, labels, strict=True):
            writer.write(image, label, names)
