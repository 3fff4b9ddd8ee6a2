"""Point sampling on masks (PointRend, Kirillov et al. CVPR 2020, as Mask2Former uses it).

Coordinates are in [0, 1] x [0, 1] of the (padded) image, (x, y) order, sampled bilinearly with
align_corners=False, so the same coordinates address a stride-4 prediction and a full-size
target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def point_sample(values: Tensor, coords: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Bilinear samples of maps at points.

    Args:
        values: (N, C, H, W) float.
        coords: (N, P, 2) in [0, 1], (x, y).
        padding_mode: outside the maps ("zeros" as officially; "border" for ignore maps, so
            that an ignored edge stays ignored up to the image border).

    Returns:
        (N, C, P).
    """
    grid = (2.0 * coords - 1.0)[:, :, None, :]  # (N, P, 1, 2)
    return F.grid_sample(
        values, grid.to(values.dtype), padding_mode=padding_mode, align_corners=False
    )[..., 0]


def uncertain_points(
    mask_logits: Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_ratio: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Importance sampling by uncertainty (-|logit|): draw `oversample_ratio * num_points`
    random points, keep the `importance_ratio * num_points` most uncertain, fill the rest with
    new random points (Mask2Former `get_uncertain_point_coords_with_randomness`).

    Args:
        mask_logits: (N, 1, H, W).

    Returns:
        (N, num_points, 2) coordinates in [0, 1].
    """
    n = mask_logits.shape[0]
    device = mask_logits.device
    sampled = int(num_points * oversample_ratio)
    coords = torch.rand(n, sampled, 2, device=device, generator=generator)
    logits = point_sample(mask_logits, coords)  # (N, 1, S)
    uncertainty = -logits.abs()[:, 0]  # (N, S)
    important = int(importance_ratio * num_points)
    random_count = num_points - important
    index = torch.topk(uncertainty, k=important, dim=1).indices  # (N, K)
    chosen = torch.gather(coords, 1, index[..., None].expand(-1, -1, 2))
    if random_count > 0:
        extra = torch.rand(n, random_count, 2, device=device, generator=generator)
        chosen = torch.cat([chosen, extra], dim=1)
    return chosen
