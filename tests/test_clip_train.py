"""The small shapes-world CLIP: model paths, a training smoke test, the loss going down."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from streamseg.train.clip.data import build_batch, class_prompts, clip_scene_config
from streamseg.train.clip.loop import ClipTrainConfig, clip_losses, load_clip
from streamseg.train.clip.model import (
    create_shapes_clip,
    dense_features,
    downsample_masks,
    embed_dense,
    embed_regions,
    shapes_clip_config,
)


@pytest.mark.parametrize("trunk", ["convnext", "resnet"])
def test_whole_image_region_is_the_image_embedding(trunk: str) -> None:
    torch.manual_seed(0)
    model = create_shapes_clip(shapes_clip_config(trunk, image_size=64)).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        dense = dense_features(model, images)
        assert dense.shape[-2:] == (2, 2)
        whole = embed_regions(model, dense, torch.ones(2, 1, 2, 2))[:, 0]
        torch.testing.assert_close(whole, embed_dense(model, dense), rtol=1e-4, atol=1e-5)
        if trunk == "convnext":  # the ResNet pool (FC-CLIP's) omits the mean token from keys
            torch.testing.assert_close(whole, model.encode_image(images), rtol=1e-4, atol=1e-5)
        # A region is pooled only from its own cells: changing features elsewhere is invisible.
        weights = torch.zeros(2, 1, 2, 2)
        weights[:, :, 0, 0] = 1.0
        changed = dense.clone()
        changed[:, :, 1, 1] += 5.0
        left = embed_regions(model, dense, weights)
        right = embed_regions(model, changed, weights)
    # With one open cell the ResNet's attention has a single key, so the query (the mean of
    # all positions) does not matter either.
    torch.testing.assert_close(left, right)


def test_downsample_masks_gives_area_fractions() -> None:
    masks = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    masks[0, 0, :2, :1] = True  # half of the top-left 2x2 cell
    weights = downsample_masks(masks, (2, 2))
    assert weights[0, 0].tolist() == [[0.5, 0.0], [0.0, 0.0]]


def test_batch_regions_match_labels() -> None:
    config = clip_scene_config(64)
    batch = build_batch(seed=1, step=0, batch_size=3, config=config, device="cpu")
    assert batch.images.shape == (3, 3, 64, 64)
    valid = batch.region_labels >= 0
    # Every pixel belongs to exactly one region, padding regions are empty.
    assert torch.all(batch.region_masks.sum(dim=1) == 1)
    assert not batch.region_masks[~valid].any()
    again = build_batch(seed=1, step=0, batch_size=3, config=config, device="cpu")
    assert torch.equal(batch.images, again.images) and batch.captions == again.captions


def test_loss_decreases_on_a_fixed_batch() -> None:
    import open_clip

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = create_shapes_clip(shapes_clip_config("convnext", image_size=64))
    tokenizer = open_clip.get_tokenizer("RN50")
    batch = build_batch(seed=2, step=0, batch_size=4, config=clip_scene_config(64), device="cpu")
    prompts = class_prompts(np.random.default_rng(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(6):
        losses = clip_losses(model, tokenizer, batch, prompts, min_region_cells=0.0)
        loss = losses["contrastive"] + losses["region"]
        assert torch.isfinite(loss)
        totals.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert totals[-1] < totals[0] - 0.1


def test_train_command_smoke_and_resume(tmp_path) -> None:
    from streamseg.commands import clip

    pipeline = tmp_path / "tiny.toml"
    pipeline.write_text(
        "[clip]\ntrunk = 'convnext'\nimage_size = 64\nmodel_image_size = 64\nbatch_size = 3\n"
        "steps = 3\nwarmup = 1\nlog_every = 1\n"
    )
    parser = argparse.ArgumentParser()
    clip.add_arguments(parser)
    out = tmp_path / "run"
    argv = ["train", "--pipeline", str(pipeline), "--out", str(out)]
    assert clip.run(parser.parse_args([*argv, "--max-steps", "2"])) == 0
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
    assert clip.run(parser.parse_args(argv)) == 0  # resumes at step 2, runs step 3
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(np.isfinite(r["contrastive"]) and np.isfinite(r["region"]) for r in records)
    model = load_clip(out)
    assert model.encode_text(torch.zeros(1, 77, dtype=torch.long)).shape == (1, 256)


def test_bad_pipeline_is_a_user_error(tmp_path) -> None:
    from streamseg.errors import UserError
    from streamseg.train.clip.loop import load_clip_train_config

    path = tmp_path / "bad.toml"
    path.write_text("[clip]\ntrunk = 'convnext'\nbogus = 1\n")
    with pytest.raises(UserError, match="bogus"):
        load_clip_train_config(path)
    assert ClipTrainConfig().trunk == "convnext"


def test_zero_shot_eval_runs_and_counts_every_region() -> None:
    from streamseg.train.clip.evaluate import evaluate_clip, format_report

    torch.manual_seed(0)
    model = create_shapes_clip(shapes_clip_config("convnext", image_size=64))
    result = evaluate_clip(model, "cpu", num_single=4, num_scenes=2, size=64, batch_size=2)
    assert result["single"]["count"] == 4
    assert 0.0 <= result["regions"]["shape"] <= 1.0
    assert "red circle" in format_report(result)


def test_flat_stuff_paints_stuff_flat_and_keeps_things() -> None:
    from streamseg.synthetic.scene import render_image
    from streamseg.train.clip.data import flatten_stuff

    scene = render_image(3, clip_scene_config(96))
    flat = flatten_stuff(scene)
    for segment in scene.segments:
        mask = scene.panoptic == segment.id
        if segment.isthing:
            assert np.array_equal(flat[mask], scene.image[mask])
        else:
            assert len(np.unique(flat[mask], axis=0)) == 1
            assert len(np.unique(scene.image[mask], axis=0)) > 1  # it was textured
    # The share of flat scenes in a batch follows flat_prob: all, none.
    config = clip_scene_config(64)
    all_flat = build_batch(5, 0, 4, config, "cpu", flat_prob=1.0)
    textured = build_batch(5, 0, 4, config, "cpu", flat_prob=0.0)
    assert not torch.equal(all_flat.images, textured.images)
    assert torch.equal(all_flat.region_labels, textured.region_labels)


def test_flat_schedule_and_shape_labels() -> None:
    from streamseg.synthetic.categories import SHAPES, shapes_categories
    from streamseg.train.clip.data import shape_labels
    from streamseg.train.clip.loop import flat_probability

    config = ClipTrainConfig(flat_start=1.0, flat_end=0.2, flat_steps=100)
    assert [flat_probability(config, s) for s in (0, 50, 100, 500)] == pytest.approx(
        [1.0, 0.6, 0.2, 0.2]
    )
    assert flat_probability(ClipTrainConfig(), 10) == 0.0
    names = [c.name for c in shapes_categories()]
    labels = torch.tensor([[names.index("red star"), names.index("grass"), -1]])
    assert shape_labels(labels).tolist() == [[list(SHAPES).index("star"), -1, -1]]


def test_trimmed_text_encoding_equals_open_clip() -> None:
    import open_clip

    from streamseg.train.clip.loop import encode_text_trimmed

    torch.manual_seed(0)
    model = create_shapes_clip(shapes_clip_config("resnet", image_size=64)).eval()
    tokens = open_clip.get_tokenizer("RN50")(["a red star.", "there is a big blue plus sign"])
    with torch.no_grad():
        torch.testing.assert_close(
            encode_text_trimmed(model, tokens), model.encode_text(tokens), rtol=1e-4, atol=1e-5
        )


def test_shape_head_loss_counts_only_things() -> None:
    torch.manual_seed(0)
    import open_clip

    model = create_shapes_clip(shapes_clip_config("resnet", image_size=64))
    head = torch.nn.Linear(256, 6)
    batch = build_batch(seed=4, step=0, batch_size=3, config=clip_scene_config(64), device="cpu")
    prompts = class_prompts(np.random.default_rng(0))
    tokenizer = open_clip.get_tokenizer("RN50")
    losses = clip_losses(model, tokenizer, batch, prompts, 0.0, head)
    assert set(losses) == {"contrastive", "region", "region_accuracy", "shape", "shape_accuracy"}
    losses["shape"].backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    assert "shape" not in clip_losses(model, tokenizer, batch, prompts, 0.0)
