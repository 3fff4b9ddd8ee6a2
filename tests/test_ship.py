"""Shipping a trained folder (fp16 storage, SHA256SUMS, size limit) and the model's default
vocabulary used by `streamseg run` / `image` when no --vocab is given."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from streamseg.cli import main
from streamseg.errors import UserError
from streamseg.model import embedded as segmenter_module
from streamseg.model.checkpoint import (
    ROW_SCALE_SUFFIX,
    WEIGHTS_FILE,
    dequantize_rows,
    read_state_dict,
    save_folder,
)
from streamseg.model.config import PRESETS
from streamseg.model.default_vocab import default_vocabulary, folder_default_vocabulary
from streamseg.model.fcclip import build_model
from streamseg.model.segmenter import Segmenter
from streamseg.model.ship import (
    SUMS_FILE,
    quantize_rows,
    ship_folder,
    to_fp16_storage,
    verify_sums,
)
from streamseg.model.vocab import Vocabulary, parse_vocab

CLASSES = ["red circle|red disc", "blue square", "grass"]
TOKENS = "backbone.clip_model.token_embedding.weight"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny random-weight model saved as training does it (fp32 + vocabulary.json)."""
    torch.manual_seed(0)
    config = PRESETS["tiny-convnext"]
    model = build_model(config)
    folder = tmp_path_factory.mktemp("run") / "model"
    save_folder(model, config, folder, include_clip=True)
    vocabulary = parse_vocab(",".join(CLASSES), stuff="grass")
    (folder / "vocabulary.json").write_text(vocabulary.to_json(), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def shipped(trained, tmp_path_factory):
    target = tmp_path_factory.mktemp("weights") / "shapes-tiny"
    return ship_folder(trained, target, default_vocab="shapes"), target


def _load(folder) -> Segmenter:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        segmenter = Segmenter.from_pretrained(folder, device="cpu")
    segmenter.set_vocabulary(",".join(CLASSES).split(","), cache_dir=None)
    return segmenter


def test_fp16_tensors_and_overflow_kept_fp32() -> None:
    state = {
        "w": torch.tensor([1.0, -2.5, 1e-3]),
        "big": torch.tensor([1.0, 1e6]),  # not representable in fp16: stays fp32
        "mask": torch.tensor([0.0, float("-inf")]),  # inf is fine in fp16
        "index": torch.tensor([1, 2, 3]),
    }
    half, kept = to_fp16_storage(state)
    assert kept == ("big",)
    assert half["w"].dtype == torch.float16 and half["mask"].dtype == torch.float16
    assert half["big"].dtype == torch.float32 and torch.equal(half["big"], state["big"])
    assert half["index"].dtype == torch.int64 and torch.equal(half["index"], state["index"])
    assert torch.isinf(half["mask"][1]) and half["w"][0].item() == 1.0


def test_quantize_rows_error_is_half_a_step() -> None:
    table = torch.randn(50, 16) * torch.linspace(0.01, 10, 50)[:, None]
    table[3] = 0.0
    q, scale = quantize_rows(table)
    assert q.dtype == torch.int8 and scale.shape == (50,) and scale[3] == 0
    assert int(q.abs().max()) == 127  # every non-zero row uses the whole range
    error = (q.float() * scale[:, None] - table).abs()
    assert bool((error <= scale[:, None] / 2 + 1e-6).all())
    state = dequantize_rows({"t": q, "t" + ROW_SCALE_SUFFIX: scale}, "test")
    assert set(state) == {"t"} and torch.equal(state["t"], q.float() * scale[:, None])
    with pytest.raises(UserError, match="does not match an int8 tensor"):
        dequantize_rows({"t": table, "t" + ROW_SCALE_SUFFIX: scale}, "test")  # not int8


def test_shipped_file_is_small_and_summed(trained, shipped) -> None:
    result, target = shipped
    source_bytes = (trained / WEIGHTS_FILE).stat().st_size
    assert result.source_bytes == source_bytes
    assert result.int8_rows == (TOKENS,)
    # fp16 everywhere (half) but the token table in int8 (a quarter) + one scale per row.
    source = read_state_dict(trained / WEIGHTS_FILE)
    tokens = source[TOKENS].numel()
    expected = source_bytes / 2 - tokens * 4 / 4 + source[TOKENS].shape[0] * 4
    assert abs(result.weights_bytes - expected) < 0.01 * source_bytes
    from safetensors.torch import load_file

    raw = load_file(str(target / WEIGHTS_FILE))
    assert raw[TOKENS].dtype == torch.int8
    assert {v.dtype for k, v in raw.items() if k != TOKENS} <= {torch.float16, torch.float32}
    state = read_state_dict(target / WEIGHTS_FILE)  # int8 rows come back as float32
    assert set(state) == set(source) and state[TOKENS].dtype == torch.float32
    sums = verify_sums(target)
    assert set(sums) == {"config.json", WEIGHTS_FILE, "vocabulary.json"}
    assert sums[WEIGHTS_FILE] == result.sha256
    header = json.loads((target / "config.json").read_text())
    assert header["default_vocab"] == "shapes" and header["storage_dtype"] == "float16"
    assert header["int8_rows"] == [TOKENS]
    source_header = json.loads((trained / "config.json").read_text())
    assert header["config"] == source_header["config"]  # train_vocabulary and all kept


def test_shipped_model_matches_fp32_model(trained, shipped) -> None:
    _, target = shipped
    full, half = _load(trained), _load(target)
    assert next(half.model.parameters()).dtype == torch.float32  # upcast on load
    assert half.default_vocabulary == parse_vocab("shapes")  # read from the folder on loading
    assert full.default_vocabulary.names == ["red circle", "blue square", "grass"]
    # The fp16-rounded weights land exactly (no second rounding on load); the token table
    # within half an int8 step of its fp16 value.
    source = read_state_dict(trained / WEIGHTS_FILE)
    for key, value in half.model.state_dict().items():
        if key == TOKENS:
            q, scale = quantize_rows(source[key].half())
            assert torch.equal(value, q.float() * scale[:, None])
        elif value.is_floating_point():
            assert torch.equal(value, source[key].half().float()), key
    frame = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    a, b = full.segment_raw([frame]), half.segment_raw([frame])
    pairs = [(a[k], b[k]) for k in ("in_vocab_logits", "class_probs", "embeddings")]
    pairs.append((a["mask_logits"][0], b["mask_logits"][0]))
    for full_out, half_out in pairs:
        # fp16 weights keep ~3 decimal digits; errors stay within 2% of the output scale.
        error = float((full_out - half_out).abs().max())
        assert 0 < error <= 2e-2 * float(full_out.abs().max())


def test_ship_refuses_too_large_bad_vocab_and_same_folder(trained, tmp_path) -> None:
    with pytest.raises(UserError, match="over the limit"):
        ship_folder(trained, tmp_path / "big", max_bytes=1000, check_load=False)
    assert not (tmp_path / "big" / WEIGHTS_FILE).exists()
    with pytest.raises(UserError, match="no-such-dataset"):
        ship_folder(trained, tmp_path / "v", default_vocab="no-such-dataset,")
    with pytest.raises(UserError, match="must differ"):
        ship_folder(trained, trained)


def test_tampered_file_fails_verification(shipped, tmp_path) -> None:
    _, target = shipped
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", WEIGHTS_FILE, "vocabulary.json", SUMS_FILE):
        copy.joinpath(name).write_bytes(target.joinpath(name).read_bytes())
    copy.joinpath("config.json").write_text("{}")
    with pytest.raises(UserError, match="sha256"):
        verify_sums(copy)


def test_default_vocabulary_order(trained, shipped) -> None:
    _, target = shipped
    # config.json's default_vocab wins; else the training vocabulary.json.
    assert folder_default_vocabulary(target) == parse_vocab("shapes")
    from_training = folder_default_vocabulary(trained)
    assert isinstance(from_training, Vocabulary)
    assert from_training.names == ["red circle", "blue square", "grass"]
    assert from_training.is_thing == [True, True, False]

    class Named:
        name = target.name

    class Other:
        name = "tiny-convnext-random-seed0"

    assert default_vocabulary(Named(), str(target)) == parse_vocab("shapes")
    # A segmenter built from something else never gets the folder's classes.
    assert default_vocabulary(Other(), str(target)) is None
    assert default_vocabulary(Other(), "tiny-convnext") is None


def test_cli_ship_then_run_and_image_without_vocab(trained, tmp_path, monkeypatch, capsys) -> None:
    """`streamseg weights ship`, then run/image with neither --model nor --vocab."""
    weights = tmp_path / "weights"
    vocab = ["--default-vocab", "red circle|red disc,blue square,grass", "--default-stuff", "grass"]
    code = main(["weights", "ship", str(trained), str(weights / "shapes-tiny"), *vocab])
    assert code == 0
    assert "model.safetensors" in capsys.readouterr().out
    monkeypatch.setattr(segmenter_module, "WEIGHTS_DIRS", (weights,))
    monkeypatch.setattr(segmenter_module, "DEFAULT_MODEL", "shapes-tiny")
    monkeypatch.setenv("STREAMSEG_CACHE", str(tmp_path / "cache"))
    from fake_segmenter import make_blob_video

    video = make_blob_video(tmp_path / "blobs.mp4", frames=4)
    store = tmp_path / "out.zarr"
    code = main(["run", str(video), "--out", str(store), "--device", "cpu", "--quiet", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 4
    from streamseg.video.store import open_store

    assert open_store(store).class_names == ["red circle", "blue square", "grass"]
    out = tmp_path / "images"
    image = tmp_path / "frame.png"
    from PIL import Image

    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(image)
    assert main(["image", str(image), "--out", str(out), "--device", "cpu"]) == 0
    predictions = json.loads((out / "predictions.json").read_text())
    assert [c["name"] for c in predictions["categories"]] == ["red circle", "blue square", "grass"]

    # The app: an empty class box means the default model's default vocabulary.
    from streamseg.app import AppSettings, DemoApp

    app = DemoApp(AppSettings(device="cpu", work_dir=tmp_path / "app"))
    assert app.default_model == "shapes-tiny"
    result = app.run(str(image), "", "", None, 1, 4, 0.0)
    assert result.kind == "image" and result.overlay.is_file()
    predictions = json.loads((result.overlay.parents[1] / "predictions.json").read_text())
    assert [c["name"] for c in predictions["categories"]] == ["red circle", "blue square", "grass"]
