"""The frozen open_clip CLIP: multi-scale visual features, dense CLIP features, the CLIP visual
head for mask-pooled features, and the text encoder.

Module names are open_clip's own, under `clip_model.` (so the official state-dict names
`backbone.clip_model.*` hold as they are). Reference for the feature taps and the pooled-feature
heads: bytedance/fc-clip `fcclip/modeling/backbone/clip.py`.
"""

from __future__ import annotations

import json
import math

import open_clip
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.timm_model import TimmModel
from torch import Tensor, nn

from streamseg.errors import UserError
from streamseg.model.pooling import mask_pool, resize_masks


def build_clip_model(clip_model: str, clip_config: str = "") -> nn.Module:
    """An open_clip CLIP with random weights, built offline.

    Args:
        clip_model: an open_clip model name (used when `clip_config` is empty).
        clip_config: JSON text of a custom open_clip model config (embed_dim, vision_cfg,
            text_cfg, optional quick_gelu).
    """
    if clip_config:
        config = json.loads(clip_config)
        return open_clip.CLIP(
            embed_dim=config["embed_dim"],
            vision_cfg=config["vision_cfg"],
            text_cfg=config["text_cfg"],
            quick_gelu=config.get("quick_gelu", False),
        )
    if clip_model not in open_clip.list_models():
        raise UserError(f"{clip_model}: not an open_clip model name")
    return open_clip.create_model(clip_model, pretrained=None)


def build_tokenizer(clip_model: str, clip_config: str = ""):  # noqa: ANN201 (open_clip type)
    """The open_clip tokenizer of the model (the standard CLIP BPE for custom configs)."""
    if clip_config:
        context = json.loads(clip_config)["text_cfg"].get("context_length", 77)
        return open_clip.tokenizer.SimpleTokenizer(context_length=context)
    return open_clip.get_tokenizer(clip_model)


class CLIPBackbone(nn.Module):
    """Frozen CLIP (always eval mode, no gradients) of the ConvNeXt or ModifiedResNet family.

    Args:
        clip_model: open_clip model name (see `build_clip_model`).
        clip_config: custom open_clip model config as JSON text, or "".
    """

    def __init__(self, *, clip_model: str, clip_config: str = "") -> None:
        super().__init__()
        self.clip_model = build_clip_model(clip_model, clip_config)
        visual = self.clip_model.visual
        if isinstance(visual, ModifiedResNet):
            self.kind = "resnet"
            stages = [visual.layer1, visual.layer2, visual.layer3, visual.layer4]
            self.channels = [stage[-1].conv3.out_channels for stage in stages]
        elif isinstance(visual, TimmModel) and type(visual.trunk).__name__ == "ConvNeXt":
            self.kind = "convnext"
            self.channels = [info["num_chs"] for info in visual.trunk.feature_info]
        else:
            raise UserError(
                f"{clip_model}: FC-CLIP needs a convolutional CLIP (ConvNeXt or ModifiedResNet)"
            )
        self.embed_dim = int(self.clip_model.text_projection.shape[-1])
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> CLIPBackbone:
        # The CLIP stays frozen in eval mode (batch-norm statistics of RN50 included).
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Multi-scale features.

        Args:
            images: (B, 3, H, W) normalized, H and W multiples of 32.

        Returns:
            "res2".."res5": (B, C_i, H/4..H/32, W/4..W/32); "clip_dense": (B, C5, H/32, W/32).
        """
        visual = self.clip_model.visual
        out: dict[str, Tensor] = {}
        if self.kind == "convnext":
            x = visual.trunk.stem(images)
            for i, stage in enumerate(visual.trunk.stages):
                x = stage(x)
                out[f"res{i + 2}"] = x
            out["clip_dense"] = visual.trunk.norm_pre(x)
        else:
            x = visual.act1(visual.bn1(visual.conv1(images)))
            x = visual.act2(visual.bn2(visual.conv2(x)))
            x = visual.act3(visual.bn3(visual.conv3(x)))
            x = visual.avgpool(x)
            for i, stage in enumerate([visual.layer1, visual.layer2, visual.layer3, visual.layer4]):
                x = stage(x)
                out[f"res{i + 2}"] = x
            out["clip_dense"] = x
        return out

    @torch.no_grad()
    def pool_masks(self, dense: Tensor, masks: Tensor) -> Tensor:
        """CLIP image embeddings of mask regions (not normalized).

        ConvNeXt: mask-pool the dense features, then the CLIP head (trunk.head norm, then the
        visual head mlp/proj). ModifiedResNet: the attention pool run as masked attention.

        Args:
            dense: (B, C, h, w) dense CLIP features (stride 32).
            masks: (B, Q, H, W) mask logits, resized bilinearly to (h, w).

        Returns:
            (B, Q, D) embeddings in the CLIP space.
        """
        if self.kind == "convnext":
            pooled = mask_pool(dense, masks)
            batch, queries, channels = pooled.shape
            x = self.clip_model.visual.trunk.head(pooled.reshape(batch * queries, channels, 1, 1))
            x = self.clip_model.visual.head(x)
            return x.reshape(batch, queries, -1)
        return masked_attention_pool(self.clip_model.visual.attnpool, dense, masks)

    @torch.no_grad()
    def encode_text(self, tokens: Tensor) -> Tensor:
        """Text embeddings (not normalized): (N, context) long tokens -> (N, D)."""
        return self.clip_model.encode_text(tokens, normalize=False)


def masked_attention_pool(attnpool: nn.Module, dense: Tensor, masks: Tensor) -> Tensor:
    """ModifiedResNet's attention pool with one query per mask, attending only inside the mask.

    Query = mean of all positions + positional_embedding[0]; keys/values = features + the spatial
    positional embedding resized bilinearly to (h, w); positions where the resized mask logit is
    <= 0 are blocked. A mask with no positive pixel blocks every key: the official call
    (`F.multi_head_attention_forward`, need_weights=False, i.e. torch's SDPA with its safe
    softmax) then attends to nothing, an attention output of 0, so the result is `c_proj`'s
    bias; the same here on every backend (tests/test_edges2_pooling.py). With
    `ensemble_on_valid_mask` (on for RN50) such queries get weight 0 in the ensemble either way.

    Args:
        attnpool: open_clip AttentionPool2d (q/k/v/c_proj, positional_embedding, num_heads).
        dense: (B, C, h, w) features.
        masks: (B, Q, H, W) mask logits.

    Returns:
        (B, Q, D) pooled embeddings.
    """
    batch, channels, height, width = dense.shape
    queries = masks.shape[1]
    heads = attnpool.num_heads
    masks = resize_masks(masks, (height, width))
    allowed = (masks > 0).flatten(2)  # (B, Q, hw)
    empty = ~allowed.any(dim=-1)  # (B, Q)
    # Attend everywhere first (finite on every SDPA backend), then zero the output below.
    allowed = allowed | empty[..., None]

    pos = attnpool.positional_embedding.to(dense.dtype)
    side = int(math.isqrt(pos.shape[0] - 1))
    spatial = pos[1:].T.reshape(1, channels, side, side)
    spatial = F.interpolate(spatial, size=(height, width), mode="bilinear", align_corners=False)
    spatial = spatial.reshape(channels, height * width).T  # (hw, C)

    tokens = dense.flatten(2).transpose(1, 2)  # (B, hw, C)
    key_value = tokens + spatial
    query = tokens.mean(dim=1, keepdim=True) + pos[:1]  # (B, 1, C)

    def split(x: Tensor) -> Tensor:  # (B, L, C) -> (B, heads, L, C/heads)
        return x.reshape(batch, x.shape[1], heads, channels // heads).transpose(1, 2)

    q = split(attnpool.q_proj(query)).expand(-1, -1, queries, -1)
    k = split(attnpool.k_proj(key_value))
    v = split(attnpool.v_proj(key_value))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
    out = out.transpose(1, 2).reshape(batch, queries, channels)
    out = out.masked_fill(empty[..., None], 0.0)
    return attnpool.c_proj(out)
