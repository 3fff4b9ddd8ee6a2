"""FCCLIPConfig presets and their JSON form."""

from __future__ import annotations

import json

import pytest

from streamseg.errors import UserError
from streamseg.model.config import PRESETS, FCCLIPConfig, coco_panoptic_synonyms, get_preset


def test_json_round_trip_of_every_preset() -> None:
    for config in PRESETS.values():
        text = json.dumps(config.to_dict())
        assert FCCLIPConfig.from_dict(json.loads(text)) == config


def test_official_values() -> None:
    large = PRESETS["fcclip-convnext-large"]
    assert (large.clip_model, large.num_queries, large.decoder_layers, large.hidden_dim) == (
        "convnext_large_d_320",
        250,
        9,
        256,
    )
    assert (large.ensemble_alpha, large.ensemble_beta, large.ensemble_on_valid_mask) == (
        0.4,
        0.8,
        False,
    )
    assert (large.object_mask_threshold, large.overlap_threshold, large.instance_topk) == (
        0.0,
        0.8,
        100,
    )
    assert (large.test_short_edge, large.test_max_size, large.size_divisibility) == (800, 1333, 32)
    assert PRESETS["fcclip-r50"].ensemble_on_valid_mask
    assert PRESETS["fcclip-convnext-base"].clip_model == "convnext_base"


def test_train_vocabulary_is_the_coco_panoptic_synonyms() -> None:
    synonyms = coco_panoptic_synonyms()
    assert PRESETS["fcclip-convnext-large"].train_vocabulary == synonyms
    assert {"person", "people", "bicycle", "car"} <= set(synonyms)
    assert "invalid_class_id" not in synonyms
    assert len(synonyms) == len(set(synonyms))


def test_custom_clip_config_and_errors() -> None:
    tiny = PRESETS["tiny-convnext"]
    assert tiny.open_clip_config()["vision_cfg"]["timm_model_name"] == "convnext_atto"
    assert PRESETS["fcclip-convnext-large"].open_clip_config() is None
    data = tiny.to_dict()
    data["clip_config"] = json.loads(data["clip_config"])  # a dict is accepted too
    assert FCCLIPConfig.from_dict(data) == tiny
    with pytest.raises(UserError, match=r"cfg\.json: unknown FC-CLIP config keys \['bogus'\]"):
        FCCLIPConfig.from_dict({"bogus": 1}, "cfg.json")
    with pytest.raises(UserError, match="nope: unknown model preset"):
        get_preset("nope")
