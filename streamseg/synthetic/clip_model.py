"""The shapes world's small CLIP: an open_clip model config of our own, plus its dense path.

Two vision towers, both of which FC-CLIP's backbone accepts:
- "convnext": timm `convnext_atto` trunk (stem, stages, head.norm) + `visual.head.proj`;
  dense features are the last stage's output (stride 32), a region's embedding is the masked
  average of them through `trunk.head` (norm) and `visual.head` (projection), as FC-CLIP does.
- "resnet": open_clip's ModifiedResNet (batch norm, attention pool); a region's embedding is
  the attention pool run as masked attention (query = mean over positions + pos[0], keys and
  values = features + positional embedding, positions outside the region blocked), as FC-CLIP
  does for its RN50 backbone.
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
        ones = torch.ones_like(dense[:, :1])
        return _masked_attention_pool(visual.attnpool, dense, ones)[:, 0]
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
    return _masked_attention_pool(model.visual.attnpool, dense, weights)


def _masked_attention_pool(pool: torch.nn.Module, dense: Tensor, weights: Tensor) -> Tensor:
    """open_clip AttentionPool2d with one query per region and blocked outside positions."""
    batch, channels, height, width = dense.shape
    regions = weights.shape[1]
    positional = pool.positional_embedding  # (1 + S*S, C)
    spatial = positional[1:]
    side = int(round(spatial.shape[0] ** 0.5))
    if (side, side) != (height, width):
        grid = spatial.reshape(1, side, side, channels).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        spatial = grid.permute(0, 2, 3, 1).reshape(height * width, channels)
    tokens = dense.flatten(2).permute(0, 2, 1)  # (B, HW, C)
    keys = tokens + spatial[None]
    query = tokens.mean(dim=1, keepdim=True) + positional[:1][None]  # (B, 1, C)
    # Keys: [query token, positions]; the mean token always stays visible so that a region
    # with no positions above zero still has a defined output.
    keys = torch.cat([query, keys], dim=1)  # (B, 1 + HW, C)
    blocked = weights.flatten(2) <= 0  # (B, R, HW)
    blocked = torch.cat([torch.zeros_like(blocked[..., :1]), blocked], dim=-1)
    heads = pool.num_heads
    q = F.linear(query, pool.q_proj.weight, pool.q_proj.bias)  # (B, 1, C)
    k = F.linear(keys, pool.k_proj.weight, pool.k_proj.bias)
    v = F.linear(keys, pool.v_proj.weight, pool.v_proj.bias)
    head_dim = channels // heads
    q = q.reshape(batch, 1, heads, head_dim).transpose(1, 2).expand(-1, -1, regions, -1)
    k = k.reshape(batch, -1, heads, head_dim).transpose(1, 2)
    v = v.reshape(batch, -1, heads, head_dim).transpose(1, 2)
    mask = torch.zeros(blocked.shape, dtype=dense.dtype, device=dense.device)
    mask = mask.masked_fill(blocked, float("-inf"))[:, None]  # (B, 1, R, 1+HW)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, R, hd)
    out = out.transpose(1, 2).reshape(batch, regions, channels)
    return pool.c_proj(out)
