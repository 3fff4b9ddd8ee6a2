"""A damaged label store is one clear line and exit 2, never zeros or a traceback.

Stores are made by the real writer (`streamseg run` with the fake segmenter), then damaged as
the issue "Hostile and careless input" found them: progress.json deleted, a label shard deleted
or truncated, a table chunk truncated (and a few more). Every reading command and `run` must
exit 2 with one stderr line saying "damaged store" and naming what is wrong, and leave the
store's files as they were.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fake_segmenter import FakeSegmenter, make_blob_video

from streamseg.cli import main
from streamseg.commands.run import FACTORY_ENV
from streamseg.video.store import EMPTY_CHUNKS_KEY, LabelStore, open_store

# Small files so that a 24-frame video has several of each: label shards of 8 frames
# (c/0/0/0 .. c/2/0/0), table chunks of 16 rows, a commit every 8 frames.
PRESET = """
[model]
batch_size = 2
[store]
frames_per_shard = 8
table_chunk = 16
commit_frames = 8
"""
FRAMES = 24
# Batches the interrupted run segments before a Ctrl-C (see `make_interrupted`).
STOP_AFTER_BATCHES = 5


@pytest.fixture(autouse=True)
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FACTORY_ENV, "fake_segmenter:make_fake")


@dataclass(frozen=True)
class Workspace:
    root: Path
    video: Path
    preset: Path
    intact: Path  # a finished store, copied before each damage
    gt_json: Path  # the intact store exported as VIPSeg ground truth (video "v")
    gt_dir: Path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("damage")
    video = make_blob_video(root / "v.mp4", frames=FRAMES)
    preset = root / "p.toml"
    preset.write_text(PRESET)
    intact = root / "intact.zarr"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FACTORY_ENV, "fake_segmenter:make_fake")
        argv = ["run", str(video), "--out", str(intact), "--pipeline", str(preset)]
        assert main([*argv, "--quiet"]) == 0
    gt = root / "gt"
    argv = ["export", str(intact), "--format", "vipseg", "--out", str(gt), "--video", "v"]
    assert main([*argv, "--json"]) == 0
    return Workspace(root, video, preset, intact, gt / "panoptic.json", gt / "panomasks")


def _files(store: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()
    }


def _truncate(file: Path, size: int | None = None) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2 if size is None else size])


def _edit_attrs(store: Path, **changes: object) -> None:
    meta = json.loads((store / "zarr.json").read_text())
    attrs = meta["attributes"]["streamseg"]
    for key, value in changes.items():
        if value is None:
            attrs.pop(key, None)
        else:
            attrs[key] = value
    (store / "zarr.json").write_text(json.dumps(meta))


@dataclass(frozen=True)
class Damage:
    name: str
    apply: Callable[[Path], None]
    says: str  # words the error line must hold after "damaged store: "


DAMAGES = [
    Damage(
        "progress.json deleted",
        lambda s: (s / "progress.json").unlink(),
        "commit record progress.json missing",
    ),
    Damage(
        "progress.json garbage",
        lambda s: (s / "progress.json").write_text('{"frames": 24, '),
        "commit record progress.json unreadable",
    ),
    Damage(
        "progress.json ahead of the arrays",
        lambda s: (s / "progress.json").write_text('{"frames": 30, "segments": 69}'),
        "commit record progress.json says 30 frames",
    ),
    Damage(
        "label shard deleted",
        lambda s: (s / "labels/c/1/0/0").unlink(),
        "label shard c/1/0/0 missing (frames 8-15)",
    ),
    Damage(
        "label shard truncated",
        lambda s: _truncate(s / "labels/c/1/0/0"),
        "label shard c/1/0/0 truncated",
    ),
    Damage(
        "label shard emptied",
        lambda s: _truncate(s / "labels/c/2/0/0", 0),
        "label shard c/2/0/0 truncated (0 bytes; frames 16-23)",
    ),
    Damage(
        "table chunk truncated",
        lambda s: _truncate(s / "segments/area/c/1", 10),
        "segments/area chunk c/1 unreadable (rows 16-31",
    ),
    Damage(
        "table chunk deleted",
        lambda s: (s / "frames/time/c/1").unlink(),
        "frames/time chunk c/1 missing (rows 16-23)",
    ),
]


def _damaged(workspace: Workspace, damage: Damage, tmp_path: Path) -> Path:
    store = tmp_path / "s.zarr"
    shutil.copytree(workspace.intact, store)
    damage.apply(store)
    return store


def _commands(workspace: Workspace, store: Path, out: Path) -> dict[str, list[str]]:
    return {
        "info": ["info", str(store)],
        "info --json": ["info", str(store), "--json"],
        "info --check": ["info", "--check", str(store)],
        "export": ["export", str(store), "--format", "png", "--out", str(out / "png")],
        "render": ["render", str(store), "--out", str(out / "overlay.mp4"), "--quiet"],
        "eval video": [
            "eval", "video", "--gt-json", str(workspace.gt_json), "--gt-dir",
            str(workspace.gt_dir), "--pred-store", str(store), "--video", "v", "--windows", "1,2",
        ],
        "run": [
            "run", str(workspace.video), "--out", str(store), "--pipeline",
            str(workspace.preset), "--quiet",
        ],
    }  # fmt: skip


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.name for d in DAMAGES])
def test_every_command_refuses_a_damaged_store(
    damage: Damage, workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _damaged(workspace, damage, tmp_path)
    before = _files(store)
    capsys.readouterr()
    for command, argv in _commands(workspace, store, tmp_path).items():
        assert main(argv) == 2, command
        line = _one_error_line(capsys)
        assert line.startswith(f"streamseg {argv[0]}: error: {store}: damaged store: "), line
        assert damage.says in line, (command, line)
        if command == "run":
            assert line.endswith("; --overwrite to start over"), line
        assert _files(store) == before, f"{command} changed the damaged store"
    assert not (tmp_path / "png").exists() or not any((tmp_path / "png").rglob("*.png"))
    assert not (tmp_path / "overlay.mp4").exists()


def test_the_intact_store_passes_every_command(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same commands on the undamaged store: exit 0 (the damage tests' baseline)."""
    store = tmp_path / "s.zarr"
    shutil.copytree(workspace.intact, store)
    for command, argv in _commands(workspace, store, tmp_path).items():
        assert main(argv) == 0, (command, capsys.readouterr().err)
    out = capsys.readouterr().out
    assert f"{store}: ok" in out and "already done (24 frames)" in out
    assert "STQ 100.00" in out


def test_check_lists_every_problem(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s.zarr"
    shutil.copytree(workspace.intact, store)
    (store / "labels/c/0/0/0").unlink()
    (store / "frames/time/c/0").unlink()
    _truncate(store / "segments/score/c/2", 5)
    assert main(["info", "--check", str(store), "--json"]) == 2
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["ok"] is False and len(result["problems"]) == 3, result
    lines = captured.err.strip().splitlines()
    assert len(lines) == 3 and all(f"{store}: damaged store: " in line for line in lines), lines
    assert any("label shard c/0/0/0 missing (frames 0-7)" in line for line in lines)
    assert any("segments/score chunk c/2 unreadable (rows 32-47" in line for line in lines)
    assert any("frames/time chunk c/0 missing (rows 0-15)" in line for line in lines)
    # opening names the first and points at --check for the rest
    assert main(["info", str(store)]) == 2
    assert "(and 1 more: streamseg info --check" in _one_error_line(capsys)


def test_check_finds_a_corrupt_frame_inside_a_whole_shard(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes flipped inside a frame's data: the shard's index is fine, so opening does not see
    it; --check decodes every frame and does, and reading the frame is one line too."""
    store = tmp_path / "s.zarr"
    shutil.copytree(workspace.intact, store)
    shard = store / "labels/c/1/0/0"
    data = bytearray(shard.read_bytes())
    data[4:40] = bytes(36)  # inside frame 8's zstd frame, whose header ends before byte 4
    shard.write_bytes(bytes(data))
    assert main(["info", "--check", str(store)]) == 2
    assert "label shard c/1/0/0 unreadable (frames 8-15: " in _one_error_line(capsys)
    assert main(["export", str(store), "--format", "png", "--out", str(tmp_path / "o")]) == 2
    assert "damaged store: label shard c/1/0/0 unreadable" in _one_error_line(capsys)


def test_check_says_ok_with_facts(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--check", str(workspace.intact)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{workspace.intact}: ok"
    assert "commit record: 24 frames, 69 segments, status done" in out[1]
    assert main(["info", "--check", str(workspace.root / "none.zarr")]) == 2
    assert "none.zarr: no such store" in _one_error_line(capsys)


def test_older_stores_without_empty_chunks_still_show_lost_labels(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stores written before `empty_chunks_written` have no file for a chunk of zeros: such a
    chunk missing is no damage, a label shard of frames with segments missing is."""
    store = tmp_path / "old.zarr"
    shutil.copytree(workspace.intact, store)
    _edit_attrs(store, **{EMPTY_CHUNKS_KEY: None})
    (store / "frames/corrupt/c/0").unlink()  # all zeros: what zarr would not have written
    (store / "frames/corrupt/c/1").unlink()
    assert main(["info", "--check", str(store)]) == 0
    assert "written before empty_chunks_written" in capsys.readouterr().out
    assert open_store(store).frames["corrupt"].tolist() == [0] * FRAMES
    (store / "labels/c/2/0/0").unlink()
    assert main(["info", str(store)]) == 2
    assert "label shard c/2/0/0 missing (frames 16-23)" in _one_error_line(capsys)
    # a zeroed table chunk is caught by the tables' agreement
    shutil.copytree(workspace.intact, tmp_path / "old2.zarr")
    store = tmp_path / "old2.zarr"
    _edit_attrs(store, **{EMPTY_CHUNKS_KEY: None})
    (store / "frames/segment_count/c/1").unlink()
    assert main(["info", "--check", str(store)]) == 2
    assert "frames/segment_count adds up to" in _one_error_line(capsys)


class _Interrupted(FakeSegmenter):
    """Ctrl-C after STOP_AFTER_BATCHES batches: a store with some commits, then stopped."""

    def segment(self, frames: list[np.ndarray], output_size: tuple[int, int] | None = None):
        if len(self.calls) >= STOP_AFTER_BATCHES:
            raise KeyboardInterrupt
        return super().segment(frames, output_size)


def make_interrupted() -> FakeSegmenter:
    return _Interrupted()


def _interrupted_store(
    workspace: Workspace, store: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    argv = ["run", str(workspace.video), "--out", str(store), "--pipeline", str(workspace.preset)]
    monkeypatch.setenv(FACTORY_ENV, f"{__name__}:make_interrupted")
    assert main([*argv, "--quiet"]) == 130
    monkeypatch.setenv(FACTORY_ENV, "fake_segmenter:make_fake")
    return [*argv, "--quiet"]


def test_resume_ignores_damage_past_the_commit(
    workspace: Workspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "s.zarr"
    argv = _interrupted_store(workspace, store, monkeypatch)
    committed = json.loads((store / "progress.json").read_text())["frames"]
    assert 0 < committed < 16, committed
    # leftovers of a killed writer, past the commit, and broken: resuming drops them
    (store / "labels/c/2/0").mkdir(parents=True, exist_ok=True)
    (store / "labels/c/2/0/0").write_bytes(b"\x28\xb5\x2f\xfd broken")
    (store / "segments/area/c/7").write_bytes(b"broken")
    assert main(["info", "--check", str(store)]) == 0
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    assert f"resumed at frame {committed}" in capsys.readouterr().out
    resumed = open_store(store)
    intact = open_store(workspace.intact)
    np.testing.assert_array_equal(resumed.labels(), intact.labels())
    for table in ("frames", "segments", "tracks"):
        for column, values in getattr(intact, table).items():
            # floats equal within 1e-6, as a resume promises (docs/FORMATS.md, "Commits")
            np.testing.assert_allclose(getattr(resumed, table)[column], values, rtol=0, atol=1e-6)
    assert main(["info", "--check", str(store)]) == 0


def test_resume_refuses_damage_inside_the_commit(
    workspace: Workspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "s.zarr"
    argv = _interrupted_store(workspace, store, monkeypatch)
    (store / "labels/c/0/0/0").unlink()
    before = _files(store)
    capsys.readouterr()
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert f"{store}: damaged store: label shard c/0/0/0 missing (frames 0-7)" in line
    assert line.endswith("; --overwrite to start over")
    assert _files(store) == before
    assert main([*argv, "--overwrite"]) == 0
    assert len(open_store(store)) == FRAMES


def test_a_store_stopped_before_anything_was_written_is_not_damaged(tmp_path: Path) -> None:
    """No commit record and every array empty: a run stopped at its start, resumable."""
    store = LabelStore.open(tmp_path / "s.zarr", label_size=(4, 4), identity={}, attrs={})
    (store.path / "progress.json").unlink()
    assert len(open_store(store.path)) == 0
    again = LabelStore.open(store.path, label_size=(4, 4), identity={}, attrs={})
    assert again.committed_frames == 0 and not again.done
