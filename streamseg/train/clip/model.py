"""The shapes world's small CLIP: an open_clip model config of our own, plus its dense path.

Two vision towers, both of which FC-CLIP's backbone accepts:
- "convnext": timm `convnext_atto` trunk (stem, stages, head.norm) + `visual.head.proj`;
  dense features are the last stage's output (stride 32), a region's embedding is the masked
  average of them through `trunk.head` (norm) and `visual.head` (projection), as FC-CLIP does.
- "resnet": open_clip's ModifiedResNet (batch norm, attention pool); a region's embedding is
  the attention pool run as masked attention (query = mean over positions + pos[0], keys and
  values = features + resized positional embedding, positions outside the region blocked):
  FC-CLIP's own function for its RN50 backbone (streamseg.model.backbone), also used here for
  the whole image (all positions open), so training and FC-CLIP share one path.
The text tower is a small transformer with the standard CLIP tokenizer and context 77, so
FC-CLIP's text path (14 templates, 77 tokens) runs unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

TRUNKS = ("convnext", "resnet")


def shapes_clip_config(trunk: str = "convnext", image_size: int = 256) -> dict:
    """The open_clip model config (the JSON an open_clip `model_configs/*.json` would hold).

    Args:
        trunk: "convnext" (timm convnext_atto, 3.4M) or "resnet" (ModifiedResNet [1,1,1,1],
            stem width 32, 2.5M + attention pool).
        image_size: training image size (the ResNet's positional embedding size / 32).
    """
    text_cfg = {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 3}
    if trunk == "convnext":
        vision_cfg = {
            "timm_model_name": "convnext_atto",
            "timm_model_pretrained": False,
            "timm_pool": "avg",
            "timm_proj": "linear",
            "image_size": image_size,
        }
    elif trunk == "resnet":
        vision_cfg = {
            "layers": [1, 1, 1, 1],
            "width": 32,
            "head_width": 32,
            "image_size": image_size,
        }
    else:
        raise ValueError(f"unknown trunk {trunk!r}; expected one of {TRUNKS}")
    return {"embed_dim": 256, "vision_cfg": vision_cfg, "text_cfg": text_cfg}


def create_shapes_clip(config: dict, device: torch.device | str = "cpu") -> torch.nn.Module:
    """An open_clip `CLIP` with random weights from a model config dict."""
    from open_clip.model import CLIP

    model = CLIP(
        embed_dim=config["embed_dim"],
        vision_cfg=config["vision_cfg"],
        text_cfg=config["text_cfg"],
        quick_gelu=config.get("quick_gelu", False),
    )
    return model.to(device)


def is_resnet(model: torch.nn.Module) -> bool:
    """True for a ModifiedResNet vision tower, False for a timm trunk."""
    return not hasattr(model.visual, "trunk")


def dense_features(model: torch.nn.Module, images: Tensor) -> Tensor:
    """Stride-32 features of the vision tower (FC-CLIP's res5 / clip_dense).

    Args:
        images: (B, 3, H, W) normalized with the OpenAI CLIP mean/std.

    Returns: (B, C, H/32, W/32).
    """
    visual = model.visual
    if not is_resnet(model):
        return visual.trunk.forward_features(images)
    x = visual.stem(images)
    for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
        x = layer(x)
    return x


def embed_dense(model: torch.nn.Module, dense: Tensor) -> Tensor:
    """Whole-image embedding from dense features (the CLIP image embedding, not normalized).

    Args:
        dense: (B, C, h, w). Returns: (B, D).
    """
    visual = model.visual
    if is_resnet(model):
        # The masked pool with an all-ones mask is open_clip's attention pool, with the
        # positional embedding resized to the feature map (training below model size).
        from streamseg.model.backbone import masked_attention_pool

        ones = torch.ones_like(dense[:, :1])
        return masked_attention_pool(visual.attnpool, dense, ones)[:, 0]
    return visual.head(visual.trunk.forward_head(dense))


def downsample_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Region masks to the dense grid as area fractions.

    Args:
        masks: (B, R, H, W) bool or float. Returns: (B, R, h, w) float in [0, 1].
    """
    return F.adaptive_avg_pool2d(masks.float(), size)


def embed_regions(model: torch.nn.Module, dense: Tensor, weights: Tensor) -> Tensor:
    """Region embeddings through the CLIP head (FC-CLIP's out-of-vocabulary path).

    Args:
        dense: (B, C, h, w) dense features.
        weights: (B, R, h, w) region masks on the dense grid (area fractions in [0, 1]).

    Returns: (B, R, D) embeddings (not normalized).
    """
    batch, regions = weights.shape[:2]
    if not is_resnet(model):
        # Mask pooling (FC-CLIP: sum(F * m) / sum(m)), then trunk.head norm and projection
        # applied to the pooled vector as a 1x1 map.
        pooled = torch.einsum("bchw,brhw->brc", dense, weights)
        pooled = pooled / weights.sum(dim=(2, 3)).clamp_min(1e-6)[..., None]
        flat = pooled.reshape(batch * regions, -1, 1, 1)
        out = model.visual.head(model.visual.trunk.head(flat))
        return out.reshape(batch, regions, -1)
    # FC-CLIP's own masked attention pool (streamseg.model.backbone), so the CLIP is trained
    # through exactly the path FC-CLIP uses; a cell is open when more than a quarter of it is
    # inside the region (FC-CLIP opens cells where the resized mask logit is > 0).
    from streamseg.model.backbone import masked_attention_pool

    return masked_attention_pool(model.visual.attnpool, dense, weights - 0.25)
