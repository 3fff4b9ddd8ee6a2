"""The model card generator (streamseg/model/card.py) on small fake inputs."""

from __future__ import annotations

import hashlib
import json

from streamseg.cli import main
from streamseg.model.card import NOT_MEASURED, build_model_card, training_time

RECIPE = """# test recipe
#   streamseg clip train --pipeline R.toml --out RUN/clip \\
#       [--max-minutes 85]          # resume note
#   streamseg train --pipeline R.toml --out RUN/fcclip

[clip]
trunk = "resnet"
steps = 30
batch_size = 8
image_size = 128
lr = 0.001

[fcclip]
model = "tiny-r50"
vocabulary = "shapes"

[fcclip.data]
keep_categories = ["red circle", "grass"]

[fcclip.optim]
steps = 20
batch_size = 4
lr = 0.0003
schedule = "poly"
"""


def _write_jsonl(path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"cut', encoding="utf-8")


def test_training_time_sums_resumed_sessions() -> None:
    records = [
        {"step": 10, "time": 100.0},
        {"step": 20, "time": 200.0},
        {"step": 20, "eval": {"PQ": 1.0}},
        {"step": 30, "time": 50.0},  # a resumed session: its clock starts again
        {"step": 40, "time": 150.0},
    ]
    assert training_time(records) == {"steps": 40, "seconds": 350.0, "sessions": 2}
    assert training_time([{"step": 3}]) is None


def test_card_from_fake_runs(tmp_path) -> None:
    model = tmp_path / "shapes-tiny"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"0123456789")
    (model / "sample.mp4").write_bytes(b"x" * 20000)
    header = {
        "format": "streamseg-fcclip",
        "default_vocab": "shapes",
        "storage_dtype": "float16",
        "config": {"clip_model": "shapes-rn", "num_queries": 16, "test_short_edge": 256},
    }
    (model / "config.json").write_text(json.dumps(header))
    recipe = tmp_path / "R.toml"
    recipe.write_text(RECIPE)
    clip_run, fcclip_run = tmp_path / "clip", tmp_path / "fcclip"
    _write_jsonl(clip_run / "log.jsonl", [{"step": 10, "time": 60.0}, {"step": 30, "time": 3600.0}])
    _write_jsonl(
        fcclip_run / "metrics.jsonl",
        [
            {"step": 10, "time": 30.0},
            {"step": 20, "time": 90.0},
            {"step": 20, "eval": {"PQ": 41.25}},
        ],
    )
    clip_eval = tmp_path / "clip_eval.json"
    clip_eval.write_text(
        json.dumps(
            {
                "size": 256,
                "single": {"all": 0.5, "things": 0.5, "color": 0.875, "shape": 0.25, "count": 8},
                "regions": {
                    "all": 0.4,
                    "stuff": 0.75,
                    "count": 20,
                    "per_class": {"black hexagon": 0.5, "grass": 1.0},
                },
            }
        )
    )
    measure = tmp_path / "m" / "measure.json"
    measure.parent.mkdir()
    measure.write_text(
        json.dumps(
            {
                "settings": {"model": "shapes-tiny", "n_images": 10, "n_videos": 0, "seed": 7},
                "images": {
                    "seen_classes": ["red circle", "grass"],
                    "unseen_classes": ["black hexagon"],
                    "modes": {"ensemble": {"all": {"pq": 0.3125, "sq": 0.75}, "unseen": {}}},
                },
            }
        )
    )
    card = build_model_card(
        model_folder=model,
        clip_eval=clip_eval,
        measure=measure,
        clip_run=clip_run,
        fcclip_run=fcclip_run,
        recipe=recipe,
    )
    sha = hashlib.sha256(b"0123456789").hexdigest()
    assert f"sha256 `{sha}`" in card and "float16 storage" in card
    assert "- `sample.mp4`: 0.02 MB, the README's first input, made by `streamseg synth" in card
    # Recipe commands, continuation lines joined, inline comments dropped.
    assert "streamseg clip train --pipeline R.toml --out RUN/clip [--max-minutes 85]\n" in card
    assert "20 steps of 4 images, lr 0.0003, poly schedule" in card
    # Training time: steps, summed wall time, and the command that made each log.
    clip_train = f"`streamseg clip train --pipeline {recipe} --out {clip_run}`"
    assert f"| CLIP | {clip_train} | 30 | 1 h 00 min | 1 |" in card
    fcclip_train = f"`streamseg train --pipeline {recipe} --out {fcclip_run}`"
    assert f"| FC-CLIP | {fcclip_train} | 20 | 1 min 30 s | 1 |" in card
    assert "PQ 41.2" in card
    # CLIP table: percentages, missing values said plainly, the command named.
    assert f"`streamseg clip eval --out {clip_run} --size 256 --n 8 --json {clip_eval}`" in card
    assert f"| single objects | 50.0 | 50.0 | {NOT_MEASURED} | 87.5 | 25.0 | 8 |" in card
    assert f"| regions (mask-pooled) | 40.0 | {NOT_MEASURED} | 75.0 |" in card
    # Measure table: only the ensemble was measured; videos not at all.
    assert f"`streamseg measure --out {measure.parent} --images 10 --videos 0 --seed 7`" in card
    row = f"| ensemble | 31.2 | {NOT_MEASURED} | {NOT_MEASURED} | {NOT_MEASURED} | {NOT_MEASURED} | 75.0 | {NOT_MEASURED} |"  # noqa: E501
    assert row in card
    assert "| in-vocab | " + " | ".join([NOT_MEASURED] * 7) + " |" in card
    assert "| " + " | ".join([NOT_MEASURED] * 6) + " |" in card  # the video row
    assert "Seen classes (2, from `streamseg measure` (measure.json)): red circle, grass." in card
    assert "Unseen classes (1): black hexagon." in card
    # Every class of the CLIP evaluation, marked by FC-CLIP's split.
    assert f"| black hexagon | {NOT_MEASURED} | 50.0 | unseen (held out) |" in card
    assert f"| grass | {NOT_MEASURED} | 100.0 | seen |" in card


def test_card_with_nothing_measured_uses_recipe_split(tmp_path) -> None:
    recipe = tmp_path / "R.toml"
    recipe.write_text(RECIPE)
    out = tmp_path / "card" / "MODEL_CARD.md"
    code = main(
        ["weights", "card", "--model", str(tmp_path / "none"), "--recipe", str(recipe),
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    card = out.read_text()
    assert "Seen classes (2, from the recipe): red circle, grass." in card
    assert "Unseen classes (52): " in card and "black hexagon" in card
    clip_train = f"`streamseg clip train --pipeline {recipe} --out RUN/clip`"
    assert f"| CLIP | {clip_train} | {NOT_MEASURED} | {NOT_MEASURED} | - |" in card
