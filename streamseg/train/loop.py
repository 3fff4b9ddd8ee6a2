"""The FC-CLIP trainer: frozen CLIP, AdamW, warmup + step/poly schedule, full-model gradient
clipping, optional AMP, gradient accumulation, periodic PQ, exact resume, DDP via torchrun.

Exact resume: the data order of an epoch is a permutation drawn from (seed, epoch), each
sample's augmentation from (seed, epoch, index) (augment.JitteredDataset), and everything else
that draws random numbers (point sampling) uses torch's global RNG, whose state is saved in the
checkpoint with the model, optimizer, scheduler, gradient scaler and the position in the epoch.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from streamseg.errors import UserError
from streamseg.model.checkpoint import read_training_state
from streamseg.train.augment import JitteredDataset
from streamseg.train.config import TrainConfig, resolve_paths
from streamseg.train.criterion import SetCriterion
from streamseg.train.data import PanopticDataset, Sample, collate_samples

CHECKPOINT = "last.pt"
METRICS = "metrics.jsonl"
MODEL_FOLDER = "model"
CLIP_PREFIX = "backbone.clip_model."


# ------------------------------------------------------------------------------ distributed
def init_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"device: unknown device {device!r}")
    if device.startswith("cuda:"):
        chosen = torch.device(device)
    else:
        chosen = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world)
    return rank, world, chosen


def all_reduce_sum(value: Tensor) -> Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(value)
    return value


# ------------------------------------------------------------------------------ schedules
def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the base lr at `step` (detectron2 WarmupMultiStepLR / WarmupPolyLR)."""
    o = config.optim
    if o.schedule == "step":
        factor = o.gamma ** sum(1 for m in o.milestones if m <= step)
    else:
        factor = (1.0 - min(step, o.steps) / o.steps) ** o.poly_power
    if step < o.warmup_steps:
        alpha = step / o.warmup_steps
        factor *= o.warmup_factor * (1 - alpha) + alpha
    return factor


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters; norms and embeddings without weight decay (Mask2Former
    WEIGHT_DECAY_NORM = WEIGHT_DECAY_EMBED = 0)."""
    no_decay_types = (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm2d, nn.Embedding)
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            (no_decay if isinstance(module, no_decay_types) else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


# ------------------------------------------------------------------------------ data
def epoch_order(
    size: int, seed: int, epoch: int, world: int, rank: int, per_step: int
) -> list[int]:
    """This rank's sample indices of an epoch: a seeded permutation, cycled to whole steps of
    `per_step` images per rank, every world-th item from `rank`."""
    generator = torch.Generator().manual_seed(seed * 7919 + epoch)
    order = torch.randperm(size, generator=generator).tolist()
    chunk = world * per_step
    total = max(chunk, math.ceil(size / chunk) * chunk)
    order = (order * math.ceil(total / size))[:total]
    return order[rank::world]


def build_text(model: nn.Module, class_names: list[str], is_thing: list[bool], config: Any):
    """The training vocabulary and its text classifier (synonyms split at commas)."""
    from streamseg.model.backbone import build_tokenizer
    from streamseg.model.text_classifier import build_text_classifier
    from streamseg.model.vocab import VocabClass, Vocabulary

    classes = []
    for name, thing in zip(class_names, is_thing, strict=True):
        synonyms = tuple(s.strip() for s in name.replace(", ", ",").split(",") if s.strip())
        classes.append(VocabClass(name=synonyms[0], synonyms=synonyms, is_thing=thing))
    vocabulary = Vocabulary(classes=tuple(classes))
    device = next(model.parameters()).device
    tokenizer = build_tokenizer(config.clip_model, config.clip_config)
    text = build_text_classifier(model.backbone.encode_text, tokenizer, vocabulary, device)
    return vocabulary, text


def vocabulary_names(spec: str, dataset: PanopticDataset, keep: tuple[str, ...]) -> list[str]:
    """Comma-joined synonyms of each training category from a vocabulary (file or built-in
    name): by position when it lists exactly the dataset's categories (COCO's class file names
    classes differently from its JSON), else by name (a class whose name or synonym equals the
    category name)."""
    from streamseg.model.vocab import load_vocab_file, parse_vocab

    vocabulary = load_vocab_file(spec) if Path(spec).is_file() else parse_vocab(spec)
    if not keep and len(vocabulary) == len(dataset.all_categories):
        return [",".join(c.synonyms) for c in vocabulary.classes]
    by_name = {}
    for vocab_class in vocabulary.classes:
        for synonym in (vocab_class.name, *vocab_class.synonyms):
            by_name.setdefault(synonym, vocab_class)
    missing = [name for name in dataset.class_names if name not in by_name]
    if missing:
        raise UserError(f"{spec}: no class named {missing} (training categories)")
    return [",".join(by_name[name].synonyms) for name in dataset.class_names]


def batch_tensors(
    model: nn.Module, samples: list[Sample], device: torch.device
) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """Normalized images (B, 3, S, S) and per-image targets on `device`."""
    images = torch.stack([s.image for s in samples]).to(device)
    images = model.normalize(images)
    targets = [
        {
            "labels": s.labels.to(device),
            "masks": s.masks.to(device),
            "ignore": s.ignore.to(device),
        }
        for s in samples
    ]
    return images, targets


# ------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate_pq(
    model: nn.Module,
    dataset: PanopticDataset,
    text: Any,
    fcclip_config: Any,
    device: torch.device,
    max_images: int = 0,
) -> dict[str, float]:
    """PQ (x100, streamseg.eval.panoptic = COCO panopticapi rules) of the model on a dataset:
    images padded to /32 (no resize), the geometric ensemble with every training class seen,
    the official panoptic inference. Ground truth of categories outside training is VOID."""
    import torch.nn.functional as F
    from PIL import Image

    from streamseg.eval.panoptic import PanopticQuality
    from streamseg.model.postprocess import (
        class_logits_from_probs,
        panoptic_inference,
        resize_mask_logits,
    )
    from streamseg.panoptic_png import rgb_to_id

    was_training = model.training
    model.eval()
    is_thing = torch.tensor(dataset.is_thing, dtype=torch.bool, device=device)
    seen = torch.ones(len(dataset.is_thing), dtype=torch.bool, device=device)
    kept = {c.dataset_id: c for c in dataset.categories}
    quality = PanopticQuality({c.dataset_id: {"isthing": int(c.is_thing)} for c in kept.values()})
    count = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    for index in range(count):
        sample = dataset[index]
        record = dataset.records[index]
        height, width = sample.image.shape[-2:]
        image = model.normalize(sample.image[None].to(device))
        image = F.pad(image, (0, (-width) % 32, 0, (-height) % 32))
        out = model.predict(
            image,
            text,
            seen,
            fcclip_config.ensemble_alpha,
            fcclip_config.ensemble_beta,
            fcclip_config.ensemble_on_valid_mask,
        )
        logits = resize_mask_logits(
            out["mask_logits"][0], tuple(image.shape[-2:]), (height, width), (height, width)
        )
        panoptic, segments = panoptic_inference(
            class_logits_from_probs(out["class_probs"][0]),
            logits,
            is_thing,
            fcclip_config.object_mask_threshold,
            fcclip_config.overlap_threshold,
        )
        with Image.open(record["png"]) as png:
            gt_ids = rgb_to_id(np.asarray(png.convert("RGB")))
        gt_segments = {}
        for entry in record["ann"].get("segments_info", []):
            if int(entry["category_id"]) in kept:
                gt_segments[int(entry["id"])] = entry
            else:
                gt_ids[gt_ids == int(entry["id"])] = 0
        quality.update(
            gt_ids,
            gt_segments,
            panoptic.cpu().numpy(),
            {s.id: {"category_id": dataset.categories[s.class_id].dataset_id} for s in segments},
            str(record["png"]),
        )
    model.train(was_training)
    result = quality.result()
    return {
        "PQ": 100 * result["All"]["pq"],
        "SQ": 100 * result["All"]["sq"],
        "RQ": 100 * result["All"]["rq"],
        "PQ_th": 100 * result["Things"]["pq"],
        "PQ_st": 100 * result["Stuff"]["pq"],
    }


# ------------------------------------------------------------------------------ checkpoints
def rng_state() -> dict[str, Any]:
    """Every RNG state, as plain types and tensors (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng_file(out: Path, rank: int) -> Path:
    return out / f"rng-rank{rank}.pt"


# ------------------------------------------------------------------------------ the loop
def train(
    config: TrainConfig,
    out: str | Path,
    resume: bool = False,
    stop_after: int | None = None,
    max_minutes: float = 0.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train FC-CLIP; writes OUT/last.pt (resumable), OUT/metrics.jsonl and, when all steps are
    done, OUT/model/ (config.json + model.safetensors, loadable by Segmenter.from_pretrained).

    Args:
        config: the recipe.
        out: output folder.
        resume: continue from OUT/last.pt (an error if it is missing).
        stop_after: stop (with a checkpoint) once this many steps are done in total.
        max_minutes: stop (with a checkpoint) after this wall time; 0 = no limit.
        progress: show a tqdm bar (rank 0).

    Returns:
        {"step", "done", "last_metrics", "eval"}.
    """
    from streamseg.model.checkpoint import load_clip_weights, save_folder
    from streamseg.model.config import get_preset
    from streamseg.model.fcclip import build_model

    out = Path(out)
    config = resolve_paths(config, out)
    rank, world, device = init_distributed(config.device)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    o = config.optim
    if o.batch_size % (world * o.accumulate):
        raise UserError(
            f"optim.batch_size {o.batch_size} must be divisible by world size {world} x "
            f"accumulate {o.accumulate}"
        )
    micro = o.batch_size // (world * o.accumulate)

    # Data first: bad datasets fail before any model is built.
    d = config.data
    train_set = PanopticDataset(
        json_path=d.train_json,
        image_root=d.train_images,
        panoptic_root=d.train_panoptic,
        keep_categories=d.keep_categories,
    )
    val_set = None
    if d.val_json:
        val_set = PanopticDataset(
            json_path=d.val_json,
            image_root=d.val_images,
            panoptic_root=d.val_panoptic,
            keep_categories=d.keep_categories,
        )
        if val_set.class_names != train_set.class_names:
            raise UserError(f"{d.val_json}: categories differ from {d.train_json}")
    jittered = JitteredDataset(train_set, config.augment, config.seed)

    fcclip_config = get_preset(config.model)
    if config.clip_config:
        path = Path(config.clip_config)
        if not path.is_file():
            raise UserError(f"{path}: open_clip model config not found")
        fcclip_config = replace(fcclip_config, clip_config=path.read_text(encoding="utf-8"))
    if config.model_overrides:
        fcclip_config = type(fcclip_config).from_dict(
            {**fcclip_config.to_dict(), **config.model_overrides}, "fcclip.model_overrides"
        )
    torch.manual_seed(config.seed)
    model = build_model(fcclip_config)
    if config.clip_weights:
        load_clip_weights(model, config.clip_weights)
    model.to(device)
    class_names = train_set.class_names
    if config.vocabulary:
        class_names = vocabulary_names(config.vocabulary, train_set, d.keep_categories)
    vocabulary, text = build_text(model, class_names, train_set.is_thing, fcclip_config)
    synonyms = tuple(dict.fromkeys(s for c in vocabulary.classes for s in c.synonyms))
    fcclip_config = replace(fcclip_config, train_vocabulary=synonyms)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameter_groups(model, o.weight_decay), lr=o.lr, betas=tuple(o.betas)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    scaler = torch.amp.GradScaler(device.type, enabled=o.amp == "fp16")
    criterion = SetCriterion(config.loss)
    ddp_model: nn.Module = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    step, epoch, position = 0, 0, 0
    if not resume and (out / CHECKPOINT).exists():
        raise UserError(f"{out / CHECKPOINT}: a run exists here; pass --resume or another --out")
    torch.manual_seed(config.seed * 1000 + rank + 1)  # point sampling differs per rank
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise UserError(f"{out / CHECKPOINT}: no checkpoint to resume from")
        state = read_training_state(out / CHECKPOINT, device)
        missing, unexpected = model.load_state_dict(state["model"], strict=False)
        if unexpected or any(not k.startswith(CLIP_PREFIX) for k in missing):
            raise UserError(f"{out / CHECKPOINT}: does not fit this recipe's model")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, epoch, position = state["step"], state["epoch"], state["position"]
        set_rng_state(read_training_state(_rng_file(out, rank)))
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    def save_checkpoint() -> None:
        if rank == 0:
            _atomic_save(
                {
                    # The frozen CLIP is rebuilt from the recipe (clip_weights): not stored.
                    "model": {
                        k: v for k, v in model.state_dict().items() if not k.startswith(CLIP_PREFIX)
                    },
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "step": step,
                    "epoch": epoch,
                    "position": position,
                    "config": repr(config),
                },
                out / CHECKPOINT,
            )
        if world > 1:
            torch.distributed.barrier()
        _atomic_save(rng_state(), _rng_file(out, rank))

    def log(record: dict[str, Any]) -> None:
        if rank == 0:
            with open(out / METRICS, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def run_eval() -> dict[str, float] | None:
        result = None
        if rank == 0 and val_set is not None:
            result = evaluate_pq(model, val_set, text, fcclip_config, device, d.val_max_images)
            log({"step": step, "eval": result})
        if world > 1:
            torch.distributed.barrier()
        return result

    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=o.steps, initial=step, desc="train", dynamic_ncols=True)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(o.amp)
    started = time.monotonic()
    last_metrics: dict[str, Any] = {}
    eval_result = None
    model.train()
    iterator = None

    def next_batch() -> list[Sample]:
        nonlocal iterator, epoch, position
        while True:
            if iterator is None:
                order = epoch_order(len(train_set), config.seed, epoch, world, rank, micro)
                jittered.set_epoch(epoch)
                loader = torch.utils.data.DataLoader(
                    jittered,
                    batch_size=micro,
                    sampler=order[position:],
                    num_workers=d.workers,
                    collate_fn=collate_samples,
                    persistent_workers=False,
                    # Its own generator: creating an iterator must not draw from the global RNG
                    # (a resumed run creates one mid-epoch, a straight run does not).
                    generator=torch.Generator().manual_seed(config.seed),
                )
                iterator = iter(loader)
            try:
                batch = next(iterator)
            except StopIteration:
                iterator, epoch, position = None, epoch + 1, 0
                continue
            position += len(batch)
            return batch

    if config.eval_at_start and step == 0:
        eval_result = run_eval()
    while step < o.steps:
        if stop_after is not None and step >= stop_after:
            break
        if max_minutes > 0 and time.monotonic() - started > 60 * max_minutes:
            break
        optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for micro_index in range(o.accumulate):
            samples = next_batch()
            images, targets = batch_tensors(model, samples, device)
            num_masks = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
            num_masks = float(all_reduce_sum(num_masks).item()) / world
            num_masks = max(num_masks, 1.0)
            sync = micro_index == o.accumulate - 1 or world == 1
            context = ddp_model.no_sync() if not sync else _nullcontext()
            with context:
                with torch.autocast(
                    device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
                ):
                    outputs = ddp_model(images, text)
                losses = criterion(_float_outputs(outputs), targets, num_masks)
                loss = losses["loss"] / o.accumulate
                scaler.scale(loss).backward()
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + float(value.detach()) / o.accumulate
        scaler.unscale_(optimizer)
        grad_norm = (
            float(torch.nn.utils.clip_grad_norm_(trainable, o.clip_grad))
            if o.clip_grad > 0
            else float("nan")
        )
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        if not all(math.isfinite(v) for v in totals.values()):
            raise RuntimeError(f"step {step}: non-finite loss {totals}")
        last_metrics = {
            "step": step,
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "grad_norm": grad_norm,
            **totals,
        }
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{totals['loss']:.3f}")
        if step % config.log_every == 0 or step == 1:
            log({**last_metrics, "time": time.monotonic() - started})
        if config.eval_every > 0 and step % config.eval_every == 0 and step < o.steps:
            eval_result = run_eval()
        if config.checkpoint_every > 0 and step % config.checkpoint_every == 0:
            save_checkpoint()
    done = step >= o.steps
    save_checkpoint()
    if done:
        eval_result = run_eval()
        if rank == 0:
            save_folder(model, fcclip_config, out / MODEL_FOLDER, include_clip=True)
            (out / MODEL_FOLDER / "vocabulary.json").write_text(
                vocabulary.to_json(), encoding="utf-8"
            )
    if bar is not None:
        bar.close()
    if world > 1:
        torch.distributed.barrier()
    return {"step": step, "done": done, "last_metrics": last_metrics, "eval": eval_result}


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def _float_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    """Losses in float32 whatever the autocast dtype."""
    return {
        "pred_logits": outputs["pred_logits"].float(),
        "pred_masks": outputs["pred_masks"].float(),
        "aux_outputs": [
            {k: v.float() for k, v in aux.items()} for aux in outputs.get("aux_outputs", [])
        ],
    }
