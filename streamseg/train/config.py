"""Training recipe: frozen dataclasses loaded from the `[fcclip]` table of a TOML pipeline.

Relative paths in the TOML are relative to the current directory; `{out}` in a path is replaced
by the run's output folder (so a staged recipe can name an earlier stage's files).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from streamseg.dataclass_toml import load_table
from streamseg.errors import UserError
from streamseg.train.augment import JitterConfig
from streamseg.train.criterion import LossConfig


@dataclass(frozen=True)
class DataConfig:
    """Where the COCO-panoptic-format data lives."""

    train_json: str = ""  # panoptic JSON of the training split
    train_images: str = ""  # folder of the training images
    train_panoptic: str = ""  # folder of the training panoptic PNGs
    val_json: str = ""  # validation split (empty = no periodic evaluation)
    val_images: str = ""
    val_panoptic: str = ""
    keep_categories: tuple[str, ...] = ()  # train on these category names only (seen classes)
    workers: int = 2  # DataLoader worker processes per rank (0 = in the main process)
    val_max_images: int = 0  # evaluate on the first N validation images (0 = all)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and schedule (official FC-CLIP COCO values as defaults)."""

    steps: int = 368_750  # optimizer steps
    batch_size: int = 16  # images per step over all ranks (per rank: batch_size / world)
    accumulate: int = 1  # micro-batches per step (per-rank micro-batch = batch / world / this)
    lr: float = 1e-4  # AdamW base learning rate
    weight_decay: float = 0.05  # AdamW weight decay (0 for norms and embeddings, as officially)
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "step"  # "step" (multiply by gamma at each milestone) or "poly"
    milestones: tuple[int, ...] = (327_778, 355_092)  # step schedule milestones
    gamma: float = 0.1  # step schedule factor
    poly_power: float = 0.9  # poly schedule: (1 - step / steps) ** power
    warmup_steps: int = 10  # linear warmup from warmup_factor * lr
    warmup_factor: float = 1.0  # official Mask2Former WARMUP_FACTOR
    clip_grad: float = 0.01  # L2 norm clipping of all trainable gradients together; 0 = off
    amp: str = "none"  # "none", "bf16" or "fp16" autocast (fp16 with a gradient scaler)


@dataclass(frozen=True)
class TrainConfig:
    """One training run of FC-CLIP."""

    model: str = "fcclip-convnext-large"  # preset in streamseg.model.config.PRESETS
    clip_weights: str = ""  # open_clip weights for the frozen CLIP ("" = random, tests only)
    clip_config: str = ""  # open_clip model-config JSON file replacing the preset's one
    model_overrides: dict[str, Any] = field(default_factory=dict)  # FCCLIPConfig fields to set
    # Class names (with synonyms) in the dataset's category order: "" = the dataset's category
    # names; a vocabulary file; or a built-in name such as "coco" (the official class file).
    vocabulary: str = ""
    data: DataConfig = DataConfig()
    augment: JitterConfig = JitterConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    seed: int = 0  # seeds model init, data order, augmentation and point sampling
    device: str = "auto"  # "auto", "cpu", "cuda"
    threads: int = 0  # torch threads per rank (0 = torch's default)
    log_every: int = 20  # steps between metric lines
    eval_every: int = 5000  # steps between PQ evaluations (0 = only at the end)
    eval_at_start: bool = False  # also evaluate before the first step (a baseline)
    checkpoint_every: int = 1000  # steps between resumable checkpoints


def load_train_config(path: str | Path) -> TrainConfig:
    """The `[fcclip]` table of a TOML pipeline as a checked `TrainConfig`."""
    config = load_table(TrainConfig, path, "fcclip")
    check_train_config(config, str(path))
    return config


def check_train_config(config: TrainConfig, source: str = "config") -> None:
    """Values that would fail late, checked early."""
    o = config.optim
    if o.schedule not in ("step", "poly"):
        raise UserError(f"{source}: optim.schedule must be 'step' or 'poly'")
    if o.amp not in ("none", "bf16", "fp16"):
        raise UserError(f"{source}: optim.amp must be 'none', 'bf16' or 'fp16'")
    if o.steps < 1 or o.batch_size < 1 or o.accumulate < 1:
        raise UserError(f"{source}: optim.steps, batch_size and accumulate must be >= 1")
    if config.augment.size % 32:
        raise UserError(f"{source}: augment.size must be a multiple of 32")
    if not config.data.train_json:
        raise UserError(f"{source}: data.train_json is required")


def resolve_paths(config: TrainConfig, out: str | Path) -> TrainConfig:
    """Replace `{out}` in every path field."""

    def sub(text: str) -> str:
        # normpath: "{out}/../x" must work before OUT exists.
        return os.path.normpath(text.replace("{out}", str(out))) if "{out}" in text else text

    data = config.data
    data = replace(
        data,
        **{
            f.name: sub(getattr(data, f.name))
            for f in fields(data)
            if isinstance(getattr(data, f.name), str)
        },
    )
    return replace(
        config,
        data=data,
        clip_weights=sub(config.clip_weights),
        clip_config=sub(config.clip_config),
        vocabulary=sub(config.vocabulary),
    )
