"""One model loader for every face: a registry name works in `run`, `batch`, `bench`, `image`
and `measure` alike (issue 16: `run --model fcclip-convnext-large-coco` answered "not a model
name" while `image` knew the name).

The fast tests check what each verb says for a registry entry that is not downloaded (the same
"weights not downloaded" line everywhere, never "not a model name"). The slow test places the
files of the `fcclip-r50-coco` entry by hand in a temporary cache (`STREAMSEG_CACHE`): an
official-layout FC-CLIP `.pth` without CLIP keys, whose keys are checked against the official
key list in tests/data/keys, and an open_clip RN50 state dict for the same preset; every verb
then loads the model by its registry name.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from fake_segmenter import make_blob_video

from streamseg.cli import main

KEYS = Path(__file__).parent / "data" / "keys" / "fcclip_rn50_state_dict_keys.tsv.gz"
ENTRY = "fcclip-r50-coco"
CLIP_PREFIX = "backbone.clip_model."


def _verbs(video: Path, image: Path, out: Path) -> dict[str, list[str]]:
    return {
        "run": ["run", str(video), "--out", str(out / "r.zarr"), "--max-frames", "1"],
        "batch": [
            "batch", str(video), "--out", str(out / "batch"), "--workers", "1",
            "--no-dashboard", "--max-frames", "1", "--quiet",
        ],
        "bench": [
            "bench", "--size", "64x64", "--frames", "1", "--repeats", "1",
            "--stages", "model", "--json",
        ],
        "image": ["image", str(image), "--out", str(out / "img"), "--vocab", "cat,dog"],
        "measure": [
            "measure", "--out", str(out / "m"), "--images", "1", "--videos", "0", "--size", "64",
        ],
    }  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("inputs")
    video = make_blob_video(root / "v.mp4", frames=2)
    image = root / "i.png"
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(image)
    return video, image


@pytest.mark.parametrize("verb", ["run", "batch", "bench", "image", "measure"])
def test_every_verb_knows_registry_names(
    verb: str,
    inputs: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STREAMSEG_CACHE", str(tmp_path / "cache"))
    argv = _verbs(*inputs, tmp_path)[verb]
    assert main([*argv, "--model", ENTRY]) == 2
    err = capsys.readouterr().err
    assert f"{ENTRY}: weights not downloaded; run `streamseg weights fetch {ENTRY}`" in err
    assert str(tmp_path / "cache" / "weights" / "fcclip_cocopan_r50.pth") in err
    assert "not a model name" not in err


def _official_key_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    with gzip.open(KEYS, "rt") as lines:
        for line in lines:
            key, shape, _ = line.rstrip("\n").split("\t")
            shapes[key] = () if shape == "()" else tuple(int(n) for n in shape.split("x"))
    return shapes


@pytest.fixture(scope="module")
def placed_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$STREAMSEG_CACHE with fcclip-r50-coco's two files placed by hand (seeded weights)."""
    import warnings

    import torch
    from safetensors.torch import save_file

    from streamseg.model.segmenter import Segmenter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random weights, on purpose
        model = Segmenter.from_pretrained("fcclip-r50", device="cpu").model
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    official = _official_key_shapes()
    official.pop("criterion.empty_weight", None)  # a loss buffer the official file also has
    assert {k: tuple(v.shape) for k, v in state.items()} == official
    cache = tmp_path_factory.mktemp("cache")
    weights = cache / "weights"
    weights.mkdir()
    heads = {k: v for k, v in state.items() if not k.startswith(CLIP_PREFIX)}
    clip = {k.removeprefix(CLIP_PREFIX): v for k, v in state.items() if k.startswith(CLIP_PREFIX)}
    torch.save({"model": heads}, weights / "fcclip_cocopan_r50.pth")  # detectron2 layout
    save_file(
        {k: v.contiguous() for k, v in clip.items()}, str(weights / "RN50.openai.safetensors")
    )
    return cache


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["run", "batch", "bench", "image", "measure"])
def test_every_verb_loads_a_hand_placed_registry_entry(
    verb: str,
    inputs: tuple[Path, Path],
    placed_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STREAMSEG_CACHE", str(placed_cache))
    argv = [*_verbs(*inputs, tmp_path)[verb], "--model", ENTRY]
    if verb not in ("bench", "measure"):
        argv += ["--vocab", "cat,dog"] if verb != "image" else []
    assert main(argv) == 0, capsys.readouterr().err
    if verb == "run":
        from streamseg.video.store import open_store

        attrs = open_store(tmp_path / "r.zarr").attrs
        assert attrs["model"]["id"].startswith("fcclip_cocopan_r50")
    elif verb == "batch":
        manifest = json.loads((tmp_path / "batch" / "manifest.json").read_text())
        assert [r["status"] for r in manifest] == ["done"]
    elif verb == "bench":
        result = json.loads(capsys.readouterr().out)
        assert result["model"].startswith("fcclip_cocopan_r50")  # the entry's file
    elif verb == "image":
        predictions = json.loads((tmp_path / "img" / "predictions.json").read_text())
        assert predictions["info"]["model"].startswith("fcclip_cocopan_r50")
    else:
        assert (tmp_path / "m").is_dir()
