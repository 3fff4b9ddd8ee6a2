"""Mask pooling: average a feature map inside each (binarized) mask.

FC-CLIP uses it twice: in the class head (on the pixel decoder's mask features) and in the
out-of-vocabulary branch (on the frozen CLIP's dense features). Reference: bytedance/fc-clip,
`MaskPooling` in `fcclip/modeling/transformer_decoder/fcclip_transformer_decoder.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def resize_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly resize mask logits (align_corners False, as the official code).

    Args:
        masks: (B, Q, H, W) mask logits.
        size: target (h, w).

    Returns:
        (B, Q, h, w) resized logits (the input itself when already that size).
    """
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.interpolate(masks, size=size, mode="bilinear", align_corners=False)


def mask_pool(features: Tensor, masks: Tensor) -> Tensor:
    """Average of `features` over the pixels where the mask logit is positive.

    Args:
        features: (B, C, H, W).
        masks: (B, Q, H', W') mask logits; resized bilinearly to (H, W) first if needed.

    Returns:
        (B, Q, C) pooled features; zeros for an empty mask (denominator + 1e-8 as officially).
    """
    masks = resize_masks(masks, tuple(features.shape[-2:]))
    binary = (masks.detach() > 0).to(features.dtype)
    denominator = binary.sum(dim=(-1, -2), keepdim=True) + 1e-8
    return torch.einsum("bchw,bqhw->bqc", features, binary / denominator)
