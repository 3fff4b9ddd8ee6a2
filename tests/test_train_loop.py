"""The trainer end to end on a tiny written dataset: learning, exact resume, 2-process gloo DDP,
AMP + accumulation, the command line, the recipes, schedules and PQ on hand-made cases."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from panoptic_fixture import write_dataset

from streamseg.cli import main as cli_main
from streamseg.errors import UserError
from streamseg.train.config import OptimConfig, TrainConfig, load_train_config, resolve_paths
from streamseg.train.loop import CHECKPOINT, METRICS, MODEL_FOLDER, epoch_order, lr_factor, train

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "pipelines" / "train-tiny-test.toml"


def _config(data: Path, **optim) -> TrainConfig:
    config = load_train_config(TINY)
    paths = {
        "train_json": str(data / "panoptic.json"),
        "train_images": str(data / "images"),
        "train_panoptic": str(data / "panoptic"),
        "val_json": str(data / "panoptic.json"),
        "val_images": str(data / "images"),
        "val_panoptic": str(data / "panoptic"),
    }
    return replace(config, data=replace(config.data, **paths), optim=replace(config.optim, **optim))


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / METRICS).read_text().splitlines()]


def test_learns_on_a_few_images(tmp_path):
    data = tmp_path / "data"
    write_dataset(data, count=4)
    config = replace(
        _config(data, steps=30, batch_size=4, lr=1e-3, clip_grad=0.01),
        eval_at_start=True,
        model_overrides={"ensemble_alpha": 0.0},  # PQ of the trained parts (random CLIP)
    )
    out = tmp_path / "run"
    result = train(config, out, progress=False)
    records = _metrics(out)
    evals = [r["eval"] for r in records if "eval" in r]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 30 and len(evals) == 2
    assert evals[0]["PQ"] < 10.0  # random heads
    assert evals[1]["PQ"] > 60.0 and result["eval"] == evals[1]
    assert sum(losses[-5:]) / 5 < 0.4 * sum(losses[:3]) / 3
    # The result loads as a Segmenter and knows which classes were seen.
    from streamseg.model.segmenter import Segmenter

    segmenter = Segmenter.from_pretrained(out / MODEL_FOLDER, device="cpu")
    assert segmenter.config.train_vocabulary == ("square", "disc", "ground")
    segmenter.set_vocabulary(["square", "disc", "hexagon"])
    assert segmenter._seen.tolist() == [True, True, False]


def _state(out: Path) -> dict:
    return torch.load(out / CHECKPOINT, weights_only=True)


def test_resume_is_exact(tmp_path):
    data = tmp_path / "data"
    write_dataset(data, count=3)  # 3 images, 2 per step: epochs end mid-step
    config = _config(data, steps=6, batch_size=2, schedule="step", milestones=(4,))
    config = replace(config, data=replace(config.data, workers=1, val_json=""))
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(config, straight, progress=False)
    first = train(config, split, stop_after=3, progress=False)
    assert first["step"] == 3 and not first["done"]
    assert not (split / MODEL_FOLDER).exists()
    second = train(config, split, resume=True, progress=False)
    assert second["step"] == 6 and second["done"]
    a, b = _state(straight), _state(split)
    assert a["step"] == b["step"] == 6 and a["position"] == b["position"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for index, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][index]["exp_avg_sq"])
    assert [r["loss"] for r in _metrics(straight)] == [r["loss"] for r in _metrics(split)]


def test_resume_without_checkpoint_is_an_error(tmp_path):
    data = tmp_path / "data"
    write_dataset(data, count=1)
    with pytest.raises(UserError, match="no checkpoint"):
        train(_config(data), tmp_path / "run", resume=True, progress=False)
    config = replace(_config(data, steps=1), data=replace(_config(data).data, val_json=""))
    train(config, tmp_path / "run", stop_after=0, progress=False)
    with pytest.raises(UserError, match="a run exists here"):
        train(config, tmp_path / "run", progress=False)


def test_amp_bf16_and_accumulation_run(tmp_path):
    data = tmp_path / "data"
    write_dataset(data, count=2)
    config = _config(data, steps=2, batch_size=2, accumulate=2, amp="bf16")
    config = replace(config, data=replace(config.data, val_json=""))
    result = train(config, tmp_path / "run", progress=False)
    assert result["done"] and all(
        torch.isfinite(torch.tensor(v)) for v in result["last_metrics"].values()
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_gloo_ddp(tmp_path):
    data = tmp_path / "data"
    write_dataset(data, count=4)
    recipe = TINY.read_text().replace("DATA/", f"{data}/")
    recipe = recipe.replace('val_json = "', 'val_json = "" # ').replace("steps = 4", "steps = 3")
    pipeline = tmp_path / "ddp.toml"
    pipeline.write_text(recipe)
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()),
        "-m", "streamseg", "train", "--pipeline", str(pipeline), "--out", str(out),
        "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("step 3: done") == 1  # rank 0 reports
    assert (out / "rng-rank0.pt").is_file() and (out / "rng-rank1.pt").is_file()
    assert (out / MODEL_FOLDER / "model.safetensors").is_file()
    assert [r["step"] for r in _metrics(out)] == [1, 2, 3]
    # Each rank saw its own half of every step's images.
    rank0 = epoch_order(4, 0, 0, world=2, rank=0, per_step=1)
    rank1 = epoch_order(4, 0, 0, world=2, rank=1, per_step=1)
    assert sorted(rank0 + rank1) == [0, 1, 2, 3]


def test_cli_bad_dataset_fails_before_training(tmp_path, capsys):
    data = tmp_path / "data"
    path = write_dataset(data, count=2)
    content = json.loads(path.read_text())
    content["annotations"][0]["segments_info"][0]["category_id"] = 5
    path.write_text(json.dumps(content))
    pipeline = tmp_path / "bad.toml"
    pipeline.write_text(TINY.read_text().replace("DATA/", f"{data}/"))
    out = tmp_path / "run"
    code = cli_main(["train", "--pipeline", str(pipeline), "--out", str(out)])
    assert code == 2
    assert "unknown category_id 5" in capsys.readouterr().err
    assert not out.exists()


def test_recipe_errors(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[fcclip]\nmodel = 'tiny-convnext'\nlearning_rate = 1\n")
    assert cli_main(["train", "--pipeline", str(bad)]) == 2
    assert "unknown keys ['learning_rate']" in capsys.readouterr().err
    bad.write_text("[fcclip.data]\ntrain_json = 'x'\n[fcclip.optim]\namp = 'fp8'\n")
    with pytest.raises(UserError, match="optim.amp"):
        load_train_config(bad)
    bad.write_text("[clip]\nsteps = 1\n")
    with pytest.raises(UserError, match=r"no \[fcclip\]"):
        load_train_config(bad)


def test_official_recipe_values():
    config = load_train_config(REPO / "pipelines" / "train-coco-panoptic-convnext-large.toml")
    o = config.optim
    assert (o.batch_size, o.lr, o.weight_decay, o.steps) == (16, 1e-4, 0.05, 368_750)
    assert (o.milestones, o.gamma, o.warmup_steps, o.clip_grad) == (
        (327_778, 355_092),
        0.1,
        10,
        0.01,
    )
    assert (config.augment.size, config.augment.min_scale, config.augment.max_scale) == (
        1024,
        0.1,
        2.0,
    )
    loss = config.loss
    assert (loss.class_weight, loss.mask_weight, loss.dice_weight, loss.no_object_weight) == (
        2.0,
        5.0,
        5.0,
        0.1,
    )
    assert (loss.num_points, loss.oversample_ratio, loss.importance_ratio) == (12544, 3.0, 0.75)
    assert config.model == "fcclip-convnext-large" and config.vocabulary == "coco"


def test_lr_schedules():
    step = TrainConfig(
        optim=OptimConfig(steps=100, milestones=(50, 80), warmup_steps=10, warmup_factor=0.1)
    )
    assert lr_factor(0, step) == pytest.approx(0.1)
    assert lr_factor(5, step) == pytest.approx(0.1 * 0.5 + 0.5)
    assert [lr_factor(s, step) for s in (10, 49, 50, 80, 99)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.01, 0.01]
    )
    poly = TrainConfig(optim=OptimConfig(steps=100, schedule="poly", warmup_steps=0))
    assert lr_factor(50, poly) == pytest.approx(0.5**0.9)
    assert lr_factor(100, poly) == 0.0


def test_vocabulary_by_position_or_by_name(tmp_path):
    from streamseg.train.data import PanopticDataset
    from streamseg.train.loop import vocabulary_names

    data = tmp_path / "data"
    path = write_dataset(data, count=1)
    kwargs = dict(json_path=path, image_root=data / "images", panoptic_root=data / "panoptic")
    full = PanopticDataset(**kwargs)
    # Same count, nothing dropped: by position (names may differ from the JSON's).
    assert vocabulary_names("box|cube,ball,floor", full, ()) == ["box,cube", "ball", "floor"]
    subset = PanopticDataset(**kwargs, keep_categories=("disc", "ground"))
    names = vocabulary_names("square,ground|soil,round|disc", subset, ("disc", "ground"))
    assert names == ["round,disc", "ground,soil"]
    with pytest.raises(UserError, match="no class named"):
        vocabulary_names("square,sky,disc", subset, ("disc", "ground"))


def test_shapes_recipe_stage_loads():
    config = load_train_config(REPO / "pipelines" / "train-shapes-tiny.toml")
    # 54 classes minus 13 held out things (every star, every purple object) and snow.
    assert len(config.data.keep_categories) == 40
    held_out = ("star", "purple", "snow")
    assert not any(word in name for name in config.data.keep_categories for word in held_out)
    resolved = resolve_paths(config, "RUN/fcclip")
    assert resolved.clip_weights == os.path.normpath("RUN/clip/clip.safetensors")
    assert resolved.data.train_json == os.path.normpath("RUN/data/panoptic.json")
