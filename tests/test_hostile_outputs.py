"""Careless and hostile input (issue 23, the urgent part): an output never replaces an input
or a file streamseg did not write, and no checkpoint read runs a planted pickle.

Each CLI case runs through the real entry point and asserts: exit 2, one line on stderr naming
the file and the problem, no traceback, and every input and pre-existing file byte-identical.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_segmenter import make_blob_video

from streamseg.cli import main
from streamseg.commands.run import FACTORY_ENV
from streamseg.errors import UserError


@pytest.fixture(autouse=True)
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FACTORY_ENV, "fake_segmenter:make_fake")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A video, its finished store, a text file named like a video and a user's JSON files."""
    root = tmp_path_factory.mktemp("hostile")
    make_blob_video(root / "v.mp4", frames=6)
    os.environ[FACTORY_ENV] = "fake_segmenter:make_fake"
    try:
        assert main(["run", str(root / "v.mp4"), "--out", str(root / "s.zarr"), "--quiet"]) == 0
    finally:
        del os.environ[FACTORY_ENV]
    (root / "notes.mp4").write_text("my notes, not a video\n")
    (root / "mine").mkdir()
    (root / "mine" / "panoptic.json").write_text('{"mine": true}\n')
    (root / "mine" / "predictions.json").write_text('{"mine": true}\n')
    (root / "frame.png").write_bytes(_png())
    return root


def _png() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@dataclass(frozen=True)
class Case:
    name: str
    argv: Callable[[Path], list[str]]
    names: str  # a word the error line must contain (the file it is about)
    problem: str  # and the problem it states


CASES = [
    Case(
        "run --overlay is the input video",
        lambda r: ["run", f"{r}/v.mp4", "--out", f"{r}/new.zarr", "--overlay", f"{r}/v.mp4"],
        "v.mp4",
        "input",
    ),
    Case(
        "run --overlay is the input, even with --overwrite",
        lambda r: [
            "run",
            f"{r}/v.mp4",
            "--out",
            f"{r}/new.zarr",
            "--overlay",
            f"{r}/v.mp4",
            "--overwrite",
        ],
        "v.mp4",
        "input",
    ),
    Case(
        "run --overlay replaces a file streamseg did not write",
        lambda r: ["run", f"{r}/v.mp4", "--out", f"{r}/new.zarr", "--overlay", f"{r}/notes.mp4"],
        "notes.mp4",
        "not written by streamseg",
    ),
    Case(
        "run --overlay is a folder",
        lambda r: ["run", f"{r}/v.mp4", "--out", f"{r}/new.zarr", "--overlay", f"{r}/mine"],
        "mine",
        "folder",
    ),
    Case(
        "run --overlay without a video suffix",
        lambda r: ["run", f"{r}/v.mp4", "--out", f"{r}/new.zarr", "--overlay", f"{r}/o.txt"],
        "o.txt",
        ".mp4",
    ),
    Case(
        "render --out is the source video",
        lambda r: ["render", f"{r}/s.zarr", "--video", f"{r}/v.mp4", "--out", f"{r}/v.mp4"],
        "v.mp4",
        "input",
    ),
    Case(
        "render --out replaces a file streamseg did not write",
        lambda r: ["render", f"{r}/s.zarr", "--video", f"{r}/v.mp4", "--out", f"{r}/notes.mp4"],
        "notes.mp4",
        "not written by streamseg",
    ),
    Case(
        "export over a user's panoptic.json",
        lambda r: ["export", f"{r}/s.zarr", "--format", "coco-panoptic", "--out", f"{r}/mine"],
        "panoptic.json",
        "not written by streamseg",
    ),
    Case(
        "export into the store it reads",
        lambda r: ["export", f"{r}/s.zarr", "--format", "png", "--out", f"{r}/s.zarr"],
        "s.zarr",
        "input",
    ),
    Case(
        "export into another store",
        lambda r: ["export", f"{r}/s.zarr", "--format", "png", "--out", f"{r}/s.zarr/labels"],
        "s.zarr",
        "Zarr store",
    ),
    Case(
        "image over a user's predictions.json",
        lambda r: ["image", f"{r}/frame.png", "--out", f"{r}/mine"],
        "predictions.json",
        "not written by streamseg",
    ),
    Case(
        "image --out is an existing file",
        lambda r: ["image", f"{r}/frame.png", "--out", f"{r}/notes.mp4"],
        "notes.mp4",
        "not a folder",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_output_is_refused_and_nothing_changes(
    case: Case, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(workspace)
    assert main(case.argv(workspace)) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert case.names in lines[0] and case.problem in lines[0], lines[0]
    assert _snapshot(workspace) == before
    assert not (workspace / "new.zarr").exists()  # refused before a store was made


def test_own_outputs_are_replaced_and_user_files_with_overwrite(
    tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video, store = workspace / "v.mp4", workspace / "s.zarr"
    overlay = tmp_path / "o.mp4"
    for _ in range(2):  # the second render replaces the first: streamseg wrote it
        argv = ["render", str(store), "--video", str(video), "--out", str(overlay), "--quiet"]
        assert main(argv) == 0
    out = tmp_path / "export"
    argv = ["export", str(store), "--format", "coco-panoptic", "--out", str(out)]
    assert main(argv) == 0 and main(argv) == 0  # its own files: replaced without --overwrite
    (out / "panoptic.json").write_text("{}")  # edited by the user: no longer ours
    assert main(argv) == 2
    assert "panoptic.json" in capsys.readouterr().err
    assert (out / "panoptic.json").read_text() == "{}"
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "panoptic.json").read_text() != "{}"
    user = tmp_path / "user.mp4"
    user.write_text("not a video")
    argv = ["render", str(store), "--video", str(video), "--out", str(user), "--quiet"]
    assert main(argv) == 2
    assert main([*argv, "--overwrite"]) == 0
    assert user.read_bytes()[4:8] == b"ftyp"  # an mp4 now


def test_run_reuses_its_own_overlay(
    tmp_path: Path, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = workspace / "v.mp4"
    overlay = tmp_path / "o.mp4"
    argv = ["run", str(video), "--out", str(tmp_path / "a.zarr"), "--overlay", str(overlay)]
    assert main([*argv, "--quiet"]) == 0 and overlay.stat().st_size > 0
    # another store, the same overlay file: it is streamseg's, so it may be replaced
    argv = ["run", str(video), "--out", str(tmp_path / "b.zarr"), "--overlay", str(overlay)]
    assert main([*argv, "--quiet"]) == 0


# --- no checkpoint read runs a planted pickle -------------------------------------------------


class _Payload:
    """Unpickling this calls `Path.touch` on the marker: code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (Path.touch, (self.marker,))


def _plant(path: Path, marker: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": _Payload(marker), "step": 1}, path)
    with pytest.raises(FileNotFoundError):
        marker.stat()  # planted, not yet run


def test_clip_train_resume_does_not_run_a_pickle(tmp_path: Path) -> None:
    from streamseg.train.clip.loop import ClipTrainConfig, train_clip

    out, marker = tmp_path / "run", tmp_path / "ran"
    _plant(out / "last.pt", marker)
    config = ClipTrainConfig(trunk="convnext", image_size=64, model_image_size=64, batch_size=2)
    with pytest.raises(UserError, match="last.pt: not a resumable checkpoint"):
        train_clip(config, out, max_steps=1)
    assert not marker.exists()


def test_train_resume_does_not_run_a_pickle(tmp_path: Path) -> None:
    from test_train_loop import _config, write_dataset

    from streamseg.train.loop import CHECKPOINT, train

    write_dataset(tmp_path / "data", count=2)
    out, marker = tmp_path / "run", tmp_path / "ran"
    _plant(out / CHECKPOINT, marker)
    with pytest.raises(UserError, match="not a resumable checkpoint"):
        train(_config(tmp_path / "data", steps=1, batch_size=1), out, resume=True, progress=False)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin"])
def test_model_weights_do_not_run_a_pickle(tmp_path: Path, suffix: str) -> None:
    from streamseg.model.checkpoint import read_state_dict, read_training_state

    path, marker = tmp_path / f"evil{suffix}", tmp_path / "ran"
    _plant(path, marker)
    with pytest.raises(UserError):
        read_state_dict(path)
    with pytest.raises(UserError):
        read_training_state(path)
    assert not marker.exists()


def test_cli_model_flag_does_not_run_a_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(FACTORY_ENV)
    path, marker = tmp_path / "evil.pth", tmp_path / "ran"
    _plant(path, marker)
    video = make_blob_video(tmp_path / "v.mp4", frames=2)
    assert main(["run", str(video), "--out", str(tmp_path / "s.zarr"), "--model", str(path)]) == 2
    assert "evil.pth" in capsys.readouterr().err
    assert not marker.exists()
