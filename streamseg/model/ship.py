"""Turn a training output folder into a shipped model folder (fp16 storage, sha256 sums).

    result = ship_folder("RUN/fcclip/model", "weights/shapes-tiny", default_vocab="shapes")

The shipped folder is the own format of streamseg/model/checkpoint.py with three differences:
floating-point tensors are stored as float16 (half the bytes; `load_folder_weights` copies them
into the fp32 model, which upcasts), config.json may name a default vocabulary
(`default_vocab`, read by streamseg/model/default_vocab.py) and records `storage_dtype`, and a
`SHA256SUMS` file (the `sha256sum -c` format) lists every file written.

A tensor whose finite fp32 values would overflow float16 (|x| > 65504) stays fp32, so storage
never turns a finite weight into inf.

The CLIP text tower's token table (`*token_embedding.weight`: one row per BPE token, 49,408
rows, most of them words a small model never saw) is stored as int8 rows with one float32 scale
per row (`checkpoint.ROW_SCALE_SUFFIX`): half its fp16 bytes, at a rounding error of at most
half a step (1/254 of the row's largest magnitude). For shapes-tiny this takes the weights from
25.8 MB to 19.6 MB. `int8_rows=False` keeps it in fp16.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from streamseg.errors import UserError
from streamseg.model import checkpoint

SUMS_FILE = "SHA256SUMS"
# Files besides config.json and model.safetensors that a training folder may hold and that
# travel with the weights (the training vocabulary, see streamseg/train/loop.py).
EXTRA_FILES = ("vocabulary.json",)
# Tables stored as int8 rows by default (see the module docstring).
INT8_ROW_SUFFIXES = ("token_embedding.weight",)
# The limit for the embedded model's weights ("at most 40 MB in all"), in bytes.
MAX_SHIPPED_BYTES = 40 * 10**6
_FP16_MAX = float(torch.finfo(torch.float16).max)


@dataclass(frozen=True)
class ShipResult:
    """What `ship_folder` wrote."""

    folder: Path
    weights_bytes: int  # size of the shipped model.safetensors
    source_bytes: int  # size of the source model.safetensors
    sha256: str  # of the shipped model.safetensors
    kept_fp32: tuple[str, ...]  # tensors left in fp32 (fp16 would overflow)
    int8_rows: tuple[str, ...]  # tensors stored as int8 rows
    files: tuple[str, ...]  # names listed in SHA256SUMS


def to_fp16_storage(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    """fp32/fp64/bf16 tensors as float16; integer tensors unchanged.

    Returns:
        (the new state dict, the names kept in fp32 because fp16 would overflow them).
    """
    out: dict[str, Tensor] = {}
    kept: list[str] = []
    for key, value in state.items():
        if not value.is_floating_point() or value.dtype == torch.float16:
            out[key] = value.contiguous()
            continue
        finite = value[torch.isfinite(value)]
        if finite.numel() and float(finite.abs().max()) > _FP16_MAX:
            out[key] = value.float().contiguous()
            kept.append(key)
        else:
            out[key] = value.to(torch.float16).contiguous()
    return out, tuple(kept)


def quantize_rows(value: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-row int8: (R, ...) float -> (R, ...) int8 q and (R,) float32 scale with
    value ~= q * scale, |error| <= scale / 2. An all-zero row gets scale 0 (exact)."""
    flat = value.detach().float().reshape(value.shape[0], -1)
    scale = flat.abs().amax(dim=1) / 127.0
    q = torch.round(flat / scale.clamp_min(torch.finfo(torch.float32).tiny)[:, None])
    return q.clamp(-127, 127).to(torch.int8).reshape(value.shape), scale


def to_int8_rows(state: dict[str, Tensor], suffixes: tuple[str, ...]) -> tuple[str, ...]:
    """In place: every float tensor of 2+ dims whose key ends with one of `suffixes` becomes an
    int8-row pair (checkpoint.dequantize_rows reads it back). Returns the keys converted."""
    converted = []
    for key in [k for k in state if k.endswith(suffixes)]:
        value = state[key]
        if value.is_floating_point() and value.dim() >= 2:
            state[key], state[key + checkpoint.ROW_SCALE_SUFFIX] = quantize_rows(value)
            converted.append(key)
    return tuple(converted)


def _write_atomic(path: Path, text: str) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def write_sums(folder: str | Path, names: list[str]) -> Path:
    """Write FOLDER/SHA256SUMS for `names` (files in `folder`), `sha256sum -c` format."""
    folder = Path(folder)
    lines = [f"{checkpoint.file_sha256(folder / name)}  {name}\n" for name in names]
    path = folder / SUMS_FILE
    _write_atomic(path, "".join(lines))
    return path


def verify_sums(folder: str | Path) -> dict[str, str]:
    """Check every file listed in FOLDER/SHA256SUMS; return {name: sha256}.

    Raises:
        UserError: no SHA256SUMS, a listed file missing, or a checksum mismatch.
    """
    folder = Path(folder)
    path = folder / SUMS_FILE
    if not path.is_file():
        raise UserError(f"{folder}: no {SUMS_FILE}")
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise UserError(f"{path}:{number}: not a '<sha256>  <file>' line")
        if not (folder / name).is_file():
            raise UserError(f"{path}:{number}: {name} is missing")
        actual = checkpoint.file_sha256(folder / name)
        if actual != digest:
            raise UserError(f"{folder / name}: sha256 {actual}, {SUMS_FILE} says {digest}")
        sums[name] = digest
    return sums


def _read_header(folder: Path) -> dict:
    checkpoint.read_folder_config(folder)  # validates format, version and config
    return json.loads((folder / checkpoint.CONFIG_FILE).read_text(encoding="utf-8"))


def ship_folder(
    source: str | Path,
    target: str | Path,
    *,
    default_vocab: str | None = None,
    default_stuff: str | None = None,
    max_bytes: int = MAX_SHIPPED_BYTES,
    check_load: bool = True,
    int8_rows: bool = True,
) -> ShipResult:
    """Write the shipped form of an own-format model folder.

    Args:
        source: a folder with config.json + model.safetensors (e.g. RUN/fcclip/model).
        target: the shipped folder (created; its config/weights/sums are replaced).
        default_vocab: vocabulary used when the user gives none: a built-in name ("shapes")
            or the CLI syntax "a|syn,b"; None keeps the source's (if any).
        default_stuff: comma-separated stuff classes of a CLI-syntax `default_vocab`.
        max_bytes: refuse (and remove the weights) if model.safetensors is larger.
        check_load: build the model from the config and load the shipped weights strictly.
        int8_rows: store the token table(s) (INT8_ROW_SUFFIXES) as int8 rows.

    Raises:
        UserError: bad source, same folder, unparsable vocabulary, too large, or unloadable.
    """
    from safetensors.torch import save_file

    source, target = Path(source), Path(target)
    if not (source / checkpoint.WEIGHTS_FILE).is_file():
        raise UserError(f"{source}: no {checkpoint.WEIGHTS_FILE}")
    if target.exists() and target.resolve() == source.resolve():
        raise UserError(f"{target}: the shipped folder must differ from the source")
    header = _read_header(source)
    if default_vocab is not None:
        header["default_vocab"] = default_vocab
        header["default_stuff"] = default_stuff
    if header.get("default_vocab"):
        from streamseg.model.vocab import parse_vocab

        parse_vocab(header["default_vocab"], header.get("default_stuff"))  # fails early if bad
    state = checkpoint.read_state_dict(source / checkpoint.WEIGHTS_FILE)
    half, kept = to_fp16_storage(state)
    header["storage_dtype"] = "float16"
    quantized = to_int8_rows(half, INT8_ROW_SUFFIXES) if int8_rows else ()
    header["int8_rows"] = list(quantized)

    target.mkdir(parents=True, exist_ok=True)
    weights = target / checkpoint.WEIGHTS_FILE
    temp = target / (checkpoint.WEIGHTS_FILE + ".tmp")
    save_file(half, str(temp), metadata={"format": checkpoint.FORMAT_NAME})
    size = temp.stat().st_size
    if size > max_bytes:
        temp.unlink()
        raise UserError(
            f"{source}: shipped weights would be {size / 1e6:.1f} MB, over the limit of "
            f"{max_bytes / 1e6:.1f} MB"
        )
    os.replace(temp, weights)
    _write_atomic(target / checkpoint.CONFIG_FILE, json.dumps(header, indent=2) + "\n")
    names = [checkpoint.CONFIG_FILE, checkpoint.WEIGHTS_FILE]
    for extra in EXTRA_FILES:
        if (source / extra).is_file():
            _write_atomic(target / extra, (source / extra).read_text(encoding="utf-8"))
            names.append(extra)
    if check_load:
        from streamseg.model.fcclip import build_model

        config, _ = checkpoint.read_folder_config(target)
        checkpoint.load_folder_weights(build_model(config), target)
    write_sums(target, names)
    return ShipResult(
        folder=target,
        weights_bytes=size,
        source_bytes=(source / checkpoint.WEIGHTS_FILE).stat().st_size,
        sha256=checkpoint.file_sha256(weights),
        kept_fp32=kept,
        int8_rows=quantized,
        files=tuple(names),
    )
