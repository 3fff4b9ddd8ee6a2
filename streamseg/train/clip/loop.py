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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from streamseg.dataclass_toml import load_table
from streamseg.model.checkpoint import read_training_state
from streamseg.synthetic.categories import SHAPES
from streamseg.train.clip.data import (
    build_batch,
    class_prompts,
    clip_scene_config,
    shape_labels,
)
from streamseg.train.clip.model import (
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
    shape_weight: float = 0.0  # weight of the thing regions' 6-way shape loss (see clip_losses)
    # Share of scenes with flat-painted stuff (clip_data.build_batch): `flat_start` at step 0,
    # linearly to `flat_end` at `flat_steps`, then constant (0, 0, 0: always textured).
    flat_start: float = 0.0
    flat_end: float = 0.0
    flat_steps: int = 0
    min_region_cells: float = 0.5  # regions covering fewer dense cells are not supervised
    seed: int = 0  # data and init seed
    threads: int = 1  # torch threads (the machine is shared)
    log_every: int = 10  # steps between log lines
    checkpoint_minutes: float = 3.0  # minutes between checkpoints


def load_clip_train_config(path: str | Path) -> ClipTrainConfig:
    """Read the [clip] table of a pipeline TOML into a checked ClipTrainConfig."""
    return load_table(ClipTrainConfig, path, "clip")


def encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """`model.encode_text(tokens)` computed on the tokens up to the longest text only.

    The text transformer is causal and pools at the end-of-text token, so the padding after
    the longest text never reaches the output: dropping it gives the same embeddings at a
    fraction of the cost (prompts are ~10 of the 77 tokens).

    Args:
        tokens: (N, 77) long from the CLIP tokenizer. Returns: (N, D) not normalized.
    """
    from open_clip.transformer import text_global_pool

    length = int((tokens != 0).sum(dim=1).max())
    tokens = tokens[:, :length]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type)
    return x @ model.text_projection


def flat_probability(config: ClipTrainConfig, step: int) -> float:
    """Share of flat-stuff scenes at `step` (see ClipTrainConfig)."""
    if config.flat_steps <= 0:
        return config.flat_end
    progress = min(1.0, step / config.flat_steps)
    return config.flat_start + (config.flat_end - config.flat_start) * progress


def clip_losses(
    model: torch.nn.Module,
    tokenizer,
    batch,
    prompts: list[str],
    min_region_cells: float,
    shape_head: torch.nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Contrastive and region losses of one batch (the trunk runs once).

    Args:
        shape_head: a linear layer region embedding -> 6 shapes; when given, thing regions
            are also classified by it ("shape" loss). Through text alone shape is never
            learned here: the text embeddings of same-colour classes collapse onto each other
            while the image side carries no shape, and then no gradient asks the image for
            shape (the 54-way loss sat at the colour-only optimum for 980 steps; shape words
            as text targets stayed at ln 6 for 350). A separately initialized head breaks
            that symmetry, as a supervised probe does; once regions carry shape, the region
            loss pulls the names apart. The head is not part of the exported CLIP.

    Returns: {"contrastive", "region", "region_accuracy"} (+ "shape", "shape_accuracy").
    """
    from open_clip.loss import ClipLoss

    device = batch.images.device
    dense = dense_features(model, batch.images)
    image_features = F.normalize(embed_dense(model, dense), dim=-1)
    texts = tokenizer(list(batch.captions) + prompts).to(device)
    text_features = F.normalize(encode_text_trimmed(model, texts), dim=-1)
    caption_features = text_features[: len(batch.captions)]
    class_features = text_features[len(batch.captions) :]
    scale = model.logit_scale.exp()
    contrastive = ClipLoss()(image_features, caption_features, scale)

    weights = downsample_masks(batch.region_masks, dense.shape[-2:])
    cells = weights.sum(dim=(2, 3))
    valid = (batch.region_labels >= 0) & (cells >= min_region_cells)
    raw_regions = embed_regions(model, dense, weights)
    regions = F.normalize(raw_regions, dim=-1)
    logits = scale * regions[valid] @ class_features.T
    labels = batch.region_labels[valid]
    if labels.numel():
        region = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
    else:
        region = logits.sum() * 0.0
        accuracy = torch.zeros((), device=device)
    losses = {"contrastive": contrastive, "region": region, "region_accuracy": accuracy}
    if shape_head is not None:
        shapes = shape_labels(batch.region_labels)[valid]
        things = shapes >= 0
        shape_logits = shape_head(raw_regions[valid][things])
        if things.any():
            losses["shape"] = F.cross_entropy(shape_logits, shapes[things])
            hits = shape_logits.argmax(dim=-1) == shapes[things]
            losses["shape_accuracy"] = hits.float().mean()
        else:
            losses["shape"] = shape_logits.sum() * 0.0
            losses["shape_accuracy"] = torch.zeros((), device=device)
    return losses


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


def _save_checkpoint(
    out: Path, model, shape_head, optimizer, step: int, config, model_config
) -> None:
    payload = {
        "model": model.state_dict(),
        "shape_head": shape_head.state_dict(),
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
    shape_head = torch.nn.Linear(model_config["embed_dim"], len(SHAPES)).to(device)
    trained = torch.nn.ModuleDict({"clip": model, "shape_head": shape_head})
    optimizer = torch.optim.AdamW(
        _param_groups(trained, config.weight_decay), lr=config.lr, betas=(0.9, 0.98), eps=1e-6
    )
    step = 0
    if (out / "last.pt").exists():
        checkpoint = read_training_state(out / "last.pt", device)
        model.load_state_dict(checkpoint["model"])
        shape_head.load_state_dict(checkpoint["shape_head"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step = int(checkpoint["step"])
    tokenizer = open_clip.get_tokenizer("RN50")  # the standard CLIP BPE tokenizer, context 77
    scene_config = clip_scene_config(config.image_size)
    stop = min(config.steps, max_steps if max_steps is not None else config.steps)
    started = last_save = time.time()
    model.train()
    with (out / "log.jsonl").open("a") as log:
        while step < stop:
            flat = flat_probability(config, step)
            batch = build_batch(config.seed, step, config.batch_size, scene_config, device, flat)
            prompts = class_prompts(np.random.default_rng([config.seed, step, 7]))
            head = shape_head if config.shape_weight > 0 else None
            losses = clip_losses(model, tokenizer, batch, prompts, config.min_region_cells, head)
            loss = losses["contrastive"] + config.region_weight * losses["region"]
            if head is not None:
                loss = loss + config.shape_weight * losses["shape"]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            step += 1
            if step % config.log_every == 0 or step == stop:
                record = {"step": step, "time": round(time.time() - started, 1)}
                record.update({k: round(float(v.detach()), 4) for k, v in losses.items()})
                record["lr"] = learning_rate(config, step - 1)
                record["flat"] = round(flat, 3)
                record["logit_scale"] = round(float(model.logit_scale.detach().exp()), 2)
                log.write(json.dumps(record) + "\n")
                log.flush()
            now = time.time()
            timed_out = max_minutes is not None and now - started > 60 * max_minutes
            if now - last_save > 60 * config.checkpoint_minutes or step == stop or timed_out:
                _save_checkpoint(out, model, shape_head, optimizer, step, config, model_config)
                last_save = now
            if timed_out:
                break
    return step
