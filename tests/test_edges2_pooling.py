"""RN50's masked attention pool (streamseg/model/backbone.py: masked_attention_pool) equals the
official FC-CLIP call, `F.multi_head_attention_forward` with a boolean mask that blocks the
keys outside each mask (bytedance/fc-clip `visual_prediction_forward_resnet`), under this
torch, including a query whose mask is empty and so blocks every key."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import AttentionPool2d

from streamseg.model.backbone import masked_attention_pool


def official_pool(attnpool: AttentionPool2d, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The official computation, written from its description: (HW, B, C) keys with the
    resized spatial positional embedding, one query per mask (mean + positional_embedding[0]),
    keys blocked where the mask is not positive, need_weights=False."""
    batch, channel, height, width = x.shape
    num_masks = masks.shape[1]
    pos = attnpool.positional_embedding.to(x.dtype)
    side = int(math.sqrt(pos.shape[0] - 1))
    spatial = pos[1:, None, :].permute(1, 2, 0).reshape(1, channel, side, side)
    spatial = F.interpolate(spatial, size=(height, width), mode="bilinear", align_corners=False)
    spatial = spatial.permute(2, 3, 0, 1).reshape(height * width, 1, channel)
    tokens = x.reshape(batch, channel, height * width).permute(2, 0, 1)
    key_value = tokens + spatial
    binary = (masks.reshape(batch, num_masks, height * width) > 0).to(masks.dtype)
    query = (tokens.mean(0, keepdim=True) + pos[:1, None, :]).repeat_interleave(num_masks, dim=0)
    blocked = (binary < 0.5)[:, None].expand(-1, attnpool.num_heads, -1, -1)
    blocked = blocked.reshape(batch * attnpool.num_heads, num_masks, height * width)
    out = F.multi_head_attention_forward(
        query=query, key=key_value, value=key_value, embed_dim_to_check=channel,
        num_heads=attnpool.num_heads, q_proj_weight=attnpool.q_proj.weight,
        k_proj_weight=attnpool.k_proj.weight, v_proj_weight=attnpool.v_proj.weight,
        in_proj_weight=None,
        in_proj_bias=torch.cat([attnpool.q_proj.bias, attnpool.k_proj.bias, attnpool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=attnpool.c_proj.weight, out_proj_bias=attnpool.c_proj.bias,
        use_separate_proj_weight=True, training=False, need_weights=False, attn_mask=blocked,
    )[0]  # fmt: skip
    return out.permute(1, 0, 2)


@torch.no_grad()
def test_empty_masks_pool_as_the_official_call() -> None:
    torch.manual_seed(0)
    attnpool = AttentionPool2d(spacial_dim=4, embed_dim=32, num_heads=4, output_dim=16).eval()
    dense = torch.randn(2, 32, 5, 6)
    masks = torch.randn(2, 3, 5, 6)
    masks[0, 1] = -1.0  # empty: blocks every key
    masks[1, 2] = -1.0

    ours = masked_attention_pool(attnpool, dense, masks)
    official = official_pool(attnpool, dense, masks)

    # what the official call gives an empty mask under this torch: the output projection's
    # bias (an attention output of 0), finite; this test fails if a torch returns otherwise
    assert torch.isfinite(official).all()
    assert torch.allclose(official[0, 1], attnpool.c_proj.bias, atol=1e-6)
    assert torch.allclose(ours, official, atol=1e-5)
    assert torch.equal(ours[0, 1], attnpool.c_proj.bias)
    # the non-empty queries are unchanged by the empty ones
    assert not torch.allclose(ours[0, 0], attnpool.c_proj.bias)


@pytest.mark.parametrize("seed", [1, 2])
@torch.no_grad()
def test_non_empty_masks_pool_as_the_official_call(seed: int) -> None:
    torch.manual_seed(seed)
    attnpool = AttentionPool2d(spacial_dim=7, embed_dim=64, num_heads=8, output_dim=32).eval()
    dense = torch.randn(1, 64, 7, 7)
    masks = torch.randn(1, 5, 14, 14)  # resized to the features' size first, as officially
    official = official_pool(
        attnpool, dense, F.interpolate(masks, size=(7, 7), mode="bilinear", align_corners=False)
    )
    assert torch.allclose(masked_attention_pool(attnpool, dense, masks), official, atol=1e-5)
