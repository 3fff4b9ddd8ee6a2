"""Careless input gives one clear line and exit 2, never a traceback (issue 23).

Each case runs through the real entry point and asserts: exit 2, one line on stderr naming the
file and the problem, no traceback, and every input file byte-identical afterwards.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import videos
from fake_segmenter import make_blob_video

from streamseg.cli import main
from streamseg.commands.run import FACTORY_ENV


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile_input")
    (root / "huge.png").write_bytes(_png_claiming(100_000, 100_000))
    (root / "bombs").mkdir()
    for name in ("000.png", "001.png"):
        (root / "bombs" / name).write_bytes(_png_claiming(100_000, 100_000))
    panoptic = {
        "images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 4}],
        "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": []}],
        "categories": [{"id": 1, "name": "cat", "isthing": 1}],
    }
    (root / "panoptic.json").write_text(json.dumps(panoptic))
    (root / "results.json").write_text("[]")
    make_blob_video(root / "v.mp4", frames=4)
    videos.make_empty(root / "empty.mp4")
    videos.make_not_a_video(root / "text.mp4")
    videos.make_audio_only(root / "audio.m4a")
    (root / "random.mp4").write_bytes(bytes(range(256)) * 64)
    (root / "broken.json").write_text('{"annotations": [')
    (root / "classes.txt").write_text("cat\ndog\n")
    return root


def _run_with(*extra: str) -> Callable[[Path], list[str]]:
    """`streamseg run v.mp4 --out o.zarr EXTRA...` in the workspace ({r} = its path)."""
    return lambda r: ["run", f"{r}/v.mp4", "--out", f"{r}/o.zarr", *(e.format(r=r) for e in extra)]


def _run_on(name: str) -> Callable[[Path], list[str]]:
    """`streamseg run NAME --out o.zarr` in the workspace."""
    return lambda r: ["run", f"{r}/{name}", "--out", f"{r}/o.zarr"]


@dataclass(frozen=True)
class Case:
    name: str
    argv: Callable[[Path], list[str]]
    names: str  # the file the error line must name
    problem: str  # and the words that state the problem


CASES = [
    Case(
        "image with a decompression-bomb header",
        lambda r: ["image", f"{r}/huge.png", "--out", f"{r}/out"],
        "huge.png",
        "too large",
    ),
    Case(
        "run on a folder of decompression bombs",
        lambda r: ["run", f"{r}/bombs", "--out", f"{r}/b.zarr"],
        "bombs",
        "could be read",
    ),
    Case(
        "eval instance with a panoptic ground truth",
        lambda r: [
            "eval", "instance", "--gt-json", f"{r}/panoptic.json",
            "--pred-json", f"{r}/results.json",
        ],
        "panoptic.json",
        "COCO panoptic",
    ),
    # Options: checked before anything is created (no store is left "running").
    *(
        Case(f"run {' '.join(extra)}", _run_with(*extra), names, problem)
        for extra, names, problem in (
            (("--stride", "0"), "--stride", "at least 1"),
            (("--start", "5", "--end", "1"), "--end", "later than --start"),
            (("--max-frames", "0"), "--max-frames", "at least 1"),
            (("--score-threshold", "nan"), "--score-threshold", "[0, 1]"),
            (("--vocab", ""), "--vocab", "empty"),
            (("--vocab", "cat", "--vocab-file", "{r}/classes.txt"), "--vocab-file", "at most one"),
            (("--vocab-file", "{r}/classes.txt", "--stuff", "sky"), "sky", "--stuff"),
            (("--stuff", "sky"), "--stuff", "--vocab"),
            (("--overlay", "{r}/noext"), "noext", ".mp4"),
        )
    ),
    # Cases that already worked before issue 23: kept here so that they stay so.
    Case("run on a missing file", _run_on("missing.mp4"), "missing.mp4", "no such file"),
    Case("run on an empty file", _run_on("empty.mp4"), "empty.mp4", "empty"),
    Case("run on a text file named .mp4", _run_on("text.mp4"), "text.mp4", "not a"),
    Case("run on random bytes", _run_on("random.mp4"), "random.mp4", "not a"),
    Case("run on an audio-only file", _run_on("audio.m4a"), "audio.m4a", "no video stream"),
    Case(
        "image on a missing file",
        lambda r: ["image", f"{r}/missing.png", "--out", f"{r}/img"],
        "missing.png",
        "no such",
    ),
    Case(
        "eval panoptic with a broken JSON",
        lambda r: [
            "eval", "panoptic", "--gt-json", f"{r}/broken.json", "--gt-dir", f"{r}",
            "--pred-json", f"{r}/broken.json", "--pred-dir", f"{r}",
        ],
        "broken.json",
        "JSON",
    ),
    Case(
        "image --stuff not in --vocab-file",
        lambda r: [
            "image", f"{r}/v.mp4", "--out", f"{r}/img", "--vocab-file", f"{r}/classes.txt",
            "--stuff", "sky",
        ],
        "sky",
        "--stuff",
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_one_line_and_exit_2(
    case: Case, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(FACTORY_ENV, "fake_segmenter:make_fake")
    before = {p: p.read_bytes() for p in workspace.rglob("*") if p.is_file()}
    assert main(case.argv(workspace)) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert case.names in lines[0] and case.problem in lines[0], lines[0]
    assert {p: p.read_bytes() for p in workspace.rglob("*") if p.is_file()} == before
    assert not (workspace / "o.zarr").exists() and not (workspace / "img").exists()


def test_info_into_a_closed_pipe_has_no_traceback(tmp_path: Path) -> None:
    """`streamseg info STORE | head -1`: the reader leaves before streamseg writes."""
    video = make_blob_video(tmp_path / "v.mp4", frames=3)
    env = {**os.environ, FACTORY_ENV: "fake_segmenter:make_fake"}
    env["PYTHONPATH"] = str(Path(__file__).parent)
    store = tmp_path / "s.zarr"
    subprocess.run(
        [sys.executable, "-m", "streamseg", "run", str(video), "--out", str(store), "--quiet"],
        env=env,
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "streamseg", "info", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    process.stdout.close()  # the reader is gone before the first line is written
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
