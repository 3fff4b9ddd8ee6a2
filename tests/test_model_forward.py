"""Tiny-config FC-CLIP forward passes: shapes, no NaNs, frozen backbone, CLIP head exactness."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from streamseg.model.backbone import masked_attention_pool
from streamseg.model.config import PRESETS
from streamseg.model.fcclip import build_model


def random_text(num_classes: int, dim: int, seed: int = 0) -> SimpleNamespace:
    generator = torch.Generator().manual_seed(seed)
    index = torch.arange(num_classes).repeat_interleave(2)  # two synonyms per class
    embeddings = F.normalize(torch.randn(len(index), dim, generator=generator), dim=-1)
    return SimpleNamespace(embeddings=embeddings, class_index=index, num_classes=num_classes)


@pytest.fixture(scope="module", params=["tiny-convnext", "tiny-r50"])
def tiny(request):
    torch.manual_seed(0)
    return build_model(PRESETS[request.param]).eval()


def test_forward_shapes_and_finite(tiny) -> None:
    config = tiny.config
    images = torch.randn(2, 3, 64, 96)
    out = tiny(images, random_text(5, tiny.backbone.embed_dim))
    assert out["pred_logits"].shape == (2, config.num_queries, 6)
    assert out["pred_masks"].shape == (2, config.num_queries, 16, 24)
    assert len(out["aux_outputs"]) == config.decoder_layers
    assert out["clip_dense"].shape == (2, tiny.backbone.channels[-1], 2, 3)
    for value in [out["pred_logits"], out["pred_masks"], out["clip_dense"]]:
        assert torch.isfinite(value).all()
    for aux in out["aux_outputs"]:
        assert aux["pred_logits"].shape == out["pred_logits"].shape
        assert torch.isfinite(aux["pred_masks"]).all()


def test_predict_probabilities(tiny) -> None:
    text = random_text(4, tiny.backbone.embed_dim, seed=1)
    seen = torch.tensor([True, False, True, False])
    out = tiny.predict(torch.randn(1, 3, 64, 64), text, seen, 0.4, 0.8, True)
    probs = out["class_probs"]
    assert probs.shape == (1, tiny.config.num_queries, 5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(1, tiny.config.num_queries))
    torch.testing.assert_close(
        out["embeddings"].norm(dim=-1), torch.ones(1, tiny.config.num_queries)
    )


def test_backbone_frozen_and_trained_parts_get_gradients(tiny) -> None:
    tiny.train()
    assert not tiny.backbone.training and not tiny.backbone.clip_model.training
    assert all(not p.requires_grad for p in tiny.backbone.parameters())
    out = tiny(torch.randn(1, 3, 64, 64), random_text(3, tiny.backbone.embed_dim))
    (out["pred_logits"].sum() + out["pred_masks"].mean()).backward()
    predictor = tiny.sem_seg_head.predictor
    assert predictor.class_embed.layers[0].weight.grad is not None
    assert tiny.sem_seg_head.pixel_decoder.input_proj[0][0].weight.grad is not None
    assert tiny.void_embedding.weight.grad is not None
    tiny.zero_grad(set_to_none=True)
    tiny.eval()


def test_convnext_full_mask_pooling_equals_clip_image_embedding() -> None:
    torch.manual_seed(0)
    model = build_model(PRESETS["tiny-convnext"]).eval()
    images = torch.randn(2, 3, 64, 64)
    dense = model.backbone(images)["clip_dense"]
    pooled = model.backbone.pool_masks(dense, torch.ones(2, 1, 16, 16))
    with torch.no_grad():
        want = model.backbone.clip_model.encode_image(images)
    torch.testing.assert_close(pooled[:, 0], want, rtol=1e-4, atol=1e-5)


def test_resnet_masked_attention_pool_single_position() -> None:
    torch.manual_seed(0)
    model = build_model(PRESETS["tiny-r50"]).eval()
    attnpool = model.backbone.clip_model.visual.attnpool
    dense = torch.randn(1, attnpool.k_proj.in_features, 2, 3)
    masks = torch.full((1, 2, 2, 3), -1.0)
    masks[0, 0, 1, 2] = 1.0  # query 0 sees one position; query 1 sees nothing
    with torch.no_grad():
        out = masked_attention_pool(attnpool, dense, masks)
        pos = attnpool.positional_embedding
        side = int((pos.shape[0] - 1) ** 0.5)
        spatial = pos[1:].T.reshape(1, -1, side, side)
        spatial = F.interpolate(spatial, size=(2, 3), mode="bilinear", align_corners=False)
        key_value = dense[0, :, 1, 2] + spatial[0, :, 1, 2]
        want = attnpool.c_proj(attnpool.v_proj(key_value))  # softmax over one key = 1
    torch.testing.assert_close(out[0, 0], want, rtol=1e-5, atol=1e-5)
    # The empty mask gives the output projection's bias, as the official pooling does
    # (tests/test_edges2_pooling.py): finite, not NaN.
    assert torch.isfinite(out).all()


def test_pixel_decoder_stays_float32_under_autocast(tiny) -> None:
    features = tiny.backbone(torch.randn(1, 3, 64, 64))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        mask_features, maps = tiny.sem_seg_head.pixel_decoder(features)
    assert mask_features.dtype == torch.float32
    assert all(m.dtype == torch.float32 for m in maps)


def test_predict_under_bf16_autocast_follows_fp32(tiny) -> None:
    """`--precision bf16`: the whole inference call runs under autocast (the pixel decoder
    stays fp32 inside it, so the decoder mixes dtypes) and stays close to fp32."""
    torch.manual_seed(1)
    text = random_text(4, tiny.backbone.embed_dim, seed=1)
    seen = torch.tensor([True, False, True, False])
    images = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        want = tiny.predict(images, text, seen, 0.4, 0.8, True)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            got = tiny.predict(images, text, seen, 0.4, 0.8, True)
    for key in ("class_probs", "mask_logits"):
        assert torch.isfinite(got[key]).all()
        # bf16 keeps 8 mantissa bits: agreement to a few percent of the value range.
        scale = want[key].abs().max()
        torch.testing.assert_close(got[key].float(), want[key], rtol=0.0, atol=0.1 * scale)
