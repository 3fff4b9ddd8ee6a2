"""`streamseg batch`: inputs, manifest, shard planning and stitching (pure parts), and real
LocalCluster runs (2 worker processes on 127.0.0.1) that call `run_video` for every task."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from streamseg.batch import (
    BatchRecord,
    assign_outputs,
    expand_inputs,
    merge_records,
    read_manifest,
    write_manifest,
)
from streamseg.errors import UserError
from streamseg.shard import assign_ids, match_tracks, overlap_iou, plan_shards, relabel

# ----------------------------------------------------------------------------- inputs


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_expand_inputs_files_folders_globs(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    _touch(archive / "b.mp4")
    _touch(archive / "a.MKV")
    _touch(archive / "notes.txt")
    _touch(archive / ".hidden.mp4")
    _touch(archive / "sub" / "c.webm")
    _touch(archive / "old.zarr" / "x.mp4")  # inside a store: not walked
    _touch(archive / ".cache" / "d.mp4")
    single = _touch(tmp_path / "single.bin")  # named explicitly: taken whatever its ending
    globbed = tmp_path / "g"
    _touch(globbed / "x1.mov")
    _touch(globbed / "x2.mov")
    _touch(globbed / "x3.txt")

    videos = expand_inputs([archive, str(single), f"{globbed}/x*", str(archive / "b.mp4")])
    assert [v.path for v in videos] == [
        (archive / "a.MKV").resolve(),
        (archive / "b.mp4").resolve(),
        (archive / "sub" / "c.webm").resolve(),
        single.resolve(),
        (globbed / "x1.mov").resolve(),
        (globbed / "x2.mov").resolve(),
    ]  # b.mp4 given twice: kept once, at its first place
    assert [str(v.name) for v in videos] == [
        "a.MKV",
        "b.mp4",
        "sub/c.webm",
        "single.bin",
        "x1.mov",
        "x2.mov",
    ]


def test_expand_inputs_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        expand_inputs([tmp_path / "missing.mp4"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no video files in this folder"):
        expand_inputs([tmp_path / "empty"])
    with pytest.raises(UserError, match="no video files match"):
        expand_inputs([f"{tmp_path}/*.mp4"])


def test_assign_outputs_collision_safe_and_stable(tmp_path: Path) -> None:
    one = _touch(tmp_path / "one" / "clip.mp4").resolve()
    two = _touch(tmp_path / "two" / "clip.mp4").resolve()
    mkv = _touch(tmp_path / "one" / "clip.mkv").resolve()
    out = tmp_path / "out"
    videos = expand_inputs([one, two, mkv])
    outputs = assign_outputs(videos, out)
    assert outputs[0] == out.resolve() / "clip.zarr"
    assert outputs[1].name.startswith("clip-") and outputs[1].name.endswith(".zarr")
    assert len(set(outputs)) == 3
    # The previous manifest's mapping wins: now `two` comes first but keeps its old output,
    # and `one` keeps the plain name.
    previous = {str(v.path): str(o) for v, o in zip(videos, outputs, strict=True)}
    again = assign_outputs(expand_inputs([two, one, mkv]), out, previous)
    assert again == [outputs[1], outputs[0], outputs[2]]
    # A new input whose plain name is taken by the previous manifest gets a hashed name.
    three = _touch(tmp_path / "three" / "clip.mp4").resolve()
    (fresh,) = assign_outputs(expand_inputs([three]), out, previous)
    assert fresh not in outputs and fresh.parent == out.resolve()


def test_folder_structure_is_kept(tmp_path: Path) -> None:
    _touch(tmp_path / "arch" / "2024" / "cam.mp4")
    _touch(tmp_path / "arch" / "2025" / "cam.mp4")
    videos = expand_inputs([tmp_path / "arch"])
    assert [v.name for v in videos] == [
        PurePosixPath("2024/cam.mp4"),
        PurePosixPath("2025/cam.mp4"),
    ]
    out = tmp_path / "out"
    assert assign_outputs(videos, out) == [
        out.resolve() / "2024" / "cam.zarr",
        out.resolve() / "2025" / "cam.zarr",
    ]


# ----------------------------------------------------------------------------- manifest


def test_manifest_round_trip_and_merge(tmp_path: Path) -> None:
    path = tmp_path / "out" / "manifest.json"
    assert read_manifest(path) == []
    old = [
        BatchRecord("/a.mp4", "/o/a.zarr", "done", 10, 1.5),
        BatchRecord("/b.mp4", "/o/b.zarr", "failed", 0, 0.2, "b.mp4: not a video"),
    ]
    write_manifest(path, old)
    assert read_manifest(path) == old
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]  # no temp file left
    data = json.loads(path.read_text())
    assert data[1] == {
        "input": "/b.mp4",
        "output": "/o/b.zarr",
        "status": "failed",
        "frames": 0,
        "seconds": 0.2,
        "error": "b.mp4: not a video",
    }
    new = [
        BatchRecord("/c.mp4", "/o/c.zarr", "done", 3, 0.1),
        BatchRecord("/b.mp4", "/o/b.zarr", "done", 7, 0.9),
    ]
    merged = merge_records(old, new)
    assert [(r.input, r.status) for r in merged] == [
        ("/a.mp4", "done"),
        ("/b.mp4", "done"),
        ("/c.mp4", "done"),
    ]
    with pytest.raises(ValueError):
        BatchRecord("/a.mp4", "/o/a.zarr", "finished")
    path.write_text("{not json")
    with pytest.raises(UserError, match="not a batch manifest"):
        read_manifest(path)


# ----------------------------------------------------------------------------- shards


def test_plan_shards() -> None:
    # 11 s at 10 fps, shards of 3 s, 2 overlap frames: boundaries 0, 3, 6, 9; each shard
    # after the first decodes from 2.5 frames (0.25 s) before its boundary; the last takes
    # the 2 s rest (not shorter than half a shard).
    shards = plan_shards(11.0, 10.0, 3.0, 2)
    assert [(s.start, s.end, s.boundary) for s in shards] == [
        (None, 3.0, 0.0),
        (pytest.approx(2.75), 6.0, 3.0),
        (pytest.approx(5.75), 9.0, 6.0),
        (pytest.approx(8.75), None, 9.0),
    ]
    # 10 s: the 1 s rest is shorter than half a shard and goes to the shard before it.
    assert [s.end for s in plan_shards(10.0, 10.0, 3.0, 2)] == [3.0, 6.0, None]
    # Rest of 1 s < half of 4 s: merged into the last shard.
    assert [(s.start, s.end) for s in plan_shards(9.0, 10.0, 4.0, 1)] == [
        (None, 4.0),
        (pytest.approx(3.85), None),
    ]
    # Short or unknown videos: one shard with the run's own range.
    assert plan_shards(4.0, 25.0, 3.0, 2) == plan_shards(None, 25.0, 3.0, 2)
    assert len(plan_shards(4.0, 25.0, 3.0, 2)) == 1
    # A user range: shards inside it.
    ranged = plan_shards(100.0, 10.0, 3.0, 1, start=10.0, end=16.5)
    assert [(s.start, s.end, s.boundary) for s in ranged] == [
        (10.0, 13.0, 10.0),
        (pytest.approx(12.85), 16.5, 13.0),
    ]
    with pytest.raises(ValueError):
        plan_shards(10.0, 10.0, 0.0, 2)
    with pytest.raises(ValueError):
        plan_shards(10.0, 10.0, 3.0, 0)


def test_overlap_iou_exact() -> None:
    previous = np.zeros((2, 2, 4), np.int32)
    current = np.zeros((2, 2, 4), np.int32)
    previous[:, 0, :2] = 5  # 4 pixels per frame -> 8
    previous[:, 1, :] = 9  # 8 per frame -> 16... but frame 1 row 1 differs below
    current[:, 0, :3] = 1  # 6 per frame -> 12
    current[0, 1, :] = 2  # 4 pixels, frame 0 only
    ids_a, ids_b, iou = overlap_iou(previous, current)
    assert ids_a.tolist() == [5, 9] and ids_b.tolist() == [1, 2]
    # 5 vs 1: inter 4 (2 per frame), union 4 + 6 - 4 = 6... per frame sums: 4 + 6 - 4.
    assert iou[0, 0] == pytest.approx(4 / (4 + 6 - 4))
    assert iou[0, 1] == 0.0
    # 9 vs 1: no overlap; 9 vs 2: inter 4, union 8 + 4 - 4 = 8.
    assert iou[1, 0] == 0.0
    assert iou[1, 1] == pytest.approx(4 / 8)


def test_match_tracks_threshold_and_assignment() -> None:
    previous = np.zeros((1, 4, 10), np.int32)
    current = np.zeros((1, 4, 10), np.int32)
    previous[0, 0, :] = 3  # 10 px
    previous[0, 1, :] = 4  # 10 px
    previous[0, 2, :] = 7  # 10 px
    current[0, 0, :] = 11  # == 3: IoU 1
    current[0, 1, :6] = 12  # 6 of 4's 10: IoU 0.6
    current[0, 2, :4] = 13  # 4 of 7's 10: IoU 0.4 (below 0.5)
    current[0, 3, :] = 14  # new
    assert match_tracks(previous, current, iou_threshold=0.5) == {11: 3, 12: 4}
    assert match_tracks(previous, current, iou_threshold=0.4) == {11: 3, 12: 4, 13: 7}
    # Incompatible pairs (e.g. thing vs stuff) never match.
    compatible = np.ones((3, 4), bool)
    compatible[0, 0] = False
    assert match_tracks(previous, current, iou_threshold=0.5, compatible=compatible) == {12: 4}
    # One-to-one: two current ids over one previous id, the larger overlap wins.
    previous = np.full((1, 1, 10), 1, np.int32)
    current = np.array([[[2] * 7 + [3] * 3]], np.int32)
    assert match_tracks(previous, current, iou_threshold=0.2) == {2: 1}


def test_relabel_and_assign_ids() -> None:
    labels = np.array([[0, 1, 2], [3, 2, 1]], np.int32)
    out = relabel(labels, {1: 10, 2: 20})
    assert out.tolist() == [[0, 10, 20], [0, 20, 10]] and out.dtype == np.int32
    mapping, next_id = assign_ids([3, 1, 2, 5], {2: 7}, next_id=9)
    assert mapping == {1: 9, 2: 7, 3: 10, 5: 11} and next_id == 12
