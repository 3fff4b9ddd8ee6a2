"""Training the small CLIP on the shapes world: contrastive + region-level text alignment.

Loss = open_clip's ClipLoss (image <-> caption, both directions) + `region_weight` x
cross-entropy of each region's embedding (mask-pooled dense features through the CLIP head,
the path FC-CLIP's out-of-vocabulary classifier uses) against the text embeddings of all 54
class names. Contrastive training alone learns colour and stuff but not shape in CPU budgets
(../FACTS); the region loss is what makes dense classification work.

Runs are resumable: OUT/last.pt holds model, optimizer, step and config; the batches are a
pure function of (seed, step), so a resumed run continues exactly. OUT/log.jsonl gets one line
per logged step; OUT/clip.safetensors + OUT/clip_config.json are the exported weights.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from streamseg.synthetic.clip_data import build_batch, class_prompts, clip_scene_config
from streamseg.synthetic.clip_model import (
    create_shapes_clip,
    dense_features,
    downsample_masks,
    embed_dense,
    embed_regions,
    shapes_clip_config,
)


@dataclass(frozen=True)
class ClipTrainConfig:
    """The [clip] table of a training pipeline TOML."""

    trunk: str = "convnext"  # vision tower: "convnext" (timm convnext_atto) or "resnet"
    image_size: int = 128  # training image size (objects keep the pixel size of 256-px scenes)
    model_image_size: int = 256  # image size stored in the model config (FC-CLIP's input)
    batch_size: int = 32  # scenes per step
    steps: int = 3000  # total optimizer steps (the cosine schedule's length)
    lr: float = 1e-3  # peak AdamW learning rate
    weight_decay: float = 0.05  # AdamW weight decay (not on norms, biases, logit scale)
    warmup: int = 100  # linear warm-up steps
    region_weight: float = 1.0  # weight of the region cross-entropy
    min_region_cells: float = 0.5  # regions covering fewer dense cells are not supervised
    seed: int = 0  # data and init seed
    threads: int = 1  # torch threads (the machine is shared)
    log_every: int = 10  # steps between log lines
    checkpoint_minutes: float = 3.0  # minutes between checkpoints


def load_clip_train_config(path: str | Path) -> ClipTrainConfig:
    """Read the [clip] table of a pipeline TOML into a ClipTrainConfig."""
    import tomllib

    from streamseg.errors import UserError

    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UserError(f"{path}: cannot read pipeline TOML ({error})") from error
    table = data.get("clip")
    if not isinstance(table, dict):
        raise UserError(f"{path}: no [clip] table")
    known = {f.name for f in fields(ClipTrainConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise UserError(f"{path}: unknown [clip] keys {unknown}; known: {sorted(known)}")
    return ClipTrainConfig(**table)


def clip_losses(
    model: torch.nn.Module,
    tokenizer,
    batch,
    prompts: list[str],
    min_region_cells: float,
) -> dict[str, torch.Tensor]:
    """Contrastive and region losses of one batch (the trunk runs once).

    Returns: {"contrastive", "region", "region_accuracy"} scalars.
    """
    from open_clip.loss import ClipLoss

    device = batch.images.device
    dense = dense_features(model, batch.images)
    image_features = F.normalize(embed_dense(model, dense), dim=-1)
    texts = tokenizer(list(batch.captions) + prompts).to(device)
    text_features = F.normalize(model.encode_text(texts), dim=-1)
    caption_features = text_features[: len(batch.captions)]
    class_features = text_features[len(batch.captions) :]
    scale = model.logit_scale.exp()
    contrastive = ClipLoss()(image_features, caption_features, scale)

    weights = downsample_masks(batch.region_masks, dense.shape[-2:])
    cells = weights.sum(dim=(2, 3))
    valid = (batch.region_labels >= 0) & (cells >= min_region_cells)
    regions = F.normalize(embed_regions(model, dense, weights), dim=-1)
    logits = scale * regions[valid] @ class_features.T
    labels = batch.region_labels[valid]
    if labels.numel():
        region = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
    else:
        region = logits.sum() * 0.0
        accuracy = torch.zeros((), device=device)
    return {"contrastive": contrastive, "region": region, "region_accuracy": accuracy}


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        small = parameter.ndim < 2 or "logit_scale" in name or "positional_embedding" in name
        (no_decay if small else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def learning_rate(config: ClipTrainConfig, step: int) -> float:
    """Linear warm-up then cosine decay to 5% of the peak over `steps`."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    return config.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def export_clip(model: torch.nn.Module, model_config: dict, out: Path) -> None:
    """Write OUT/clip.safetensors (state dict) + OUT/clip_config.json (open_clip model cfg)."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / "clip.safetensors.tmp"))
    os.replace(out / "clip.safetensors.tmp", out / "clip.safetensors")
    (out / "clip_config.json").write_text(json.dumps(model_config, indent=2))


def _save_checkpoint(out: Path, model, optimizer, step: int, config, model_config) -> None:
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "config": asdict(config),
        "model_config": model_config,
    }
    torch.save(payload, out / "last.pt.tmp")
    os.replace(out / "last.pt.tmp", out / "last.pt")
    export_clip(model, model_config, out)


def load_clip(out: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The exported CLIP of a run folder (clip_config.json + clip.safetensors), eval mode."""
    from safetensors.torch import load_file

    out = Path(out)
    model = create_shapes_clip(json.loads((out / "clip_config.json").read_text()), device)
    model.load_state_dict(load_file(str(out / "clip.safetensors"), device=str(device)))
    return model.eval()


def train_clip(
    config: ClipTrainConfig,
    out: str | Path,
    device: torch.device | str = "cpu",
    max_minutes: float | None = None,
    max_steps: int | None = None,
) -> int:
    """Train (or resume) the small CLIP into folder `out`.

    Args:
        max_minutes: stop (with a checkpoint) after this wall time; None = no limit.
        max_steps: stop at this step (< config.steps) this time; None = config.steps.

    Returns: the step reached.
    """
    import open_clip

    torch.set_num_threads(config.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model_config = shapes_clip_config(config.trunk, config.model_image_size)
    model = create_shapes_clip(model_config, device)
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.98), eps=1e-6
    )
    step = 0
    if (out / "last.pt").exists():
        checkpoint = torch.load(out / "last.pt", map_location=device, weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step = int(checkpoint["step"])
    tokenizer = open_clip.get_tokenizer("RN50")  # the standard CLIP BPE tokenizer, context 77
    scene_config = clip_scene_config(config.image_size)
    stop = min(config.steps, max_steps if max_steps is not None else config.steps)
    started = last_save = time.time()
    model.train()
    with (out / "log.jsonl").open("a") as log:
        while step < stop:
            batch = build_batch(config.seed, step, config.batch_size, scene_config, device)
            prompts = class_prompts(np.random.default_rng([config.seed, step, 7]))
            losses = clip_losses(model, tokenizer, batch, prompts, config.min_region_cells)
            loss = losses["contrastive"] + config.region_weight * losses["region"]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
            if step % config.log_every == 0 or step == stop:
                record = {"step": step, "time": round(time.time() - started, 1)}
                record.update({k: round(float(v.detach()), 4) for k, v in losses.items()})
                record["lr"] = learning_rate(config, step - 1)
                record["logit_scale"] = round(float(model.logit_scale.detach().exp()), 2)
                log.write(json.dumps(record) + "\n")
                log.flush()
            now = time.time()
            timed_out = max_minutes is not None and now - started > 60 * max_minutes
            if now - last_save > 60 * config.checkpoint_minutes or step == stop or timed_out:
                _save_checkpoint(out, model, optimizer, step, config, model_config)
                last_save = now
            if timed_out:
                break
    return step
