"""Multi-scale deformable attention (Deformable DETR, Zhu et al., ICLR 2021) in pure PyTorch.

The sampling is bilinear `grid_sample` (align_corners False, zero padding) per level, as the
PyTorch reference path `ms_deform_attn_core_pytorch` of fundamentalvision/Deformable-DETR; no
compiled extension. Parameter names equal Mask2Former's `MSDeformAttn` (sampling_offsets,
attention_weights, value_proj, output_proj).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ms_deform_attn_sample(
    value: Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Weighted sum of bilinearly sampled values.

    Args:
        value: (N, S, M, D) values of all levels flattened (S = sum of H_l * W_l), M heads.
        spatial_shapes: L pairs (H_l, W_l), in the order of `value`.
        sampling_locations: (N, Lq, M, L, P, 2) in [0, 1], (x, y), pixel-centre convention.
        attention_weights: (N, Lq, M, L, P), softmax-normalized over L * P.

    Returns:
        (N, Lq, M * D).
    """
    batch, _, heads, dim = value.shape
    _, num_queries, _, levels, points, _ = sampling_locations.shape
    values = value.split([h * w for h, w in spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    # (N, Lq, M, L, P) -> (N*M, 1, Lq, L, P)
    weights = attention_weights.transpose(1, 2).reshape(
        batch * heads, 1, num_queries, levels, points
    )
    out = None
    for level, (height, width) in enumerate(spatial_shapes):
        # (N, HW, M, D) -> (N*M, D, H, W). Contiguous: with one image the reshape is a strided
        # view, and the CPU grid_sample kernel took ~4x longer on it (0.45-0.50 against
        # 0.11 ms a call, default model at 1080p; docs/BENCHMARKS.md section 11).
        value_l = (
            values[level]
            .flatten(2)
            .transpose(1, 2)
            .reshape(batch * heads, dim, height, width)
            .contiguous()
        )
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1).contiguous()
        sampled = F.grid_sample(
            value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (N*M, D, Lq, P)
        # Accumulate level by level (no stack of all levels: less memory, same sum).
        term = (sampled * weights[..., level, :]).sum(-1)  # (N*M, D, Lq)
        out = term if out is None else out + term
    return out.view(batch, heads * dim, num_queries).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Deformable attention over L feature levels, P sampling points per head and level.

    Args:
        d_model: channels.
        n_levels: number of feature levels.
        n_heads: attention heads (d_model divisible by it).
        n_points: sampling points per head and level.
    """

    def __init__(self, *, d_model: int, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} not divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = (
            d_model,
            n_levels,
            n_heads,
            n_points,
        )
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Deformable DETR's init: offsets start on a ring of directions, one per head.
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        value_input: Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> Tensor:
        """
        Args:
            query: (N, Lq, C) queries (with position embedding added).
            reference_points: (N, Lq, L, 2) normalized (x, y) in [0, 1].
            value_input: (N, S, C) flattened features of all levels.
            spatial_shapes: L pairs (H_l, W_l).

        Returns:
            (N, Lq, C).
        """
        batch, num_queries, _ = query.shape
        value = self.value_proj(value_input).view(
            batch, value_input.shape[1], self.n_heads, self.d_model // self.n_heads
        )
        offsets = self.sampling_offsets(query).view(
            batch, num_queries, self.n_heads, self.n_levels, self.n_points, 2
        )
        weights = self.attention_weights(query).view(
            batch, num_queries, self.n_heads, self.n_levels * self.n_points
        )
        weights = weights.softmax(-1).view(
            batch, num_queries, self.n_heads, self.n_levels, self.n_points
        )
        # Offsets are in pixels of each level: normalize by (W_l, H_l).
        normalizer = level_sizes(spatial_shapes, query.dtype, query.device)
        locations = (
            reference_points[:, :, None, :, None, :]
            + offsets / normalizer[None, None, None, :, None, :]
        )
        out = ms_deform_attn_sample(value, spatial_shapes, locations, weights)
        return self.output_proj(out)


def level_sizes(
    spatial_shapes: list[tuple[int, int]], dtype: torch.dtype, device: torch.device
) -> Tensor:
    """(L, 2) the (W_l, H_l) of each level, written on `device` by fills: `torch.tensor(data,
    device=...)` would copy from the host with a blocking copy, which waits for everything
    queued on an accelerator (pytorch/pytorch#120996) once per encoder layer."""
    sizes = torch.empty((len(spatial_shapes), 2), dtype=dtype, device=device)
    for level, (height, width) in enumerate(spatial_shapes):
        sizes[level, 0] = width
        sizes[level, 1] = height
    return sizes
