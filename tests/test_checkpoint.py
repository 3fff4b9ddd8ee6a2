"""Official-layout FC-CLIP checkpoints built from the official key lists (tests/data/keys/) load
into the right parameters; wrong files fail with one clear error naming the file."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from streamseg.errors import UserError
from streamseg.model.checkpoint import (
    CLIP_PREFIX,
    infer_official_config,
    load_clip_weights,
    load_official_checkpoint,
)
from streamseg.model.config import PRESETS
from streamseg.model.fcclip import build_model

KEYS = Path(__file__).parent / "data" / "keys"


def read_key_list(name: str) -> list[tuple[str, tuple[int, ...], str]]:
    path = KEYS / name
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            key, shape, dtype = line.rstrip("\n").split("\t")
            dims = () if shape == "()" else tuple(int(d) for d in shape.split("x"))
            rows.append((key, dims, dtype))
    return rows


def official_state_dict(rows, with_clip: bool) -> dict[str, torch.Tensor]:
    """Tensor i filled with the value i (expanded views: the files stay small)."""
    state = {}
    for i, (key, shape, dtype) in enumerate(rows):
        if key.startswith(CLIP_PREFIX) and not with_clip:
            continue
        value = torch.tensor(i, dtype=getattr(torch, dtype))
        state[key] = value.expand(shape) if shape else value
    return state


def assert_landed(model, rows, with_clip: bool = True) -> int:
    own = model.state_dict()
    checked = 0
    for i, (key, _, _) in enumerate(rows):
        if key == "criterion.empty_weight" or (key.startswith(CLIP_PREFIX) and not with_clip):
            continue
        assert torch.all(own[key] == i), key
        checked += 1
    return checked


@pytest.fixture(scope="module")
def base_model():
    return build_model(PRESETS["fcclip-convnext-base"])


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(PRESETS["tiny-convnext"])


def test_our_state_dict_equals_official_key_list(base_model) -> None:
    rows = read_key_list("fcclip_convnext_base_state_dict_keys.tsv")
    ours = {
        k: (tuple(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in base_model.state_dict().items()
    }
    official = {k: (s, d) for k, s, d in rows if k != "criterion.empty_weight"}
    assert ours == official


def test_trained_only_checkpoint_plus_clip_file(base_model, tmp_path) -> None:
    rows = read_key_list("fcclip_convnext_base_state_dict_keys.tsv")
    full = official_state_dict(rows, with_clip=True)
    trained = {k: v for k, v in full.items() if not k.startswith(CLIP_PREFIX)}
    assert "criterion.empty_weight" in trained  # the loss buffer is in the file, dropped on load
    clip = {k[len(CLIP_PREFIX) :]: v for k, v in full.items() if k.startswith(CLIP_PREFIX)}
    torch.save({"model": trained, "iteration": 368749}, tmp_path / "fcclip.pth")
    torch.save(clip, tmp_path / "open_clip_pytorch_model.bin")
    with pytest.raises(UserError, match=r"fcclip\.pth: carries no CLIP weights"):
        load_official_checkpoint(base_model, tmp_path / "fcclip.pth")
    load_official_checkpoint(
        base_model, tmp_path / "fcclip.pth", tmp_path / "open_clip_pytorch_model.bin"
    )
    assert assert_landed(base_model, rows) == len(rows) - 1
    assert infer_official_config(tmp_path / "fcclip.pth") == PRESETS["fcclip-convnext-base"]


def test_full_checkpoint(base_model, tmp_path) -> None:
    rows = read_key_list("fcclip_convnext_base_state_dict_keys.tsv")
    state = official_state_dict(rows, with_clip=True)
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"model": state}, tmp_path / "full.pth")
    load_official_checkpoint(base_model, tmp_path / "full.pth")
    own = base_model.state_dict()
    for i, (key, _, dtype) in enumerate(rows):
        if key != "criterion.empty_weight":
            assert torch.all(own[key] == (i + 0.5 if dtype == "float32" else i)), key


def tiny_checkpoint(model, path: Path, change=None) -> Path:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["criterion.empty_weight"] = torch.ones(7)
    if change:
        change(state)
    torch.save({"model": state}, path)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s.pop("sem_seg_head.predictor.logit_scale"),
            r"1 missing keys: sem_seg_head\.predictor\.logit_scale",
        ),
        (
            lambda s: s.update({"sem_seg_head.extra.weight": torch.zeros(1)}),
            r"1 unexpected keys: sem_seg_head\.extra\.weight",
        ),
        (
            lambda s: s.update({"void_embedding.weight": torch.zeros(1, 7)}),
            r"shape keys: void_embedding\.weight \(1x7 in file, 1x64 expected\)",
        ),
        (
            lambda s: [
                s.pop(k)
                for k in list(s)
                if k.startswith(CLIP_PREFIX) and "token_embedding" not in k
            ],
            r"CLIP \(all or none of its keys\): \d+ missing keys: backbone\.clip_model\.",
        ),
    ],
    ids=["missing", "unexpected", "shape", "partial-clip"],
)
def test_mismatched_checkpoints_fail_clearly(tiny_model, tmp_path, change, message) -> None:
    path = tiny_checkpoint(tiny_model, tmp_path / "bad.pth", change)
    with pytest.raises(UserError, match=message) as error:
        load_official_checkpoint(tiny_model, path)
    assert str(error.value).startswith(str(path))


def test_unreadable_files_fail_clearly(tiny_model, tmp_path) -> None:
    good = tiny_checkpoint(tiny_model, tmp_path / "good.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    for path in (truncated, garbage):
        with pytest.raises(UserError, match=rf"^{path}: not a readable weights file"):
            load_official_checkpoint(tiny_model, path)
    with pytest.raises(UserError, match=r"missing\.pth: weights file not found"):
        load_official_checkpoint(tiny_model, tmp_path / "missing.pth")


class Payload:  # arbitrary objects are refused by weights_only=True
    pass


def test_pickled_objects_are_refused(tiny_model, tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": Payload()}}, path)
    with pytest.raises(UserError, match="evil.pth: not a readable weights file"):
        load_official_checkpoint(tiny_model, path)


def test_wrong_clip_file(tiny_model, tmp_path) -> None:
    other = build_model(PRESETS["tiny-r50"])
    torch.save(other.backbone.clip_model.state_dict(), tmp_path / "rn.bin")
    with pytest.raises(UserError, match=r"rn\.bin: does not match the open_clip CLIP"):
        load_clip_weights(tiny_model, tmp_path / "rn.bin")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "key_file"),
    [
        ("fcclip-convnext-large", "fcclip_convnext_large_state_dict_keys.tsv.gz"),
        ("fcclip-r50", "fcclip_rn50_state_dict_keys.tsv.gz"),
    ],
)
def test_large_official_checkpoints(preset, key_file, tmp_path) -> None:
    model = build_model(PRESETS[preset])
    rows = read_key_list(key_file)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == {k: s for k, s, _ in rows if k != "criterion.empty_weight"}
    full = official_state_dict(rows, with_clip=True)
    trained = {k: v for k, v in full.items() if not k.startswith(CLIP_PREFIX)}
    clip = {k[len(CLIP_PREFIX) :]: v for k, v in full.items() if k.startswith(CLIP_PREFIX)}
    torch.save({"model": trained}, tmp_path / "trained.pth")
    torch.save({"state_dict": clip}, tmp_path / "clip.pt")
    load_official_checkpoint(model, tmp_path / "trained.pth", tmp_path / "clip.pt")
    assert assert_landed(model, rows) == len(rows) - 1
    assert infer_official_config(tmp_path / "trained.pth") == PRESETS[preset]
    torch.save({"model": full}, tmp_path / "full.pth")
    model.void_embedding.weight.data.zero_()
    load_official_checkpoint(model, tmp_path / "full.pth")
    assert assert_landed(model, rows) == len(rows) - 1


def test_legacy_torch_format_loads(tiny_model, tmp_path) -> None:
    state = {k: v.clone() + 1 for k, v in tiny_model.state_dict().items()}
    path = tmp_path / "legacy.pth"
    torch.save({"model": state}, path, _use_new_zipfile_serialization=False)
    load_official_checkpoint(tiny_model, path)
    assert torch.equal(tiny_model.void_embedding.weight, state["void_embedding.weight"])
