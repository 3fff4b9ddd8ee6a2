"""FC-CLIP hyper-parameters as one frozen dataclass, and the named presets.

The field list follows the official FC-CLIP config (bytedance/fc-clip, `configs/coco/panoptic-
segmentation/fcclip/*.yaml` and `fcclip/config.py`); the values of the official presets are the
ones recorded in FCCLIP_FACTS.md. Presets are a plain dict: no registry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cache
from importlib import resources
from typing import Any

from streamseg.errors import UserError

# CLIP's RGB normalization (0-255 scale) as FC-CLIP uses it; not part of any state dict.
CLIP_PIXEL_MEAN = (122.7709383, 116.7460125, 104.09373615)
CLIP_PIXEL_STD = (68.5005327, 66.6321579, 70.32316305)


@cache
def coco_panoptic_synonyms() -> tuple[str, ...]:
    """Every synonym of the 133 COCO-panoptic training classes (the official train vocabulary).

    Read from the official class file; FC-CLIP decides seen/unseen by synonym overlap with it.
    """
    text = (
        resources.files("streamseg.data.vocab")
        .joinpath("coco_panoptic_with_prompt_eng.txt")
        .read_text(encoding="utf-8")
    )
    synonyms: list[str] = []
    for line in text.splitlines():
        if ":" not in line:
            continue
        names = line.split(":", 1)[1].replace(", ", ",")
        if names == "invalid_class_id":
            continue
        synonyms.extend(s for s in names.split(",") if s)
    return tuple(dict.fromkeys(synonyms))


@dataclass(frozen=True)
class FCCLIPConfig:
    """All FC-CLIP hyper-parameters (architecture, inference thresholds, test-time resize)."""

    # open_clip model name (a built-in config such as "convnext_large_d_320" or "RN50-quickgelu"),
    # or a free label when `clip_config` carries a custom model config.
    clip_model: str = "convnext_large_d_320"
    # Custom open_clip model config (the JSON text of an open_clip model-config file: embed_dim,
    # vision_cfg, text_cfg); empty = use the built-in config named by `clip_model`.
    clip_config: str = ""
    # Channels of the pixel decoder (MSDeformAttn encoder + FPN); Mask2Former CONV_DIM.
    conv_dim: int = 256
    # Channels of the per-pixel mask embedding; Mask2Former MASK_DIM.
    mask_dim: int = 256
    # Number of MSDeformAttn encoder layers in the pixel decoder (post-norm).
    encoder_layers: int = 6
    # Attention heads of the deformable attention.
    encoder_heads: int = 8
    # Sampling points per head and level of the deformable attention.
    encoder_points: int = 4
    # Hidden width of the encoder FFN.
    encoder_ffn_dim: int = 1024
    # Number of object queries.
    num_queries: int = 250
    # Width of the transformer decoder (queries).
    hidden_dim: int = 256
    # Attention heads of the transformer decoder.
    decoder_heads: int = 8
    # Hidden width of the decoder FFN.
    decoder_ffn_dim: int = 2048
    # Masked-attention decoder layers (official DEC_LAYERS 10 = 9 layers + the initial prediction).
    decoder_layers: int = 9
    # GroupNorm groups in the pixel decoder (Mask2Former uses 32).
    norm_groups: int = 32
    # Geometric ensemble exponent for classes seen in training (weight of out-of-vocab).
    ensemble_alpha: float = 0.4
    # Geometric ensemble exponent for classes unseen in training.
    ensemble_beta: float = 0.8
    # Use out-of-vocab scores only for queries whose pooling mask has a positive pixel
    # (official: on for the R50 config, off for ConvNeXt).
    ensemble_on_valid_mask: bool = False
    # Panoptic inference: keep queries whose class score exceeds this (official 0.0).
    object_mask_threshold: float = 0.0
    # Panoptic inference: drop a segment whose visible part is below this share of its mask.
    overlap_threshold: float = 0.8
    # Instance inference: number of (query, class) pairs kept per image.
    instance_topk: int = 100
    # Test-time resize: shortest edge target in pixels; 0 disables resizing.
    test_short_edge: int = 800
    # Test-time resize: upper bound of the longest edge.
    test_max_size: int = 1333
    # Inputs are zero-padded (after normalization) to a multiple of this.
    size_divisibility: int = 32
    # RGB mean in 0-255 units subtracted from inputs (CLIP's).
    pixel_mean: tuple[float, float, float] = CLIP_PIXEL_MEAN
    # RGB standard deviation in 0-255 units that inputs are divided by (CLIP's).
    pixel_std: tuple[float, float, float] = CLIP_PIXEL_STD
    # Every synonym of the classes the trained parts saw in training; decides seen/unseen in
    # the ensemble (official: the COCO-panoptic class file).
    train_vocabulary: tuple[str, ...] = field(default_factory=coco_panoptic_synonyms)

    def open_clip_config(self) -> dict[str, Any] | None:
        """The custom open_clip model config as a dict, or None for a built-in model name."""
        return json.loads(self.clip_config) if self.clip_config else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> FCCLIPConfig:
        """Inverse of `to_dict`; unknown keys are an error that names `source`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{source}: unknown FC-CLIP config keys {unknown}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        if isinstance(values.get("clip_config"), dict):
            values["clip_config"] = json.dumps(values["clip_config"], sort_keys=True)
        return cls(**values)


def _tiny_clip_config(vision_cfg: dict[str, Any], embed_dim: int) -> str:
    # Small text tower with the standard CLIP tokenizer (context 77) so that the same prompt
    # code runs for tiny and official models.
    config = {
        "embed_dim": embed_dim,
        "vision_cfg": vision_cfg,
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    }
    return json.dumps(config, sort_keys=True)


# Small heads for fast tests and the embedded model; hidden 64 keeps GroupNorm(32) valid.
_TINY_HEAD = dict(
    conv_dim=64,
    mask_dim=64,
    encoder_layers=2,
    encoder_heads=4,
    encoder_points=2,
    encoder_ffn_dim=128,
    num_queries=16,
    hidden_dim=64,
    decoder_heads=4,
    decoder_ffn_dim=128,
    decoder_layers=3,
    test_short_edge=128,
    test_max_size=256,
    train_vocabulary=(),
)

PRESETS: dict[str, FCCLIPConfig] = {
    # The official COCO-panoptic model (CLIP convnext_large_d_320, embed 768).
    "fcclip-convnext-large": FCCLIPConfig(clip_model="convnext_large_d_320"),
    # The same head on open_clip `convnext_base` (embed 512): the smallest official-layout model.
    "fcclip-convnext-base": FCCLIPConfig(clip_model="convnext_base"),
    # The official R50 config: OpenAI RN50 (QuickGELU text tower), embed 1024.
    "fcclip-r50": FCCLIPConfig(clip_model="RN50-quickgelu", ensemble_on_valid_mask=True),
    # timm convnext_atto trunk (dims 40/80/160/320) + 2-layer width-64 text tower.
    "tiny-convnext": FCCLIPConfig(
        clip_model="tiny-convnext",
        clip_config=_tiny_clip_config(
            {
                "timm_model_name": "convnext_atto",
                "timm_model_pretrained": False,
                "timm_pool": "",
                "timm_proj": "linear",
                "image_size": 64,
            },
            embed_dim=64,
        ),
        **_TINY_HEAD,
    ),
    # A small ModifiedResNet (one block per stage, channels 64/128/256/512).
    "tiny-r50": FCCLIPConfig(
        clip_model="tiny-r50",
        clip_config=_tiny_clip_config(
            {"layers": [1, 1, 1, 1], "width": 16, "image_size": 64, "patch_size": None},
            embed_dim=64,
        ),
        ensemble_on_valid_mask=True,
        **_TINY_HEAD,
    ),
}


def get_preset(name: str) -> FCCLIPConfig:
    """The preset called `name`; a UserError listing the known names otherwise."""
    if name not in PRESETS:
        raise UserError(f"{name}: unknown model preset (known: {', '.join(sorted(PRESETS))})")
    return PRESETS[name]


def unknown_model_error(name: str) -> UserError:
    """The error for a `--model` that is no file, folder, model name or preset (raised by the
    loader's early check and by `Segmenter.from_pretrained`, with the same words)."""
    return UserError(
        f"{name}: no such file or folder, and not a model name "
        f"(presets: {', '.join(sorted(PRESETS))})"
    )


def with_overrides(config: FCCLIPConfig, **changes: Any) -> FCCLIPConfig:
    """A copy of `config` with some fields changed (thin wrapper of dataclasses.replace)."""
    return replace(config, **changes)
