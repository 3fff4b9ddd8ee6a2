"""Batches for training the small CLIP: rendered scenes, tokenized captions, region labels.

Scenes are rendered on the fly (a 128-px scene takes a few ms), seeded by (seed, step, index)
so a resumed run sees exactly the batches it would have seen without the interruption.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from streamseg.model.text_classifier import TEMPLATES  # the 14 ViLD templates FC-CLIP averages over
from streamseg.synthetic.categories import SHAPES, shapes_categories
from streamseg.synthetic.scene import Scene, SceneConfig, render_image

# OpenAI CLIP normalization (open_clip's OPENAI_DATASET_MEAN/STD), which FC-CLIP also uses.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_scene_config(
    image_size: int, reference_size: int = 256, edge_margin: float = 1.0
) -> SceneConfig:
    """Scenes of `image_size` px whose objects have the pixel size of `reference_size` scenes.

    A convolutional CLIP is not scale invariant, and FC-CLIP runs it on 256-px frames; small
    training images with proportionally larger objects keep the pixel scale and cost 4x less.
    Objects lie wholly inside the image by default (`edge_margin` radii from the border): a
    shape cut by the border carries no shape to learn from.
    """
    scale = reference_size / image_size
    base = SceneConfig()
    return replace(
        base,
        height=image_size,
        width=image_size,
        max_objects=max(2, int(round(base.max_objects / scale**2))) + 1,
        single_object_prob=0.35,
        min_radius=base.min_radius * scale,
        max_radius=min(base.max_radius * scale, 0.42),
        min_visible=0.5,
        edge_margin=edge_margin,
    )


@dataclass
class ClipBatch:
    """One training batch."""

    images: Tensor  # (B, 3, H, W) float32, CLIP-normalized
    captions: list[str]  # B captions
    region_masks: Tensor  # (B, R, H, W) bool, one mask per segment (padding all False)
    region_labels: Tensor  # (B, R) long, category index (id - 1), -1 for padding


def normalize_images(images: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 CLIP-normalized."""
    tensor = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN, device=device)[:, None, None]
    std = torch.tensor(CLIP_STD, device=device)[:, None, None]
    return (tensor - mean) / std


def scene_seed(seed: int, step: int, index: int) -> int:
    """A distinct scene seed per (run seed, step, index in the batch)."""
    return int(np.random.SeedSequence([seed, step, index]).generate_state(1)[0])


def flatten_stuff(scene: Scene) -> np.ndarray:
    """The scene's image with every stuff region painted its mean colour (things untouched).

    Returns: (H, W, 3) uint8.
    """
    image = scene.image.copy()
    for segment in scene.segments:
        if not segment.isthing:
            mask = scene.panoptic == segment.id
            image[mask] = image[mask].mean(axis=0).round().astype(np.uint8)
    return image


def build_batch(
    seed: int,
    step: int,
    batch_size: int,
    config: SceneConfig,
    device: torch.device | str,
    flat_prob: float = 0.0,
) -> ClipBatch:
    """Render `batch_size` scenes for one step.

    Args:
        flat_prob: share of scenes whose stuff is painted flat (`flatten_stuff`). Texture
            edges drown the few edges that tell shapes apart: a from-scratch CNN stays at
            chance on shape for hundreds of steps on textured scenes and learns it quickly on
            flat ones (measured with a 6-way shape probe), so training starts flat and fades
            the textures in (`ClipTrainConfig.flat_until`).
    """
    scenes = [render_image(scene_seed(seed, step, i), config) for i in range(batch_size)]
    coins = np.random.default_rng([seed, step, 11]).random(batch_size)
    images = [
        flatten_stuff(scene) if coin < flat_prob else scene.image
        for scene, coin in zip(scenes, coins, strict=True)
    ]
    max_regions = max(len(s.segments) for s in scenes)
    height, width = config.height, config.width
    masks = np.zeros((batch_size, max_regions, height, width), dtype=bool)
    labels = np.full((batch_size, max_regions), -1, dtype=np.int64)
    for b, scene in enumerate(scenes):
        for r, segment in enumerate(scene.segments):
            masks[b, r] = scene.panoptic == segment.id
            labels[b, r] = segment.category_id - 1
    return ClipBatch(
        images=normalize_images(np.stack(images), device),
        captions=[s.caption for s in scenes],
        region_masks=torch.from_numpy(masks).to(device),
        region_labels=torch.from_numpy(labels).to(device),
    )


def shape_labels(region_labels: Tensor) -> Tensor:
    """(B, R) category indices -> index into SHAPES for things, -1 for stuff and padding."""
    table = [list(SHAPES).index(c.shape) if c.isthing else -1 for c in shapes_categories()]
    lookup = torch.tensor(table + [-1], device=region_labels.device)
    return lookup[region_labels.clamp_min(-1)]  # -1 (padding) picks the trailing -1


def class_prompts(rng: np.random.Generator) -> list[str]:
    """One prompt per category (54), random template and synonym: varied text each step."""
    prompts = []
    for category in shapes_categories():
        name = category.synonyms[int(rng.integers(len(category.synonyms)))]
        prompts.append(TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(name))
    return prompts
