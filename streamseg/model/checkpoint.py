"""Weights: the official FC-CLIP checkpoints, open_clip CLIP weights, and our own folder format.

Key mapping. Our module names equal the official ones, so the mapping from an official
detectron2-layout checkpoint (`{"model": state_dict}`) to `FCCLIP.state_dict()` is the identity:
    backbone.clip_model.*          -> the frozen open_clip CLIP (open_clip's own names)
    sem_seg_head.pixel_decoder.*   -> MSDeformAttnPixelDecoder
    sem_seg_head.predictor.*       -> MaskedAttentionDecoder
    void_embedding.weight          -> FCCLIP.void_embedding
    criterion.empty_weight         -> dropped (a loss buffer: ones, last 0.1)
tests/test_checkpoint*.py checks this against the official key lists in tests/data/keys/.

Loading is strict: the trained parts must match exactly (no missing, no unexpected key, every
shape equal); the CLIP keys are all present or all absent (then CLIP comes from a separate
open_clip weights file, as for the released `fcclip_cocopan.pth`). Files are untrusted input:
`torch.load(weights_only=True)` only. Problems raise `UserError("<file>: <what is wrong>")`.

Own format: a folder with `config.json` ({"format": "streamseg-fcclip", "format_version": 1,
"includes_clip": bool, "config": FCCLIPConfig.to_dict()}) and `model.safetensors`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from streamseg.errors import UserError
from streamseg.model.config import PRESETS, FCCLIPConfig

CLIP_PREFIX = "backbone.clip_model."
# Keys of official checkpoints that inference does not use.
DROPPED_KEYS = frozenset({"criterion.empty_weight"})
FORMAT_NAME = "streamseg-fcclip"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# A shipped folder may store a large table as int8 rows (streamseg/model/ship.py): the tensor
# KEY holds int8 values and KEY + ROW_SCALE_SUFFIX one float scale per row. '#' never occurs
# in a module's parameter names, so the pair cannot collide with a real key.
ROW_SCALE_SUFFIX = "#int8_row_scale"
_SHOWN_KEYS = 5


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a weights file: `.safetensors`, or a torch pickle read with weights_only=True.

    Unwraps `{"model": sd}` (detectron2) and `{"state_dict": sd}`, and strips a `module.`
    prefix (DDP).

    Raises:
        UserError: missing, unreadable, truncated or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: object = load_file(str(path), device="cpu")
        else:
            try:  # memory-mapped: a gigabyte checkpoint is not held twice in memory
                data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) files cannot be mapped; truncated ones
                data = torch.load(path, map_location="cpu", weights_only=True)  # fail here
    except Exception as error:  # noqa: BLE001 - any failure means an unusable file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserError(
            f"{path}: not a readable weights file (truncated, corrupt, or not a plain "
            f"state dict; TorchScript archives are not accepted): {type(error).__name__}: "
            f"{first_line[:200]}"
        ) from None
    for wrapper in ("model", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
            break
    if not isinstance(data, dict) or not data:
        raise UserError(f"{path}: holds no state dict (expected {{'model': state_dict}})")
    state = {}
    for key, value in data.items():
        if not isinstance(value, Tensor):
            raise UserError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        state[key.removeprefix("module.")] = value
    return dequantize_rows(state, str(path))


def read_training_state(path: str | Path, map_location: torch.device | str = "cpu") -> dict:
    """A training resume file (model, optimizer, RNG state ...), read with weights_only=True,
    so a pickle planted in a run folder cannot run code.

    Raises:
        UserError: unreadable, truncated, holding Python objects other than plain types and
            tensors, or not a dict.
    """
    path = Path(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure means an unusable file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserError(
            f"{path}: not a resumable checkpoint (corrupt, or holds objects other than tensors "
            f"and plain types): {type(error).__name__}: {first_line[:200]}"
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a resumable checkpoint (holds a {type(data).__name__})")
    return data


def dequantize_rows(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """Replace every int8-row pair (KEY int8 (R, ...), KEY + ROW_SCALE_SUFFIX float (R,)) by
    the float32 tensor int8 x scale; other entries pass through."""
    for scale_key in [k for k in state if k.endswith(ROW_SCALE_SUFFIX)]:
        key = scale_key.removesuffix(ROW_SCALE_SUFFIX)
        values, scale = state.get(key), state.pop(scale_key)
        if values is None or values.dtype != torch.int8 or scale.shape != values.shape[:1]:
            raise UserError(f"{source}: {scale_key!r} does not match an int8 tensor {key!r}")
        shape = (-1,) + (1,) * (values.dim() - 1)
        state[key] = values.float() * scale.float().reshape(shape)
    return state


def _shape(tensor: Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "()"


def check_state_dict(
    expected: dict[str, Tensor], given: dict[str, Tensor], source: str, what: str
) -> None:
    """Strict comparison of key sets and shapes.

    Raises:
        UserError: naming `source`, the number and the first of the missing / unexpected /
            mismatched keys.
    """
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = [
        f"{k} ({_shape(given[k])} in file, {_shape(expected[k])} expected)"
        for k in expected
        if k in given and given[k].shape != expected[k].shape
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", mismatched)):
        if keys:
            shown = ", ".join(keys[:_SHOWN_KEYS]) + (", ..." if len(keys) > _SHOWN_KEYS else "")
            problems.append(f"{len(keys)} {label} keys: {shown}")
    if problems:
        raise UserError(f"{source}: does not match {what}: " + "; ".join(problems))


def _load_into(module: nn.Module, state: dict[str, Tensor]) -> None:
    own = module.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value)


def load_clip_weights(model: nn.Module, path: str | Path) -> None:
    """Load an open_clip weights file (plain CLIP state dict, e.g. open_clip_model.safetensors or
    open_clip_pytorch_model.bin) into `model.backbone.clip_model`, strictly."""
    state = read_state_dict(path)
    if any(k.startswith(CLIP_PREFIX) for k in state):  # a full FC-CLIP file given as CLIP
        state = {k[len(CLIP_PREFIX) :]: v for k, v in state.items() if k.startswith(CLIP_PREFIX)}
    clip = model.backbone.clip_model
    check_state_dict(clip.state_dict(), state, str(path), "the open_clip CLIP of this model")
    _load_into(clip, state)


def load_official_checkpoint(
    model: nn.Module,
    path: str | Path,
    clip_weights: str | Path | None = None,
    state: dict[str, Tensor] | None = None,
) -> None:
    """Load an official FC-CLIP checkpoint (trained parts only, or everything) into `model`.

    Args:
        model: an `FCCLIP` built from the matching config.
        path: the `.pth` in detectron2 layout (named in errors).
        clip_weights: open_clip weights file for the CLIP; required when `path` has no
            `backbone.clip_model.*` keys, and preferred over them when both are given.
        state: the file's tensors when already read by `read_state_dict(path)`.
    """
    if state is None:
        state = read_state_dict(path)
    state = {k: v for k, v in state.items() if k not in DROPPED_KEYS}
    expected = model.state_dict()
    trained_expected = {k: v for k, v in expected.items() if not k.startswith(CLIP_PREFIX)}
    clip_expected = {k: v for k, v in expected.items() if k.startswith(CLIP_PREFIX)}
    trained = {k: v for k, v in state.items() if not k.startswith(CLIP_PREFIX)}
    clip = {k: v for k, v in state.items() if k.startswith(CLIP_PREFIX)}
    check_state_dict(trained_expected, trained, str(path), "the trained parts of FC-CLIP")
    if clip:
        check_state_dict(clip_expected, clip, str(path), "the CLIP (all or none of its keys)")
    elif clip_weights is None:
        raise UserError(
            f"{path}: carries no CLIP weights (backbone.clip_model.*); pass the open_clip "
            "weights file of the backbone as clip_weights (see `streamseg weights list`)"
        )
    _load_into(model, trained)
    if clip_weights is not None:
        if clip:
            warnings.warn(
                f"{path}: has CLIP weights, but {clip_weights} given: using the latter",
                stacklevel=2,
            )
        load_clip_weights(model, clip_weights)
    else:
        _load_into(model, clip)


def infer_official_config(path: str | Path, state: dict[str, Tensor] | None = None) -> FCCLIPConfig:
    """The official preset whose widths match a checkpoint (embed dim and res5 channels).

    Args:
        path: the checkpoint (read unless `state` is given; named in errors).
        state: its tensors when already read.
    """
    if state is None:
        state = read_state_dict(path)
    void = state.get("void_embedding.weight")
    proj = state.get("sem_seg_head.pixel_decoder.input_proj.0.0.weight")
    if void is None or proj is None:
        raise UserError(f"{path}: not an FC-CLIP checkpoint (no void_embedding / input_proj)")
    widths = (int(void.shape[-1]), int(proj.shape[1]))
    by_widths = {
        (768, 1536): "fcclip-convnext-large",
        (512, 1024): "fcclip-convnext-base",
        (1024, 2048): "fcclip-r50",
    }
    if widths not in by_widths:
        raise UserError(
            f"{path}: embed/res5 widths {widths} match no official preset; pass config="
        )
    return PRESETS[by_widths[widths]]


def save_folder(
    model: nn.Module, config: FCCLIPConfig, folder: str | Path, include_clip: bool = True
) -> Path:
    """Write the own format (config.json + model.safetensors), each file atomically.

    Args:
        include_clip: also store the frozen CLIP (else loading needs clip_weights).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if include_clip or not k.startswith(CLIP_PREFIX)
    }
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "includes_clip": include_clip,
        "config": config.to_dict(),
    }
    weights_tmp = folder / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(weights_tmp), metadata={"format": FORMAT_NAME})
    os.replace(weights_tmp, folder / WEIGHTS_FILE)
    config_tmp = folder / (CONFIG_FILE + ".tmp")
    config_tmp.write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
    os.replace(config_tmp, folder / CONFIG_FILE)
    return folder


def read_folder_config(folder: str | Path) -> tuple[FCCLIPConfig, bool]:
    """The config of an own-format folder and whether its weights include the CLIP."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{folder}: not a streamseg model folder (no {CONFIG_FILE})")
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: unreadable JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise UserError(f"{path}: not a {FORMAT_NAME} config")
    if header.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path}: unsupported format_version {header.get('format_version')}")
    return FCCLIPConfig.from_dict(header["config"], str(path)), bool(header.get("includes_clip"))


def load_folder_weights(
    model: nn.Module, folder: str | Path, clip_weights: str | Path | None = None
) -> None:
    """Load `model.safetensors` of an own-format folder strictly (CLIP all or none, as for
    official checkpoints)."""
    load_official_checkpoint(model, Path(folder) / WEIGHTS_FILE, clip_weights)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
