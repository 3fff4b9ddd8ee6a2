"""Parameter counts of the three official presets equal the official model's (FCCLIP_FACTS.md):
pixel decoder, transformer decoder, void embedding (fast: heads built alone from the backbone
widths), and the frozen CLIP (slow: builds the full open_clip models)."""

from __future__ import annotations

import pytest

from streamseg.model.backbone import CLIPBackbone
from streamseg.model.config import PRESETS
from streamseg.model.fcclip import build_model
from streamseg.model.mask_decoder import MaskedAttentionDecoder
from streamseg.model.pixel_decoder import MSDeformAttnPixelDecoder

# preset: (backbone channels res2..res5, embed dim, pixel decoder, transformer decoder, CLIP)
OFFICIAL = {
    "fcclip-convnext-large": ([192, 384, 768, 1536], 768, 5_790_144, 14_930_689, 351_772_609),
    "fcclip-convnext-base": ([128, 256, 512, 1024], 512, 5_544_384, 14_864_897, 151_518_849),
    "fcclip-r50": ([256, 512, 1024, 2048], 1024, 6_035_904, 14_996_481, 102_007_137),
}


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("preset", sorted(OFFICIAL))
def test_head_parameter_counts(preset: str) -> None:
    channels, embed, pixel_count, decoder_count, _ = OFFICIAL[preset]
    c = PRESETS[preset]
    pixel = MSDeformAttnPixelDecoder(
        in_channels=channels,
        conv_dim=c.conv_dim,
        mask_dim=c.mask_dim,
        num_layers=c.encoder_layers,
        ffn_dim=c.encoder_ffn_dim,
        n_heads=c.encoder_heads,
        n_points=c.encoder_points,
        norm_groups=c.norm_groups,
    )
    decoder = MaskedAttentionDecoder(
        in_channels=c.conv_dim,
        mask_dim=c.mask_dim,
        hidden_dim=c.hidden_dim,
        num_queries=c.num_queries,
        n_heads=c.decoder_heads,
        ffn_dim=c.decoder_ffn_dim,
        num_layers=c.decoder_layers,
        embed_dim=embed,
    )
    assert count(pixel) == pixel_count
    assert count(decoder) == decoder_count


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(OFFICIAL))
def test_full_model_parameter_counts(preset: str) -> None:
    channels, embed, pixel_count, decoder_count, clip_count = OFFICIAL[preset]
    model = build_model(PRESETS[preset])
    assert model.backbone.channels == channels and model.backbone.embed_dim == embed
    assert count(model.backbone) == clip_count
    assert count(model.sem_seg_head.pixel_decoder) == pixel_count
    assert count(model.sem_seg_head.predictor) == decoder_count
    assert count(model.void_embedding) == embed


def test_tiny_backbones_are_the_right_family() -> None:
    for name, kind in (("tiny-convnext", "convnext"), ("tiny-r50", "resnet")):
        c = PRESETS[name]
        assert CLIPBackbone(clip_model=c.clip_model, clip_config=c.clip_config).kind == kind
