"""`streamseg measure`: ensemble modes, seen/unseen split, scores equal to `streamseg eval`."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from streamseg.bench.quality import (
    NO_TRAIN_VOCABULARY,
    class_split,
    generate_validation,
    measure,
    score_images,
)
from streamseg.cli import main
from streamseg.errors import UserError
from streamseg.model.checkpoint import file_sha256, save_folder
from streamseg.model.config import PRESETS
from streamseg.model.fcclip import build_model
from streamseg.model.segmenter import Segmenter
from streamseg.model.vocab import parse_vocab

# Held out as in pipelines/train-shapes-tiny.toml: the 8 hexagons and snow.
UNSEEN = {c.name for c in parse_vocab("shapes").classes if "hexagon" in c.name or c.name == "snow"}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny FC-CLIP with random weights whose config holds out UNSEEN."""
    seen_synonyms = tuple(
        s for c in parse_vocab("shapes").classes if c.name not in UNSEEN for s in c.synonyms
    )
    config = replace(
        PRESETS["tiny-convnext"],
        train_vocabulary=seen_synonyms,
        test_short_edge=64,
        test_max_size=64,
    )
    torch.manual_seed(0)
    return save_folder(build_model(config), config, tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def segmenter(model_folder):
    return Segmenter.from_pretrained(model_folder, device="cpu")


@pytest.fixture(scope="module")
def measured(segmenter, tmp_path_factory):
    out = tmp_path_factory.mktemp("measure")
    return out, measure(segmenter, out, images=3, videos=1, frames=3, size=64, seed=7)


def test_class_split():
    vocabulary = parse_vocab("shapes")
    synonyms = [s for c in vocabulary.classes if c.name not in UNSEEN for s in c.synonyms]
    seen, note = class_split(vocabulary, synonyms)
    assert note is None
    assert {n for n, s in zip(vocabulary.names, seen, strict=True) if not s} == UNSEEN
    # One synonym is enough: "red disc" alone makes "red circle" seen.
    seen, _ = class_split(vocabulary, ["red disc"])
    assert [n for n, s in zip(vocabulary.names, seen, strict=True) if s] == ["red circle"]
    seen, note = class_split(vocabulary, ())
    assert all(seen) and note == NO_TRAIN_VOCABULARY


def test_modes_change_class_probabilities(segmenter):
    segmenter.set_vocabulary(parse_vocab("shapes"), cache_dir=None)
    frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    own = (segmenter.config.ensemble_alpha, segmenter.config.ensemble_beta)
    probs = {}
    for mode, (alpha, beta) in {"in": (0.0, 0.0), "out": (1.0, 1.0), "ens": own}.items():
        segmenter.set_ensemble(alpha, beta)
        raw = segmenter.segment_raw([frame])
        probs[mode] = raw["class_probs"][0]
    segmenter.set_ensemble(*own)
    assert not torch.allclose(probs["in"], probs["out"])
    assert not torch.allclose(probs["in"], probs["ens"])
    assert not torch.allclose(probs["out"], probs["ens"])
    # alpha = beta = 0 is the in-vocabulary classifier alone: softmax over classes x (1 - void).
    in_logits, out_logits = raw["in_vocab_logits"][0], raw["out_vocab_logits"][0]
    void = in_logits.softmax(-1)[:, -1:]
    torch.testing.assert_close(probs["in"][:, :-1], in_logits[:, :-1].softmax(-1) * (1 - void))
    # alpha = beta = 1: the out-of-vocabulary classifier alone (tiny-convnext, as the official
    # ConvNeXt config, applies it to every query, not only those with a valid pooling mask).
    assert not segmenter.config.ensemble_on_valid_mask
    torch.testing.assert_close(probs["out"][:, :-1], out_logits[:, :-1].softmax(-1) * (1 - void))
    with pytest.raises(UserError, match="must be in"):
        segmenter.set_ensemble(1.5, 0.0)


def test_score_images_seen_unseen_by_hand(tmp_path, capsys):
    data = generate_validation(tmp_path / "data", images=3, videos=0, frames=1, size=64, seed=3)
    data = data["images"]
    gt = json.loads((data / "panoptic.json").read_text())
    counts: dict[int, int] = {}
    for annotation in gt["annotations"]:
        for segment in annotation["segments_info"]:
            counts[segment["category_id"]] = counts.get(segment["category_id"], 0) + 1
    assert len(counts) >= 3
    # Prediction = ground truth with every segment of class X renamed to class Y: X gets only
    # false negatives (PQ 0), Y n_Y true positives of IoU 1 and n_X false positives
    # (PQ n_Y / (n_Y + n_X / 2)), every other class PQ 1. Seen = {X, Y}, the rest unseen.
    x, y = sorted(counts)[:2]
    for annotation in gt["annotations"]:
        for segment in annotation["segments_info"]:
            if segment["category_id"] == x:
                segment["category_id"] = y
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps(gt))
    result = score_images(
        data / "panoptic.json", data / "panoptic", pred_json, data / "panoptic", {x, y}
    )
    pq_y = counts[y] / (counts[y] + counts[x] / 2)
    assert result["seen"]["n"] == 2
    assert result["seen"]["pq"] == pytest.approx(pq_y / 2, abs=1e-12)
    assert result["unseen"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": len(counts) - 2}
    assert result["all"]["pq"] == pytest.approx((len(counts) - 2 + pq_y) / len(counts))
    # The same files through `streamseg eval panoptic`: the same numbers, exactly.
    args = ["--gt-json", str(data / "panoptic.json"), "--gt-dir", str(data / "panoptic")]
    args += ["--pred-json", str(pred_json), "--pred-dir", str(data / "panoptic")]
    assert main(["eval", "panoptic", "--json", *args]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert result["all"] == evaluated["All"] and result["stuff"] == evaluated["Stuff"]
    # A group with no occurring class has no PQ (not a misleading 0).
    nobody = score_images(
        data / "panoptic.json", data / "panoptic", pred_json, data / "panoptic", set()
    )
    assert nobody["seen"] == {"pq": None, "sq": None, "rq": None, "n": 0}


def test_measure_json_fields(measured, model_folder):
    out, result = measured
    assert json.loads((out / "measure.json").read_text()) == json.loads(json.dumps(result))
    settings = result["settings"]
    for key in ("n_images", "n_videos", "frames", "size", "seed", "model_sha256", "device"):
        assert key in settings
    assert (settings["n_images"], settings["n_videos"], settings["frames"]) == (3, 1, 3)
    assert settings["image_seeds"] == [7, 9] and settings["video_seeds"] == [7, 7]
    assert set(settings["unseen_classes"]) == UNSEEN
    assert settings["model_sha256"] == file_sha256(model_folder / "model.safetensors")
    assert settings["elapsed_seconds"] > 0
    modes = result["images"]["modes"]
    assert list(modes) == ["in-vocab", "out-of-vocab", "ensemble"]
    assert (modes["in-vocab"]["alpha"], modes["out-of-vocab"]["beta"]) == (0.0, 1.0)
    assert (modes["ensemble"]["alpha"], modes["ensemble"]["beta"]) == (0.4, 0.8)
    for mode in modes.values():
        for group in ("all", "seen", "unseen", "things", "stuff"):
            assert set(mode[group]) == {"pq", "sq", "rq", "n"}
        assert mode["per_class"]["red hexagon"]["seen"] is False
        assert mode["per_class"]["red circle"]["seen"] is True
    videos = result["videos"]
    assert (videos["videos"], videos["frames"]) == (1, 3)
    for key in ("vpq", "stq", "aq", "sq"):
        assert 0.0 <= videos[key] <= 1.0


def test_measure_restores_the_ensemble(measured, segmenter):
    assert (segmenter.config.ensemble_alpha, segmenter.config.ensemble_beta) == (0.4, 0.8)


def test_pq_equals_streamseg_eval(measured, capsys):
    out, result = measured
    data = out / "data" / "images"
    for mode in ("in-vocab", "ensemble"):
        pred = out / "images" / mode
        assert (
            main(
                [
                    "eval",
                    "panoptic",
                    "--json",
                    "--gt-json",
                    str(data / "panoptic.json"),
                    "--gt-dir",
                    str(data / "panoptic"),
                    "--pred-json",
                    str(pred / "predictions.json"),
                    "--pred-dir",
                    str(pred / "panoptic"),
                ]
            )
            == 0
        )
        evaluated = json.loads(capsys.readouterr().out)
        assert result["images"]["modes"][mode]["all"] == evaluated["All"]
        assert result["images"]["modes"][mode]["things"] == evaluated["Things"]
    # The video numbers equal `streamseg eval video --pred-store` on the (single) store.
    videos = out / "data" / "videos"
    assert (
        main(
            [
                "eval",
                "video",
                "--json",
                "--gt-json",
                str(videos / "panoptic.json"),
                "--gt-dir",
                str(videos / "panomasks"),
                "--pred-store",
                result["videos"]["stores"][0],
            ]
        )
        == 0
    )
    evaluated = json.loads(capsys.readouterr().out)
    assert result["videos"]["stq"] == evaluated["stq"]["stq"]
    assert result["videos"]["vpq"] == evaluated["vpq"]["mean"]["All"]["pq"]


def test_cli_table_and_small_values(model_folder, tmp_path, capsys):
    shutil.rmtree(tmp_path, ignore_errors=True)
    code = main(
        [
            "measure",
            "--model",
            str(model_folder),
            "--out",
            str(tmp_path),
            "--images",
            "1",
            "--videos",
            "0",
            "--size",
            "64",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    for word in ("in-vocab", "out-of-vocab", "ensemble", "PQ seen", "PQ unseen", "unseen classes"):
        assert word in table
    assert json.loads((tmp_path / "measure.json").read_text())["videos"] is None
    assert main(["measure", "--out", str(tmp_path), "--images", "0", "--videos", "0"]) == 2
    assert main(["measure", "--out", str(tmp_path), "--videos", "1", "--size", "65"]) == 2
