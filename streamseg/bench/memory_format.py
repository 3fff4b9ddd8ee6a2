"""Forward time of the network with its weights in PyTorch's default (contiguous NCHW) and in
the channels_last memory format, on the same frames in one process.

```
python -m streamseg.bench.memory_format --model fcclip-convnext-large --size 1080x1920 \
    --device cuda --precision bf16 --frames 8 --repeats 3 --out memory-format-bf16.json
```

Convolutions in channels_last run NHWC kernels (Tensor Cores on CUDA want them); whether the
whole network gains depends on the model and the device, so `.ci/gpu.sh` measures it and
streamseg switches it on only where it measured faster. The JSON also gives the largest
difference of the outputs between the two formats (they differ by float rounding only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from streamseg.bench.speed import _synchronize, device_name, measure, parse_size
from streamseg.model.precision import BENCH_PRECISIONS, autocast, check_precision


@dataclass(frozen=True)
class MemoryFormatResult:
    """Median forward seconds per frame in each format, and how far the outputs differ."""

    model: str
    device: str
    device_name: str
    precision: str
    frame_size: tuple[int, int]
    input_size: tuple[int, int]
    batch_size: int
    contiguous_seconds_per_frame: float
    channels_last_seconds_per_frame: float
    speedup: float  # contiguous / channels_last: > 1 means channels_last is faster
    max_abs_diff_class_probs: float
    max_abs_diff_mask_logits: float


def compare_memory_formats(
    model: str | None,
    size: tuple[int, int],
    device: str,
    precision: str,
    frames: int,
    repeats: int,
) -> MemoryFormatResult:
    """Time `segment_raw` on `frames` generated frames in both formats (same process, same
    frames; the model's weights converted in place between the two)."""
    import numpy as np
    import torch

    from streamseg.model.default_vocab import default_vocabulary
    from streamseg.model.embedded import DEFAULT_MODEL
    from streamseg.model.memory_format import memory_format_of
    from streamseg.synthetic.video import VideoConfig, iter_video

    check_precision(precision, BENCH_PRECISIONS)
    name = model or DEFAULT_MODEL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random weights are expected
        from streamseg.model.load import load_segmenter

        segmenter = load_segmenter(name, device=device)
    segmenter.set_vocabulary(
        default_vocabulary(segmenter, name) or "person,car,sky", cache_dir=None
    )
    config = replace(VideoConfig(), height=size[0], width=size[1], num_frames=frames)
    images = [np.ascontiguousarray(scene.image) for scene in iter_video(0, config)]

    def forward() -> dict[str, Any]:
        with torch.inference_mode(), autocast(segmenter.device, precision):
            out = segmenter.segment_raw(images)
        _synchronize(segmenter.device)
        return out

    def seconds_per_frame() -> float:
        return statistics.median(measure(forward, repeats)) / len(images)

    # The segmenter may already run in channels_last (model/memory_format.py): both are set
    # here, and its own format is put back at the end.
    own = memory_format_of(segmenter.model)
    segmenter.model.to(memory_format=torch.contiguous_format)
    contiguous = seconds_per_frame()
    before = forward()
    segmenter.model.to(memory_format=torch.channels_last)
    channels_last = seconds_per_frame()
    after = forward()
    if own == "contiguous":
        segmenter.model.to(memory_format=torch.contiguous_format)

    def largest_difference(key: str) -> float:
        pairs = zip(_as_list(before[key]), _as_list(after[key]), strict=True)
        return max(float((a.float() - b.float()).abs().max()) for a, b in pairs)

    return MemoryFormatResult(
        model=name,
        device=str(segmenter.device),
        device_name=device_name(segmenter.device),
        precision=precision,
        frame_size=size,
        input_size=segmenter.input_size(*size),
        batch_size=len(images),
        contiguous_seconds_per_frame=contiguous,
        channels_last_seconds_per_frame=channels_last,
        speedup=contiguous / channels_last,
        max_abs_diff_class_probs=largest_difference("class_probs"),
        max_abs_diff_mask_logits=largest_difference("mask_logits"),
    )


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamseg.bench.memory_format")
    parser.add_argument("--model", default=None, help="model name or path (default model)")
    parser.add_argument("--size", default="256x256", help="HxW of the frames")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=BENCH_PRECISIONS)
    parser.add_argument("--frames", type=int, default=4, help="frames per forward call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: stdout)")
    args = parser.parse_args(argv)
    result = compare_memory_formats(
        args.model, parse_size(args.size), args.device, args.precision, args.frames, args.repeats
    )
    text = json.dumps(asdict(result), indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
