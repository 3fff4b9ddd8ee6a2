"""Which memory format a model's convolutions run in for inference: channels_last where it was
measured faster, the default (contiguous NCHW) everywhere else.

Both formats give the same outputs up to float rounding (largest difference measured: 5e-5 in
a mask logit); the choice is speed only. On this project's CPU (2-vCPU Xeon with AMX, torch
2.14.1, `python -m streamseg.bench.memory_format --device cpu`; docs/BENCHMARKS.md section 12):

| CLIP of the model | input | channels_last against contiguous |
|---|---|---|
| tiny-r50 (shapes-tiny, the default model) | 144x256, 256x256; batch 1, 4 | 1.12x-1.18x faster |
| tiny-convnext | 128x228, batch 1 | 4% slower |
| RN50 (fcclip-r50) | 750x1333, batch 1 | 3% slower |
| ConvNeXt-L (fcclip-convnext-large) | 750x1333, batch 1 | 4% slower |

The small ResNet's convolutions are narrow (32-256 channels on small maps), where oneDNN's
reorders of NCHW activations cost about what the convolutions do. The rule is a table of what
was measured, kept deterministic on purpose (a probe at run time could pick differently from
run to run, and a resumed run would then differ in float rounding from the first part). GPUs
keep the default until `.ci/gpu.sh` (which measures both) has run on one.
"""

from __future__ import annotations

import torch

# (CLIP model name, device type) measured faster in channels_last.
CHANNELS_LAST = frozenset({("tiny-r50", "cpu")})


def prefers_channels_last(clip_model: str, device: torch.device) -> bool:
    """Whether the model with CLIP `clip_model` runs its inference in channels_last on
    `device` (see the module doc)."""
    return (clip_model, device.type) in CHANNELS_LAST


def memory_format_of(model: torch.nn.Module) -> str:
    """ "channels_last" when the model's 4-D weights are stored in channels_last, else
    "contiguous" (1x1 kernels are both, so the first larger kernel decides)."""
    for parameter in model.parameters():
        if parameter.dim() == 4 and not parameter.is_contiguous():
            if parameter.is_contiguous(memory_format=torch.channels_last):
                return "channels_last"
    return "contiguous"
