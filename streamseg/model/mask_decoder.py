"""Mask2Former's masked-attention transformer decoder with FC-CLIP's class head.

Per layer: masked cross-attention on one level (1/32, 1/16, 1/8 in turn) -> self-attention -> FFN,
all post-norm. After the initial queries and after every layer a prediction head gives mask
logits (einsum with the mask features) and class logits: the mask-pooled mask features, projected
(`_mask_pooling_proj`) and added to the query, go through `class_embed` into the CLIP space and
are compared with the text embeddings. Module names equal the official `sem_seg_head.predictor.*`.
Reference: facebookresearch/Mask2Former `mask2former_transformer_decoder.py` and
bytedance/fc-clip `fcclip_transformer_decoder.py`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamseg.model.classify import classification_logits
from streamseg.model.pixel_decoder import sine_position_embedding
from streamseg.model.pooling import mask_pool


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention; the query position embedding is added to queries and keys."""

    def __init__(self, *, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, query_pos: Tensor) -> Tensor:
        """tgt, query_pos: (Q, B, C) -> (Q, B, C)."""
        q = k = tgt + query_pos
        return self.norm(tgt + self.self_attn(q, k, value=tgt, need_weights=False)[0])


class CrossAttentionLayer(nn.Module):
    """Post-norm masked cross-attention from queries to one feature level."""

    def __init__(self, *, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, n_heads)
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self, tgt: Tensor, memory: Tensor, attn_mask: Tensor, pos: Tensor, query_pos: Tensor
    ) -> Tensor:
        """tgt: (Q, B, C); memory, pos: (HW, B, C); attn_mask: (B*heads, Q, HW) bool, True =
        blocked."""
        out = self.multihead_attn(
            tgt + query_pos, memory + pos, value=memory, attn_mask=attn_mask, need_weights=False
        )[0]
        return self.norm(tgt + out)


class FFNLayer(nn.Module):
    """Post-norm feed-forward block (ReLU)."""

    def __init__(self, *, d_model: int, ffn_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor) -> Tensor:
        return self.norm(tgt + self.linear2(F.relu(self.linear1(tgt))))


class MLP(nn.Module):
    """Linear layers with ReLU in between (named `layers.N`)."""

    def __init__(self, *, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs, strict=True))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskedAttentionDecoder(nn.Module):
    """FC-CLIP's transformer decoder (`sem_seg_head.predictor`).

    Args:
        in_channels: channels of the multi-scale maps (the pixel decoder's conv_dim).
        mask_dim: channels of the mask features.
        hidden_dim: query width.
        num_queries: number of queries.
        n_heads: attention heads.
        ffn_dim: FFN width.
        num_layers: decoder layers (predictions = num_layers + 1).
        embed_dim: CLIP embedding width (class_embed output).
    """

    num_levels = 3

    def __init__(
        self,
        *,
        in_channels: int,
        mask_dim: int,
        hidden_dim: int,
        num_queries: int,
        n_heads: int,
        ffn_dim: int,
        num_layers: int,
        embed_dim: int,
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(d_model=hidden_dim, n_heads=n_heads) for _ in range(num_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(d_model=hidden_dim, n_heads=n_heads) for _ in range(num_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(d_model=hidden_dim, ffn_dim=ffn_dim) for _ in range(num_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(self.num_levels, hidden_dim)
        # Mask2Former projects the levels only when widths differ (no parameters otherwise).
        self.input_proj = nn.ModuleList(
            nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
            if in_channels != hidden_dim
            else nn.Identity()
            for _ in range(self.num_levels)
        )
        self.mask_embed = MLP(
            in_dim=hidden_dim, hidden_dim=hidden_dim, out_dim=mask_dim, num_layers=3
        )
        self._mask_pooling_proj = nn.Sequential(
            nn.LayerNorm(mask_dim), nn.Linear(mask_dim, hidden_dim)
        )
        self.class_embed = MLP(
            in_dim=hidden_dim, hidden_dim=hidden_dim, out_dim=embed_dim, num_layers=3
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        for layers in (
            self.transformer_self_attention_layers,
            self.transformer_cross_attention_layers,
            self.transformer_ffn_layers,
        ):
            for parameter in layers.parameters():
                if parameter.dim() > 1:
                    nn.init.xavier_uniform_(parameter)

    def forward(
        self,
        features: list[Tensor],
        mask_features: Tensor,
        text_embeddings: Tensor,
        class_index: Tensor,
        num_classes: int,
        void_embedding: Tensor,
    ) -> list[tuple[Tensor, Tensor]]:
        """
        Args:
            features: 3 maps (B, C, h_l, w_l) from low to high resolution.
            mask_features: (B, mask_dim, H/4, W/4).
            text_embeddings: (S, D) normalized synonym embeddings; class_index (S,).
            num_classes: C.
            void_embedding: (1, D).

        Returns:
            num_layers + 1 pairs (class logits (B, Q, C + 1), mask logits (B, Q, H/4, W/4)),
            the last one final.
        """
        batch = mask_features.shape[0]
        srcs, poses, sizes = [], [], []
        for level, feature in enumerate(features):
            height, width = feature.shape[-2:]
            sizes.append((height, width))
            pos = sine_position_embedding(
                batch, height, width, self.hidden_dim // 2, feature.device
            )
            poses.append(pos.flatten(2).permute(2, 0, 1))
            src = (
                self.input_proj[level](feature).flatten(2)
                + self.level_embed.weight[level][None, :, None]
            )
            srcs.append(src.permute(2, 0, 1))  # (HW, B, C)
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, batch, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, batch, 1)

        def head(out: Tensor, level: int) -> tuple[Tensor, Tensor, Tensor]:
            return self.predict(
                out,
                mask_features,
                sizes[level],
                text_embeddings,
                class_index,
                num_classes,
                void_embedding,
            )

        logits, masks, attn_mask = head(output, 0)
        predictions = [(logits, masks)]
        for i in range(self.num_layers):
            level = i % self.num_levels
            # A query whose mask blocks every position would get NaN: let it see everything.
            # masked_fill, not bool indexing: the same rows, with no data-dependent index
            # (tests/test_forward_host_reads.py).
            attn_mask.masked_fill_(attn_mask.all(dim=-1, keepdim=True), False)
            output = self.transformer_cross_attention_layers[i](
                output, srcs[level], attn_mask, poses[level], query_pos
            )
            output = self.transformer_self_attention_layers[i](output, query_pos)
            output = self.transformer_ffn_layers[i](output)
            logits, masks, attn_mask = head(output, (i + 1) % self.num_levels)
            predictions.append((logits, masks))
        return predictions

    def predict(
        self,
        output: Tensor,
        mask_features: Tensor,
        target_size: tuple[int, int],
        text_embeddings: Tensor,
        class_index: Tensor,
        num_classes: int,
        void_embedding: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Prediction head: class logits (B, Q, C+1), mask logits (B, Q, H/4, W/4) and the next
        layer's attention mask (B*heads, Q, h*w) bool (True = blocked: sigmoid < 0.5)."""
        decoder_output = self.decoder_norm(output).transpose(0, 1)  # (B, Q, C)
        mask_embed = self.mask_embed(decoder_output)
        masks = torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)
        pooled = self._mask_pooling_proj(mask_pool(mask_features, masks))
        class_embed = self.class_embed(pooled + decoder_output)
        logits = classification_logits(
            class_embed, text_embeddings, class_index, num_classes, void_embedding, self.logit_scale
        )
        attn_mask = F.interpolate(masks, size=target_size, mode="bilinear", align_corners=False)
        attn_mask = attn_mask.sigmoid().flatten(2).unsqueeze(1).repeat(1, self.n_heads, 1, 1)
        attn_mask = (attn_mask.flatten(0, 1) < 0.5).detach()
        return logits, masks, attn_mask
