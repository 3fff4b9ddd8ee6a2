"""FC-CLIP assembled (Yu et al., "Convolutions Die Hard", NeurIPS 2023): frozen CLIP backbone,
pixel decoder, masked-attention decoder with the in-vocabulary class head, the out-of-vocabulary
branch on the frozen dense CLIP features, and the learned void embedding.

State-dict names equal the official ones (`backbone.clip_model.*`, `sem_seg_head.pixel_decoder.*`,
`sem_seg_head.predictor.*`, `void_embedding.weight`); see checkpoint.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from streamseg.model.backbone import CLIPBackbone
from streamseg.model.classify import classification_logits
from streamseg.model.config import FCCLIPConfig
from streamseg.model.ensemble import ensemble_probabilities
from streamseg.model.mask_decoder import MaskedAttentionDecoder
from streamseg.model.pixel_decoder import MSDeformAttnPixelDecoder
from streamseg.model.pooling import resize_masks

if TYPE_CHECKING:  # pragma: no cover
    from streamseg.model.text_classifier import TextClassifier


class SemSegHead(nn.Module):
    """Container that gives the official names `sem_seg_head.pixel_decoder` / `.predictor`."""

    def __init__(
        self, *, pixel_decoder: MSDeformAttnPixelDecoder, predictor: MaskedAttentionDecoder
    ) -> None:
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor


class FCCLIP(nn.Module):
    """The FC-CLIP network.

    Args:
        backbone: the frozen CLIP.
        sem_seg_head: pixel decoder + transformer decoder.
        embed_dim: CLIP embedding width (size of the void embedding).
        pixel_mean, pixel_std: RGB normalization in 0-255 units (kept as non-persistent buffers).
    """

    def __init__(
        self,
        *,
        backbone: CLIPBackbone,
        sem_seg_head: SemSegHead,
        embed_dim: int,
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.void_embedding = nn.Embedding(1, embed_dim)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(3, 1, 1), persistent=False)

    def forward(self, images: Tensor, text: TextClassifier) -> dict[str, Any]:
        """Training and inference forward (no ensemble, no post-processing).

        Args:
            images: (B, 3, H, W) normalized, zero-padded to a multiple of 32.
            text: the text classifier (embeddings (S, D) normalized, class_index (S,),
                num_classes C), on any device.

        Returns:
            "pred_logits": (B, Q, C + 1) in-vocabulary logits (last = void);
            "pred_masks": (B, Q, H/4, W/4) mask logits;
            "aux_outputs": [{"pred_logits", "pred_masks"}] of the earlier predictions;
            "clip_dense": (B, Cd, H/32, W/32) dense CLIP features.
        """
        features = self.backbone(images)
        mask_features, multi_scale = self.sem_seg_head.pixel_decoder(features)
        predictions = self.sem_seg_head.predictor(
            multi_scale,
            mask_features,
            text.embeddings.to(mask_features),
            text.class_index.to(mask_features.device),
            int(text.num_classes),
            self.void_embedding.weight,
        )
        logits, masks = predictions[-1]
        return {
            "pred_logits": logits,
            "pred_masks": masks,
            "aux_outputs": [{"pred_logits": lg, "pred_masks": m} for lg, m in predictions[:-1]],
            "clip_dense": features["clip_dense"],
        }

    def normalize(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) RGB 0-255 (any dtype) -> normalized float32."""
        return (images.float() - self.pixel_mean) / self.pixel_std

    @torch.no_grad()
    def classify_out_of_vocab(
        self, clip_dense: Tensor, masks: Tensor, text: TextClassifier
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Out-of-vocabulary logits from the frozen CLIP.

        Args:
            clip_dense: (B, Cd, h, w) dense CLIP features (stride 32).
            masks: (B, Q, H, W) mask logits (resized bilinearly to (h, w)).
            text: the text classifier.

        Returns:
            logits (B, Q, C + 1) scaled with the CLIP's own logit_scale (last = void),
            embeddings (B, Q, D) the region CLIP embeddings (not normalized),
            valid (B, Q) bool: the resized mask has a positive pixel.
        """
        masks = resize_masks(masks, tuple(clip_dense.shape[-2:]))
        embeddings = self.backbone.pool_masks(clip_dense, masks)
        logits = classification_logits(
            embeddings,
            text.embeddings.to(embeddings),
            text.class_index.to(embeddings.device),
            int(text.num_classes),
            self.void_embedding.weight.to(embeddings),
            self.backbone.clip_model.logit_scale,
        )
        valid = (masks > 0).flatten(2).any(-1)
        return logits, embeddings, valid

    @torch.no_grad()
    def predict(
        self,
        images: Tensor,
        text: TextClassifier,
        seen: Tensor,
        alpha: float,
        beta: float,
        ensemble_on_valid_mask: bool,
    ) -> dict[str, Tensor]:
        """Inference: forward + out-of-vocabulary branch + ensemble.

        Args:
            images: (B, 3, H, W) normalized, padded to a multiple of 32.
            text: the text classifier; seen: (C,) bool.
            alpha, beta, ensemble_on_valid_mask: the ensemble settings.

        Returns:
            "in_vocab_logits" (B, Q, C+1), "out_vocab_logits" (B, Q, C+1),
            "class_probs" (B, Q, C+1) ensembled probabilities (last = void),
            "mask_logits" (B, Q, H/4, W/4), "embeddings" (B, Q, D) L2-normalized region
            CLIP embeddings, "valid" (B, Q) bool.
        """
        outputs = self.forward(images, text)
        masks = outputs["pred_masks"]
        out_logits, embeddings, valid = self.classify_out_of_vocab(
            outputs["clip_dense"], masks, text
        )
        probs = ensemble_probabilities(
            outputs["pred_logits"],
            out_logits,
            seen,
            alpha,
            beta,
            valid if ensemble_on_valid_mask else None,
        )
        return {
            "in_vocab_logits": outputs["pred_logits"],
            "out_vocab_logits": out_logits,
            "class_probs": probs,
            "mask_logits": masks,
            "embeddings": nn.functional.normalize(embeddings, dim=-1),
            "valid": valid,
        }


def build_model(config: FCCLIPConfig) -> FCCLIP:
    """FC-CLIP with random weights for `config` (torch's global RNG decides the init)."""
    backbone = CLIPBackbone(clip_model=config.clip_model, clip_config=config.clip_config)
    pixel_decoder = MSDeformAttnPixelDecoder(
        in_channels=backbone.channels,
        conv_dim=config.conv_dim,
        mask_dim=config.mask_dim,
        num_layers=config.encoder_layers,
        ffn_dim=config.encoder_ffn_dim,
        n_heads=config.encoder_heads,
        n_points=config.encoder_points,
        norm_groups=config.norm_groups,
    )
    predictor = MaskedAttentionDecoder(
        in_channels=config.conv_dim,
        mask_dim=config.mask_dim,
        hidden_dim=config.hidden_dim,
        num_queries=config.num_queries,
        n_heads=config.decoder_heads,
        ffn_dim=config.decoder_ffn_dim,
        num_layers=config.decoder_layers,
        embed_dim=backbone.embed_dim,
    )
    model = FCCLIP(
        backbone=backbone,
        sem_seg_head=SemSegHead(pixel_decoder=pixel_decoder, predictor=predictor),
        embed_dim=backbone.embed_dim,
        pixel_mean=config.pixel_mean,
        pixel_std=config.pixel_std,
    )
    model.config = config
    return model
