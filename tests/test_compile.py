"""`Segmenter.compile` (torch.compile of the network): the compiled network gives the eager
outputs, a failed compile is one UserError line, and `--compile` / `ModelSettings.compile`
reach the segmenter from `streamseg run` and `streamseg bench`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fake_segmenter import make_blob_video

from streamseg.cli import main
from streamseg.commands.run import add_arguments, build_config
from streamseg.config import ModelSettings, run_config_from_dict
from streamseg.errors import UserError
from streamseg.model.segmenter import Segmenter, _guard_compiled


def tiny_segmenter() -> Segmenter:
    """The tiny random-weight preset on the CPU with a random 4-class text classifier."""
    with pytest.warns(UserWarning, match="random weights"):
        segmenter = Segmenter.from_pretrained("tiny-convnext", device="cpu")
    generator = torch.Generator().manual_seed(0)
    text = SimpleNamespace(
        embeddings=F.normalize(
            torch.randn(6, segmenter.model.backbone.embed_dim, generator=generator), dim=-1
        ),
        class_index=torch.tensor([0, 0, 1, 2, 3, 3]),
        num_classes=4,
    )
    vocabulary = SimpleNamespace(is_thing=[True, False, True, False])
    segmenter.set_text_classifier(vocabulary, text, seen=torch.tensor([True, True, False, False]))
    return segmenter


def two_frames() -> list[np.ndarray]:
    """Two (96, 128, 3) uint8 frames: red top, green bottom-left, noise."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(2):
        image = np.zeros((96, 128, 3), np.uint8)
        image[:48] = (200, 40, 40)
        image[48:, :64] = (30, 180, 60)
        image += rng.integers(0, 20, size=image.shape, dtype=np.uint8)
        out.append(image)
    return out


@pytest.mark.slow  # the tiny model compiles in ~100 s on one loaded core
def test_compiled_network_gives_the_eager_outputs() -> None:
    segmenter = tiny_segmenter()
    frames = two_frames()
    eager_raw = segmenter.segment_raw(frames)
    eager = segmenter.segment(frames)
    assert segmenter.compile_mode is None

    segmenter.compile()
    assert segmenter.compile_mode == "default"
    began = time.perf_counter()
    compiled_raw = segmenter.segment_raw(frames)  # compiles here
    print(f"compile + first call of tiny-convnext: {time.perf_counter() - began:.1f} s")
    compiled = segmenter.segment(frames)  # same shapes: no recompile

    for key in ("in_vocab_logits", "out_vocab_logits", "class_probs", "embeddings"):
        torch.testing.assert_close(compiled_raw[key], eager_raw[key], atol=1e-4, rtol=1e-4)
    assert torch.equal(compiled_raw["valid"], eager_raw["valid"])
    for got, want in zip(compiled_raw["mask_logits"], eager_raw["mask_logits"], strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert compiled_raw["image_sizes"] == eager_raw["image_sizes"]
    for got, want in zip(compiled, eager, strict=True):
        assert len(want.segments) > 0
        np.testing.assert_array_equal(got.panoptic, want.panoptic)
        assert [(s.id, s.class_id, s.area) for s in got.segments] == [
            (s.id, s.class_id, s.area) for s in want.segments
        ]
        np.testing.assert_allclose(got.embeddings, want.embeddings, atol=1e-4)

    # the same mode again keeps the compiled network (no second compile)
    network = segmenter._predict
    segmenter.compile()
    assert segmenter._predict is network


def test_unknown_mode_is_a_user_error() -> None:
    segmenter = tiny_segmenter()
    with pytest.raises(UserError, match="compile mode 'fastest': not one of default"):
        segmenter.compile("fastest")
    assert segmenter.compile_mode is None


def test_failed_compile_is_one_user_error_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torch._inductor.config as inductor_config

    # No C++ compiler (as on a bare machine), and an empty cache so nothing compiled before
    # is reused.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(inductor_config.cpp, "cxx", ("no-such-c++",))
    scale = float(np.random.default_rng().uniform(2, 3))  # a kernel never compiled before
    network = _guard_compiled(torch.compile(lambda x: {"y": x.sin() * scale + 1}), False)
    try:
        with pytest.raises(UserError) as caught:
            network(torch.ones(3))
    finally:
        torch._dynamo.reset()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("--compile: torch.compile failed on this platform (")
    assert "no-such-c++" in message and message.endswith("run without --compile")


def parse_run(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_compile_setting_from_toml_and_flag(tmp_path: Path) -> None:
    assert ModelSettings().compile is False
    assert run_config_from_dict({"model": {"compile": True}}).model.compile is True
    assert build_config(parse_run(["v.mp4"])).model.compile is False
    assert build_config(parse_run(["v.mp4", "--compile"])).model.compile is True
    # a preset's compile = true stays when the flag is not given
    preset = tmp_path / "p.toml"
    preset.write_text("[model]\ncompile = true\n")
    assert build_config(parse_run(["v.mp4", "--pipeline", str(preset)])).model.compile is True


@pytest.fixture
def compile_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Segmenter.compile replaced by a recorder of its mode (no real compile)."""
    calls: list[str] = []
    monkeypatch.setattr(Segmenter, "compile", lambda self, mode="default": calls.append(mode))
    return calls


def test_run_compile_reaches_the_segmenter(
    compile_calls: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = make_blob_video(tmp_path / "blobs.mp4", frames=3)
    out = tmp_path / "s.zarr"
    argv = ["run", str(video), "--model", "tiny-convnext", "--vocab", "red,blue", "--device"]
    argv += ["cpu", "--out", str(out), "--quiet", "--json"]
    assert main(argv) == 0
    assert compile_calls == []
    assert json.loads(capsys.readouterr().out)["status"] == "done"
    # --compile does not change the run's identity: the finished store is recognized
    assert main([*argv, "--compile"]) == 0
    assert compile_calls == ["default"]
    assert json.loads(capsys.readouterr().out)["status"] == "already done"


@pytest.mark.parametrize("flag", [False, True])
def test_bench_compile_reaches_the_segmenter(
    flag: bool, compile_calls: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--model", "tiny-convnext", "--size", "64x64", "--frames", "2"]
    argv += ["--batch-size", "2", "--repeats", "1", "--device", "cpu", "--threads", "1"]
    argv += ["--stages", "model,end_to_end", "--json"]
    assert main(argv + (["--compile"] if flag else [])) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["compile"] is flag
    assert sorted(result["stages"]) == ["end_to_end", "model"]
    # the bench's own call, then run_video's (ModelSettings.compile; a no-op when compiled)
    assert compile_calls == (["default", "default"] if flag else [])


class _Compiled(Exception):
    """Raised by a stand-in segmenter's compile(): the setting reached it."""


def test_live_runs_compile_the_segmenter(tmp_path: Path) -> None:
    """A live source goes through run_live (not the file path), which compiles too; the
    stand-in raises at compile(), before any stream is opened."""
    from streamseg.config import RunConfig
    from streamseg.video.pipeline import run_video

    class StandIn:
        def compile(self) -> None:
            raise _Compiled

    config = RunConfig(model=ModelSettings(compile=True))
    with pytest.raises(_Compiled):
        run_video("udp://127.0.0.1:9", tmp_path / "live.zarr", config=config, segmenter=StandIn())
