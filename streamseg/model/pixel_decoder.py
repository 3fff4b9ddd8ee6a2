"""Mask2Former's multi-scale deformable-attention pixel decoder (Cheng et al., CVPR 2022).

Three levels (strides 32, 16, 8) go through a post-norm MSDeformAttn encoder; an FPN step adds
stride 4. Module names equal the official state dict (`sem_seg_head.pixel_decoder.*`): input_proj,
transformer.level_embed, transformer.encoder.layers.N.*, adapter_1, layer_1, mask_features.
Reference: facebookresearch/Mask2Former `msdeformattn.py`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamseg.model.ms_deform_attn import MSDeformAttn


def sine_position_embedding(
    batch: int, height: int, width: int, num_feats: int, device: torch.device | str
) -> Tensor:
    """DETR's normalized sine position embedding of a map without padding mask.

    Positions are 1..H (and 1..W) divided by the last one (+1e-6), scaled by 2*pi; frequencies
    10000^(2*floor(i/2)/num_feats); sin on even, cos on odd channels; y channels first.

    Returns:
        (B, 2 * num_feats, H, W) float32.
    """
    scale = 2 * math.pi
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    y = y / (y[-1] + 1e-6) * scale
    x = x / (x[-1] + 1e-6) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = 10000.0 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)

    def encode(positions: Tensor) -> Tensor:  # (L,) -> (L, num_feats)
        angles = positions[:, None] / dim_t
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(height, width, num_feats)
    pos_x = encode(x)[None, :, :].expand(height, width, num_feats)
    pos = torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)
    return pos.unsqueeze(0).expand(batch, -1, -1, -1)


class ConvNorm(nn.Conv2d):
    """Conv2d with a GroupNorm and optional ReLU, named like detectron2's Conv2d (`.norm`)."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        groups_norm: int,
        relu: bool,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
        )
        self.norm = nn.GroupNorm(groups_norm, out_channels)
        self.relu = relu
        nn.init.kaiming_uniform_(self.weight, a=1)  # detectron2 c2_xavier_fill

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


class EncoderLayer(nn.Module):
    """Post-norm layer: deformable self-attention + residual + LN, FFN (ReLU) + residual + LN."""

    def __init__(self, *, d_model: int, ffn_dim: int, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(
            d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: Tensor,
        pos: Tensor,
        reference_points: Tensor,
        spatial_shapes: list[tuple[int, int]],
    ) -> Tensor:
        src = self.norm1(src + self.self_attn(src + pos, reference_points, src, spatial_shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class DeformEncoder(nn.Module):
    """Stack of `EncoderLayer`s (named `encoder.layers.N`)."""

    def __init__(self, *, num_layers: int, **layer_kwargs: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(**layer_kwargs) for _ in range(num_layers))


class DeformTransformer(nn.Module):
    """Encoder-only deformable transformer with a learned level embedding (`level_embed`)."""

    def __init__(
        self,
        *,
        d_model: int,
        ffn_dim: int,
        num_layers: int,
        n_levels: int,
        n_heads: int,
        n_points: int,
    ) -> None:
        super().__init__()
        self.level_embed = nn.Parameter(torch.empty(n_levels, d_model))
        self.encoder = DeformEncoder(
            num_layers=num_layers,
            d_model=d_model,
            ffn_dim=ffn_dim,
            n_levels=n_levels,
            n_heads=n_heads,
            n_points=n_points,
        )
        for parameter in self.encoder.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
        for layer in self.encoder.layers:
            layer.self_attn.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, srcs: list[Tensor], pos_embeds: list[Tensor]) -> Tensor:
        """
        Args:
            srcs: L maps (B, C, H_l, W_l); pos_embeds: the same shapes.

        Returns:
            (B, sum H_l*W_l, C) encoded tokens, levels in input order.
        """
        shapes = [(int(s.shape[-2]), int(s.shape[-1])) for s in srcs]
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], dim=1)
        pos = torch.cat(
            [
                p.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1)
                for level, p in enumerate(pos_embeds)
            ],
            dim=1,
        )
        reference = reference_points(shapes, src.device, src.dtype)  # (S, 2)
        # Every query gets the same normalized point on every level (no padding: valid ratio 1).
        reference = reference[None, :, None, :].expand(src.shape[0], -1, len(shapes), -1)
        for layer in self.encoder.layers:
            src = layer(src, pos, reference, shapes)
        return src


def reference_points(
    shapes: list[tuple[int, int]], device: torch.device | str, dtype: torch.dtype
) -> Tensor:
    """Normalized pixel centres ((x + 0.5) / W, (y + 0.5) / H) of all levels: (S, 2) as (x, y)."""
    points = []
    for height, width in shapes:
        ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), -1))
    return torch.cat(points, 0)


class MSDeformAttnPixelDecoder(nn.Module):
    """Pixel decoder: deformable encoder on res5/res4/res3, FPN to res2, mask features.

    Args:
        in_channels: channels of res2, res3, res4, res5.
        conv_dim: channels of the decoder.
        mask_dim: channels of the mask features.
        num_layers, ffn_dim, n_heads, n_points: deformable encoder settings.
        norm_groups: GroupNorm groups.
    """

    def __init__(
        self,
        *,
        in_channels: list[int],
        conv_dim: int,
        mask_dim: int,
        num_layers: int,
        ffn_dim: int,
        n_heads: int,
        n_points: int,
        norm_groups: int,
    ) -> None:
        super().__init__()
        # Encoder levels from low to high resolution: res5, res4, res3.
        self.input_proj = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c, conv_dim, kernel_size=1), nn.GroupNorm(norm_groups, conv_dim)
            )
            for c in in_channels[1:][::-1]
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        self.transformer = DeformTransformer(
            d_model=conv_dim,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            n_levels=3,
            n_heads=n_heads,
            n_points=n_points,
        )
        self.conv_dim = conv_dim
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.constant_(self.mask_features.bias, 0)
        self.adapter_1 = ConvNorm(
            in_channels=in_channels[0],
            out_channels=conv_dim,
            kernel_size=1,
            groups_norm=norm_groups,
            relu=False,
        )
        self.layer_1 = ConvNorm(
            in_channels=conv_dim,
            out_channels=conv_dim,
            kernel_size=3,
            groups_norm=norm_groups,
            relu=True,
        )

    def forward(self, features: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        """
        Args:
            features: "res2".."res5" maps (B, C_i, H/4..H/32, W/4..W/32).

        Returns:
            mask_features (B, mask_dim, H/4, W/4) and the decoder's multi-scale maps
            [(B, conv_dim, H/32, W/32), (.., H/16, ..), (.., H/8, ..)].
        """
        # Full precision even under AMP, as Mask2Former (autocast disabled for this module).
        with torch.autocast(device_type=features["res2"].device.type, enabled=False):
            return self._forward(features)

    def _forward(self, features: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        names = ["res5", "res4", "res3"]
        srcs = [proj(features[n].float()) for proj, n in zip(self.input_proj, names, strict=True)]
        batch = srcs[0].shape[0]
        pos = [
            sine_position_embedding(batch, s.shape[-2], s.shape[-1], self.conv_dim // 2, s.device)
            for s in srcs
        ]
        tokens = self.transformer(srcs, pos)
        maps = []
        start = 0
        for s in srcs:
            height, width = s.shape[-2:]
            chunk = tokens[:, start : start + height * width]
            maps.append(chunk.transpose(1, 2).reshape(batch, -1, height, width))
            start += height * width
        lateral = self.adapter_1(features["res2"].float())
        top_down = F.interpolate(
            maps[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False
        )
        finest = self.layer_1(lateral + top_down)
        return self.mask_features(finest), maps
