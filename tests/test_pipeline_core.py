"""The pipeline core shared by file and live runs: blocks, the store writer, the segmenter
protocol, precision, the `[live]` config section and its preset, and no import cycles."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import numpy as np
import pytest
from fake_segmenter import FakeSegmenter, blob_frame, make_blob_video
from live_server import StreamServer

from streamseg.cli import main
from streamseg.commands.run import FACTORY_ENV, add_arguments, build_config
from streamseg.commands.run_live import with_live_flags
from streamseg.config import LiveConfig, RunConfig, load_run_config, run_config_from_dict
from streamseg.errors import UserError
from streamseg.model.outputs import FrameSegmentation, Segment
from streamseg.model.precision import autocast, check_precision
from streamseg.model.segmenter_like import (
    compile_segmenter,
    segmenter_device,
    segmenter_input_size,
)
from streamseg.video.block import Commit, StoreBlock, join_blocks
from streamseg.video.frames import Frame
from streamseg.video.live_decode import LiveSettings
from streamseg.video.pipeline import run_video
from streamseg.video.segment_track import SegmentAndTrack
from streamseg.video.segments import SegmentFilter, filter_segmentation
from streamseg.video.store import LabelStore, open_store
from streamseg.video.store_writer import MAPS_PER_WRITE, StoreWriter
from streamseg.video.track import Tracker

REPO = Path(__file__).resolve().parent.parent


def _tracked_frames(count: int) -> list:
    segmenter = FakeSegmenter()
    names = list(segmenter.vocabulary.names)
    stage = SegmentAndTrack(segmenter, Tracker(), SegmentFilter(), names, (24, 32))
    frames = [
        Frame(i, 2 * i, i / 12.5, blob_frame(i), (48, 64), keyframe=i == 0) for i in range(count)
    ]
    return [tracked for batch in stage([frames[:2], frames[2:]]) for tracked in batch]


def test_blocks_number_their_segments_and_join() -> None:
    tracked = _tracked_frames(3)
    block = StoreBlock.of_frames(tracked[:2])
    assert len(block.labels) == 2
    assert all(m.shape == (24, 32) and m.dtype == np.int32 for m in block.labels)
    assert block.frames["pts"].tolist() == [0, 2] and block.overlay == ()
    assert set(block.segments["frame"].tolist()) == {0, 1}
    second = StoreBlock.of_frames(tracked[2:], overlay=True)
    assert len(second.overlay) == 1 and second.overlay[0].track_names
    joined = join_blocks([block, StoreBlock.empty(), second])
    assert joined.num_frames == 3 and joined.commit is None
    assert joined.segments["frame"].tolist() == sorted(joined.segments["frame"].tolist())
    assert joined.segments["frame"][-1] == 2
    empty = StoreBlock.empty(Commit("{}", {}))
    assert empty.num_frames == 0 and empty.labels == ()


def test_store_writer_commits_only_on_commit_blocks(tmp_path: Path) -> None:
    tracked = _tracked_frames(3)
    store = LabelStore.open(tmp_path / "s.zarr", label_size=(24, 32), identity={}, attrs={})
    seen: list[int] = []
    writer = StoreWriter(store, None, seen.append)
    writer.put(StoreBlock.of_frames(tracked[:2]))
    writer.put(StoreBlock.of_frames(tracked[2:], Commit("{}", {"why": "test"})))
    writer.close()
    assert seen == [2, 3]
    assert store.committed_frames == 3 and store.progress.extra == {"why": "test"}
    np.testing.assert_array_equal(open_store(tmp_path / "s.zarr").labels(2), tracked[2].labels)


def test_store_writer_writes_maps_in_groups_and_rows_at_commits(tmp_path: Path) -> None:
    tracked = _tracked_frames(9)
    store = LabelStore.open(tmp_path / "s.zarr", label_size=(24, 32), identity={}, attrs={})
    calls: list[tuple[str, int | None]] = []
    append, write = store.append_labels, store.write_block

    def append_labels(labels: np.ndarray) -> None:
        calls.append(("maps", len(labels)))
        append(labels)

    def write_block(labels, frames, *args, **kwargs) -> None:
        calls.append(("rows", None if labels is None else len(labels)))
        write(labels, frames, *args, **kwargs)

    store.append_labels, store.write_block = append_labels, write_block  # type: ignore[method-assign]
    writer = StoreWriter(store, None)
    assert MAPS_PER_WRITE == 4
    for first in range(6):  # six one-frame blocks
        writer.put(StoreBlock.of_frames(tracked[first : first + 1]))
    writer.put(StoreBlock.of_frames(tracked[6:8]))
    writer.put(StoreBlock.of_frames(tracked[8:], Commit("{}", {})))
    writer.close()
    # maps once four frames of them wait (1+1+1+1, then 1+1+2), the last one at the commit
    # even alone, then the rows of all nine at the commit, without maps
    assert calls == [("maps", 4), ("maps", 4), ("maps", 1), ("rows", None)]
    assert store.committed_frames == 9
    labels = open_store(tmp_path / "s.zarr").labels()
    np.testing.assert_array_equal(labels, np.stack([t.labels for t in tracked]))


def test_store_writer_drops_maps_of_frames_never_committed(tmp_path: Path) -> None:
    tracked = _tracked_frames(6)
    store = LabelStore.open(tmp_path / "s.zarr", label_size=(24, 32), identity={}, attrs={})
    writer = StoreWriter(store, None)
    writer.put(StoreBlock.of_frames(tracked[:2], Commit("{}", {})))
    writer.put(StoreBlock.of_frames(tracked[2:5]))  # three frames wait, none committed
    writer.close()
    assert store.committed_frames == 2
    reopened = open_store(tmp_path / "s.zarr")
    assert reopened.num_frames == 2
    np.testing.assert_array_equal(reopened.labels(), np.stack([t.labels for t in tracked[:2]]))


def test_segmenter_like_optional_parts() -> None:
    fake = FakeSegmenter()
    assert segmenter_device(fake) == "cpu"  # numpy stand-in: autocast on CPU
    assert segmenter_input_size(fake, 48, 64) is None  # decoded at the source size
    with pytest.raises(UserError, match="--compile: FakeSegmenter has no compile"):
        compile_segmenter(fake)


def test_precision_names() -> None:
    check_precision("fp16")
    with pytest.raises(UserError, match="must be fp32, tf32, bf16 or fp16, got 'fp8'"):
        autocast("cpu", "fp8")
    with pytest.raises(UserError, match="must be fp32 or bf16, got 'fp16'"):
        check_precision("fp16", ("fp32", "bf16"))


def test_tf32_is_plain_fp32_off_cuda() -> None:
    import torch

    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with autocast("cpu", "tf32"):
        assert not torch.is_autocast_enabled("cpu")
        product = torch.ones(3, 3) @ torch.ones(3, 3)
    assert product.dtype == torch.float32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags


def test_live_section_of_the_config() -> None:
    assert LiveSettings is LiveConfig and RunConfig().live == LiveConfig()
    config = run_config_from_dict({"live": {"max_latency": 0.5, "reconnect": True}})
    assert config.live.max_latency == 0.5 and config.live.reconnect is True
    with pytest.raises(UserError, match="max_latncy"):
        run_config_from_dict({"live": {"max_latncy": 1}})


def _parse_run(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_live_preset_loads_and_flags_win() -> None:
    preset = load_run_config(REPO / "pipelines" / "live.toml")
    assert preset.live.max_latency == 1.0 and preset.model.batch_size == 1
    assert load_run_config("live") == preset  # by name, from pipelines/

    def config_of(*flags: str) -> RunConfig:
        args = _parse_run(["rtsp://cam/stream", "--pipeline", "live", *flags])
        return with_live_flags(build_config(args), args)

    assert config_of().live == preset.live  # unset flags leave the preset alone
    flagged = config_of("--max-latency", "0.25", "--reconnect", "--no-live", "--max-frames", "7")
    assert flagged.live.max_latency == 0.25 and flagged.live.reconnect is True
    assert flagged.live.live is False and flagged.live.max_frames == 7
    assert flagged.live.read_timeout == preset.live.read_timeout


def test_cli_live_run_with_preset_and_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`streamseg run URL --pipeline P --max-latency X`: the store records the preset's live
    settings with the flag applied."""
    preset = tmp_path / "p.toml"
    preset.write_text("[model]\nbatch_size = 2\n[live]\nlive = false\nmax_latency = 1.5\n")
    monkeypatch.setenv(FACTORY_ENV, "fake_segmenter:make_fake")
    server = StreamServer([6], pace=False)
    out = tmp_path / "cam.zarr"
    argv = ["run", server.url, "--out", str(out), "--pipeline", str(preset), "--json"]
    assert main([*argv, "--max-latency", "0.75", "--read-timeout", "3"]) == 0
    server.join()
    # A live run's summary is on stderr, --json too (issue 22): its last line.
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["frames"] == 6 and summary["dropped"] == 0
    live = open_store(out).attrs["settings"]["live"]
    assert live["max_latency"] == 0.75 and live["read_timeout"] == 3.0
    assert live["live"] is False
    assert open_store(out).attrs["settings"]["model"]["batch_size"] == 2


def test_file_store_identity_ignores_the_live_section(tmp_path: Path) -> None:
    video = make_blob_video(tmp_path / "blobs.mp4", frames=4)
    out = tmp_path / "s.zarr"
    run_video(video, out, config=RunConfig(), segmenter=FakeSegmenter())
    assert "live" not in open_store(out).attrs["settings"]
    config = RunConfig().with_overrides(live={"max_latency": 0.1, "segment_duration": 5.0})
    again = run_video(video, out, config=config, segmenter=FakeSegmenter())
    assert again.status == "already done"


def _imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_video_modules_have_no_import_cycle() -> None:
    """Lazy imports inside functions count too: a cycle is a cycle."""
    folder = REPO / "streamseg" / "video"
    graph = {
        f"streamseg.video.{path.stem}": _imports(path)
        for path in folder.glob("*.py")
        if path.stem != "__init__"
    }
    graph = {name: {m for m in deps if m in graph} for name, deps in graph.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for module in graph[start] - seen:
            seen.add(module)
            if module == goal or reaches(module, goal, seen):
                return True
        return False

    assert [name for name in graph if reaches(name, name, set())] == []
    private = [
        m for m in _imports(folder / "live_run.py") if m.startswith("streamseg.video.pipeline")
    ]
    assert private == []


def test_filtered_segments_leave_zeros_and_the_rest_untouched() -> None:
    panoptic = np.array([[0, 1, 1, 2], [3, 3, 2, 0], [7, 7, 1, 3]], np.int32)
    segments = [
        Segment(
            id=i,
            class_id=c,
            score=s,
            area=int((panoptic == i).sum()),
            bbox=(0, 0, 1, 1),
            is_thing=True,
        )
        for i, c, s in [(1, 0, 0.9), (2, 1, 0.2), (3, 2, 0.8), (7, 0, 0.95)]
    ]
    seg = FrameSegmentation(
        panoptic=panoptic, segments=segments, embeddings=np.eye(4, dtype=np.float32)
    )
    kept = filter_segmentation(seg, score_threshold=0.5, keep=frozenset({0, 2}))
    assert [s.id for s in kept.segments] == [1, 3, 7]
    np.testing.assert_array_equal(kept.panoptic, [[0, 1, 1, 0], [3, 3, 0, 0], [7, 7, 1, 3]])
    np.testing.assert_array_equal(kept.embeddings, np.eye(4, dtype=np.float32)[[0, 2, 3]])
    only_seven = filter_segmentation(seg, score_threshold=0.91)
    np.testing.assert_array_equal(only_seven.panoptic, np.where(panoptic == 7, 7, 0))
    assert only_seven.panoptic.dtype == np.int32
