"""The shipped default model (weights/shapes-tiny/) and the README's first command.

`streamseg run weights/shapes-tiny/sample.mp4 --out ... --overlay ...` must work in a fresh
clone with nothing downloaded: no --model (the embedded model is the default) and no --vocab
(the model's default vocabulary). The shipped model is a deliverable: without the folder this
test FAILS, unless STREAMSEG_ALLOW_NO_DEFAULT=1 says the model is knowingly absent (while it
is being trained). The same checks run on a tiny random-weight stand-in shipped into a
temporary weights folder, so the plumbing is tested either way.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import av
import pytest
import torch

from streamseg.cli import main
from streamseg.model import embedded as segmenter_module
from streamseg.model.checkpoint import WEIGHTS_FILE, save_folder
from streamseg.model.config import PRESETS
from streamseg.model.default_vocab import folder_default_vocabulary
from streamseg.model.fcclip import build_model
from streamseg.model.ship import MAX_SHIPPED_BYTES, ship_folder, verify_sums
from streamseg.model.vocab import parse_vocab

REPO = Path(__file__).resolve().parents[1]
REPO_WEIGHTS = REPO / "weights"
NAME = "shapes-tiny"
SAMPLE = REPO_WEIGHTS / NAME / "sample.mp4"
FRAMES = 24
MAX_SAMPLE_BYTES = 2 * 10**6


def check_default_model(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> dict:
    """Every check of a shipped default model in `weights`/shapes-tiny; returns `info`'s JSON.

    `segmenter_module.WEIGHTS_DIRS` / `DEFAULT_MODEL` must already point at `weights`."""
    folder = weights / NAME
    assert segmenter_module.DEFAULT_MODEL == NAME
    assert segmenter_module.find_model_folder(NAME) == folder
    sums = verify_sums(folder)  # the files are the ones shipped
    assert WEIGHTS_FILE in sums and (folder / WEIGHTS_FILE).stat().st_size <= MAX_SHIPPED_BYTES
    assert folder_default_vocabulary(folder) == parse_vocab("shapes")
    sample = folder / "sample.mp4"
    assert sample.stat().st_size <= MAX_SAMPLE_BYTES
    # The README's first command (on the first frames), with neither --model nor --vocab.
    out = tmp_path / "out"  # absent, as in a fresh clone: `run` makes it
    store, overlay = out / "sample.zarr", out / "sample.mp4"
    args = ["run", str(sample), "--out", str(store), "--overlay", str(overlay)]
    assert main([*args, "--max-frames", str(FRAMES), "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["info", str(store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == FRAMES and info["segments"] > 0 and info["tracks"] > 1
    assert info["model"].startswith(f"{NAME}@sha256:{sums[WEIGHTS_FILE]}")
    known = set(parse_vocab("shapes").names)
    assert info["classes"] and set(info["classes"]) <= known
    with av.open(str(overlay)) as container:
        assert sum(1 for _ in container.decode(video=0)) == FRAMES
    return info


def test_shipped_default_model(tmp_path, capsys) -> None:
    if not (REPO_WEIGHTS / NAME / "config.json").is_file():
        if os.environ.get("STREAMSEG_ALLOW_NO_DEFAULT") == "1":
            pytest.skip("weights/shapes-tiny/ not shipped yet (STREAMSEG_ALLOW_NO_DEFAULT=1)")
        pytest.fail(
            "weights/shapes-tiny/config.json missing: the embedded default model is a "
            "deliverable (`streamseg weights ship RUN/fcclip/model weights/shapes-tiny "
            "--default-vocab shapes`); set STREAMSEG_ALLOW_NO_DEFAULT=1 while it is trained"
        )
    info = check_default_model(REPO_WEIGHTS, tmp_path, capsys)
    assert "-random-seed" not in info["model"]


def test_sample_video_ships() -> None:
    """The sample is committed data: small, 256 px, every frame decodable."""
    assert SAMPLE.stat().st_size <= MAX_SAMPLE_BYTES
    with av.open(str(SAMPLE)) as container:
        stream = container.streams.video[0]
        assert (stream.height, stream.width) == (256, 256)
        assert sum(1 for _ in container.decode(stream)) == 84


def test_stand_in_default_model(tmp_path, monkeypatch, capsys) -> None:
    """The same checks on a random-weight tiny model shipped into a temporary weights folder."""
    torch.manual_seed(0)
    config = PRESETS["tiny-convnext"]
    save_folder(build_model(config), config, tmp_path / "run" / "model")
    weights = tmp_path / "weights"
    ship_folder(tmp_path / "run" / "model", weights / NAME, default_vocab="shapes")
    shutil.copyfile(SAMPLE, weights / NAME / "sample.mp4")
    monkeypatch.setattr(segmenter_module, "WEIGHTS_DIRS", (weights,))
    # What the module computes at import when the folder exists.
    assert segmenter_module.find_model_folder(NAME) is not None
    monkeypatch.setattr(segmenter_module, "DEFAULT_MODEL", NAME)
    monkeypatch.setenv("STREAMSEG_CACHE", str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check_default_model(weights, tmp_path, capsys)


def readme_first_command(readme: Path) -> list[str]:
    """The `streamseg ...` part of the first command of README.md's Quickstart."""
    section = readme.read_text(encoding="utf-8").split("## Quickstart", 1)[1]
    line = section.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()[0]
    command = line.split("&&")[-1].strip()
    assert command.startswith("streamseg "), line
    return shlex.split(command)


def test_readme_first_command_in_fresh_clone(tmp_path) -> None:
    """The README's first command in a clone of the committed tree (so a model or sample left
    uncommitted fails here), with the clone's own code first on the path."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{REPO}", str(clone)], check=True)
    command = readme_first_command(clone / "README.md")
    if command[1] == "run":
        command += ["--max-frames", str(FRAMES)]  # the first frames are enough here
    env = {
        **os.environ,
        "PYTHONPATH": str(clone),
        "STREAMSEG_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "streamseg", *command[1:]],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outputs = [Path(a) for a in command if a.startswith("out/")]
    assert outputs and all((clone / path).exists() for path in outputs)
    if command[1] == "run":
        info = subprocess.run(
            [sys.executable, "-m", "streamseg", "info", str(outputs[0]), "--json"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        summary = json.loads(info.stdout)
        assert summary["frames"] == FRAMES and summary["tracks"] > 1
        assert summary["model"].startswith(f"{NAME}@sha256:")


# How far below the model card's figures (percentage points) a fresh measurement may fall.
# Validation data and inference are deterministic, so on the machine that made the card the
# figures repeat exactly; elsewhere only float and codec differences move them.
TOLERANCE_POINTS = 3.0


def card_figures(measure_json: dict) -> dict[str, float]:
    """The regression-tested figures of a `streamseg measure` JSON, in percent."""
    ensemble = measure_json["images"]["modes"]["ensemble"]
    return {
        "PQ seen": 100 * ensemble["seen"]["pq"],
        "PQ unseen": 100 * ensemble["unseen"]["pq"],
        "STQ": 100 * measure_json["videos"]["stq"],
    }


@pytest.mark.slow
def test_shipped_model_quality(tmp_path) -> None:
    """Fresh validation data, the card's settings: PQ seen / unseen (ensemble) and video STQ
    no more than TOLERANCE_POINTS below weights/shapes-tiny/measure.json (the card's source)."""
    card_json = REPO_WEIGHTS / NAME / "measure.json"
    if not card_json.is_file():
        if os.environ.get("STREAMSEG_ALLOW_NO_DEFAULT") == "1":
            pytest.skip("weights/shapes-tiny/ not shipped yet (STREAMSEG_ALLOW_NO_DEFAULT=1)")
        pytest.fail(f"{card_json} missing: ship it with the model (weights/shapes-tiny/README.md)")
    from streamseg.bench.quality import measure

    card = json.loads(card_json.read_text())
    settings = card["settings"]
    fresh = measure(
        NAME,
        tmp_path / "measure",
        images=settings["n_images"],
        videos=settings["n_videos"],
        frames=settings["frames"],
        size=settings["size"],
        seed=settings["seed"],
        device="cpu",
        image_format=settings["image_format"],
        batch_size=settings["batch_size"],
    )
    assert fresh["settings"]["model_sha256"] == card["settings"]["model_sha256"]
    expected, measured = card_figures(card), card_figures(fresh)
    for name, value in expected.items():
        assert measured[name] >= value - TOLERANCE_POINTS, (name, measured[name], value)
