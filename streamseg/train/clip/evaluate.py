"""Zero-shot accuracy of a CLIP on the shapes world, per class: single objects and regions.

- single objects: whole-image embedding of a one-object scene vs the 48 thing names;
- regions: every ground-truth segment of multi-object scenes, mask-pooled dense features
  through the CLIP head (FC-CLIP's out-of-vocabulary path) vs all 54 names.
Text embeddings average the 14 ViLD templates over each class's synonyms, as FC-CLIP does.
Colour and shape accuracies say which attribute of a thing's predicted class is right; the
region shape accuracy is the gate before training FC-CLIP on top ("the shape probe").
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from streamseg.model.text_classifier import TEMPLATES
from streamseg.synthetic.categories import shapes_categories
from streamseg.synthetic.scene import SceneConfig, render_image
from streamseg.train.clip.data import normalize_images
from streamseg.train.clip.model import (
    dense_features,
    downsample_masks,
    embed_dense,
    embed_regions,
)


@torch.no_grad()
def class_text_embeddings(model: torch.nn.Module, device: torch.device | str) -> torch.Tensor:
    """(54, D) L2-normalized: templates averaged per synonym, synonyms averaged per class."""
    import open_clip

    tokenizer = open_clip.get_tokenizer("RN50")
    rows = []
    for category in shapes_categories():
        synonyms = []
        for name in category.synonyms:
            tokens = tokenizer([t.format(name) for t in TEMPLATES]).to(device)
            synonyms.append(
                F.normalize(F.normalize(model.encode_text(tokens), dim=-1).mean(0), dim=0)
            )
        rows.append(F.normalize(torch.stack(synonyms).mean(0), dim=0))
    return torch.stack(rows)


def _attribute_hits(true_index: int, predicted_index: int) -> tuple[bool, bool]:
    categories = shapes_categories()
    true, predicted = categories[true_index], categories[predicted_index]
    return (
        predicted.isthing and predicted.color_name == true.color_name,
        predicted.shape == true.shape,
    )


def _summary(records: list[tuple[int, int]]) -> dict:
    """Accuracy overall / things / stuff / colour / shape and per class from (true, pred)."""
    categories = shapes_categories()
    per_class: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    hits = defaultdict(list)
    for true, predicted in records:
        name = categories[true].name
        per_class[name][0] += int(true == predicted)
        per_class[name][1] += 1
        hits["all"].append(true == predicted)
        if categories[true].isthing:
            hits["things"].append(true == predicted)
            color_hit, shape_hit = _attribute_hits(true, predicted)
            hits["color"].append(color_hit)
            hits["shape"].append(shape_hit)
        else:
            hits["stuff"].append(true == predicted)
    result = {key: float(np.mean(values)) for key, values in hits.items() if values}
    result["count"] = len(records)
    result["per_class"] = {
        c.name: per_class[c.name][0] / per_class[c.name][1]
        for c in categories
        if per_class[c.name][1]
    }
    return result


@torch.no_grad()
def evaluate_clip(
    model: torch.nn.Module,
    device: torch.device | str = "cpu",
    num_single: int = 240,
    num_scenes: int = 120,
    size: int = 256,
    seed: int = 900_000,
    batch_size: int = 16,
) -> dict:
    """Zero-shot accuracies (see the module docstring) on scenes from seeds >= `seed`.

    Returns: {"single": summary, "regions": summary}; a summary has accuracies "all",
    "things", "stuff", "color", "shape" and "per_class" {name: accuracy}.
    """
    model.eval()
    text = class_text_embeddings(model, device)
    num_things = sum(c.isthing for c in shapes_categories())
    base = replace(SceneConfig(), height=size, width=size)
    single_config = replace(base, single_object_prob=1.0)

    single: list[tuple[int, int]] = []
    for start in range(0, num_single, batch_size):
        scenes = [
            render_image(seed + i, single_config)
            for i in range(start, min(num_single, start + batch_size))
        ]
        images = normalize_images(np.stack([s.image for s in scenes]), device)
        features = F.normalize(embed_dense(model, dense_features(model, images)), dim=-1)
        predicted = (features @ text[:num_things].T).argmax(dim=-1).tolist()
        for scene, guess in zip(scenes, predicted, strict=True):
            true = next(s.category_id - 1 for s in scene.segments if s.isthing)
            single.append((true, guess))

    regions: list[tuple[int, int]] = []
    for start in range(0, num_scenes, batch_size):
        seeds = range(seed + 500_000 + start, seed + 500_000 + min(num_scenes, start + batch_size))
        scenes = [render_image(s, base) for s in seeds]
        images = normalize_images(np.stack([s.image for s in scenes]), device)
        dense = dense_features(model, images)
        for b, scene in enumerate(scenes):
            masks = torch.from_numpy(np.stack([scene.panoptic == s.id for s in scene.segments])).to(
                device
            )
            weights = downsample_masks(masks[None], dense.shape[-2:])
            embedded = F.normalize(embed_regions(model, dense[b : b + 1], weights)[0], dim=-1)
            predicted = (embedded @ text.T).argmax(dim=-1).tolist()
            for segment, guess in zip(scene.segments, predicted, strict=True):
                regions.append((segment.category_id - 1, guess))
    return {"single": _summary(single), "regions": _summary(regions), "size": size}


def format_report(result: dict) -> str:
    """A short text table: headline accuracies, then per-class region / single accuracy."""
    lines = [f"image size {result['size']} px"]
    for key in ("single", "regions"):
        summary = result[key]
        parts = [
            f"{name} {summary[name]:.3f}"
            for name in ("all", "things", "stuff", "color", "shape")
            if name in summary
        ]
        lines.append(f"{key:8s} (n={summary['count']}): " + ", ".join(parts))
    lines.append("class                 region  single")
    for category in shapes_categories():
        region = result["regions"]["per_class"].get(category.name)
        single = result["single"]["per_class"].get(category.name)
        cells = [f"{v:6.2f}" if v is not None else "     -" for v in (region, single)]
        lines.append(f"{category.name:20s} {cells[0]}  {cells[1]}")
    return "\n".join(lines)
