"""`streamseg batch`: inputs, manifest, shard planning and stitching (pure parts), and real
LocalCluster runs (2 worker processes on 127.0.0.1) that call `run_video` for every task."""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from distributed import Client
from fake_segmenter import GROUND, HIDDEN, FakeSegmenter, blob_frame, make_blob_video
from videos import make_not_a_video

from streamseg.batch import (
    BatchRecord,
    RunSpec,
    assign_outputs,
    expand_inputs,
    merge_records,
    model_loads,
    open_client,
    read_manifest,
    run_batch,
    write_manifest,
)
from streamseg.batch.shards import plan_shards
from streamseg.batch.track_matching import assign_ids, match_tracks, overlap_iou, relabel
from streamseg.config import ModelSettings, RunConfig, StoreSettings, TrackerConfig
from streamseg.errors import UserError
from streamseg.video.pipeline import run_video
from streamseg.video.store import open_store, read_progress

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
        "damage": None,
        "still_image": False,
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


# ----------------------------------------------------------------------------- on a cluster
# One LocalCluster for the module: 2 worker processes on 127.0.0.1, no dashboard. The tasks
# run `run_video` with the real tiny model (random weights) or the colour-threshold fake
# segmenter of tests/fake_segmenter.py (picklable by reference: the workers inherit sys.path).

ROUNDS = 600  # polling bound (x 0.05 s)
RED, BLUE = (230, 20, 20), (20, 20, 230)


def _write_video(path: Path, images: list[np.ndarray], fps: int = 10) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "veryfast"})
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for index, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _separate_objects_video(path: Path) -> Path:
    """6 s at 10 fps: red square on frames 3-14, blue 24-35, another red 44-55, on ground.
    With 2 s shards and 3 overlap frames no thing is visible near a boundary (frames 16-20,
    36-40)."""
    images = []
    for t in range(60):
        image = np.empty((48, 64, 3), np.uint8)
        image[:] = GROUND
        if 3 <= t <= 14:
            image[6:18, 8 + t : 20 + t] = RED
        if 24 <= t <= 35:
            image[28:40, 40 - (t - 24) : 52 - (t - 24)] = BLUE
        if 44 <= t <= 55:
            image[20:32, 30:42] = RED
        images.append(image)
    return _write_video(path, images)


def _crossing_objects_video(path: Path) -> Path:
    """6 s at 10 fps of fake_segmenter's blobs: both squares move through every boundary."""
    return _write_video(path, [blob_frame(t) for t in range(60)])


def _assert_same_store(a: Path, b: Path) -> None:
    ra, rb = open_store(a), open_store(b)
    assert ra.status == rb.status == "done"
    assert len(ra) == len(rb)
    np.testing.assert_array_equal(ra.labels(), rb.labels())
    for table in ("frames", "segments", "tracks"):
        ta, tb = getattr(ra, table), getattr(rb, table)
        assert set(ta) == set(tb)
        for column, values in tb.items():
            if values.dtype.kind == "f":
                np.testing.assert_allclose(ta[column], values, atol=1e-6, err_msg=column)
            else:
                np.testing.assert_array_equal(ta[column], values, err_msg=f"{table}.{column}")
    assert ra.attrs["identity"] == rb.attrs["identity"]
    # Same array layout (chunks, shard files, codecs), not only the same values.
    meta_a = json.loads((Path(a) / "labels" / "zarr.json").read_text())
    meta_b = json.loads((Path(b) / "labels" / "zarr.json").read_text())
    assert meta_a == meta_b


def _fake_config(**store: int) -> RunConfig:
    return RunConfig(
        model=ModelSettings(batch_size=4),
        tracker=TrackerConfig(max_age_seconds=0.5),  # 5 frames at 10 fps
        store=StoreSettings(**store),
    )


def _tiny_config() -> RunConfig:
    return RunConfig(
        model=ModelSettings(
            name="tiny-convnext",
            device="cpu",
            vocab="red,blue,ground",
            stuff="ground",
            batch_size=4,
        )
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    # Workers inherit the environment at spawn: keep the text-classifier cache in the test's
    # temp folder and torch on one thread.
    cache = tmp_path_factory.mktemp("cache")
    saved = {k: os.environ.get(k) for k in ("STREAMSEG_CACHE", "OMP_NUM_THREADS")}
    os.environ["STREAMSEG_CACHE"] = str(cache)
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        with open_client(n_workers=2, threads_per_worker=1, dashboard=False) as dask_client:
            yield dask_client
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_batch_equals_one_by_one_and_records_failures(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMSEG_CACHE", os.environ["STREAMSEG_CACHE"])
    archive = tmp_path / "archive"
    archive.mkdir()
    for name, frames in (("a.mp4", 6), ("b.mp4", 9), ("c.mp4", 3)):
        make_blob_video(archive / name, frames=frames)
    make_not_a_video(archive / "broken.mp4")
    out = tmp_path / "out"
    spec = RunSpec(config=_tiny_config())
    before = client.run(model_loads)

    records = run_batch(expand_inputs([archive]), out, spec, client, retries=1, progress=False)

    assert [(Path(r.input).name, r.status) for r in records] == [
        ("a.mp4", "done"),
        ("b.mp4", "done"),
        ("broken.mp4", "failed"),
        ("c.mp4", "done"),
    ]
    assert [r.frames for r in records] == [6, 9, 0, 3]
    failed = records[2]
    assert "broken.mp4" in failed.error and failed.error.startswith("UserError")
    assert not Path(failed.output).exists()
    assert read_manifest(out / "manifest.json") == records
    # Each worker built the model at most once for its tasks (3 videos on 2 workers).
    after = client.run(model_loads)
    assert all(after[w] - before.get(w, 0) <= 1 for w in after)
    assert sum(after.values()) - sum(before.values()) >= 1

    # The same videos one by one in this process, through the same run_video.
    from streamseg.model.segmenter import Segmenter

    segmenter = Segmenter.from_pretrained("tiny-convnext", device="cpu")
    for record in records:
        if record.status == "done":
            reference = tmp_path / "ref" / Path(record.output).name
            reference.parent.mkdir(exist_ok=True)
            run_video(record.input, reference, config=spec.config, segmenter=segmenter)
            _assert_same_store(Path(record.output), reference)

    # Rerun: finished stores are skipped (not recomputed), the broken input fails again.
    stamps = {r.output: (Path(r.output) / "progress.json").stat().st_mtime_ns for r in records[:2]}
    again = run_batch(expand_inputs([archive]), out, spec, client, retries=0, progress=False)
    assert [r.status for r in again] == ["skipped", "skipped", "failed", "skipped"]
    assert [r.frames for r in again] == [6, 9, 0, 3]
    for output, stamp in stamps.items():
        assert (Path(output) / "progress.json").stat().st_mtime_ns == stamp
    assert read_manifest(out / "manifest.json") == again


def test_cli_on_an_existing_scheduler(client: Client, tmp_path: Path) -> None:
    from streamseg.cli import main

    (tmp_path / "in").mkdir()
    make_blob_video(tmp_path / "in" / "x.mp4", frames=4)
    make_not_a_video(tmp_path / "in" / "y.mp4")
    address = client.scheduler.address
    argv = [
        "batch",
        str(tmp_path / "in"),
        "--out",
        str(tmp_path / "out"),
        "--scheduler",
        address,
        "--retries",
        "0",
        "--model",
        "tiny-convnext",
        "--device",
        "cpu",
        "--vocab",
        "red,blue,ground",
        "--stuff",
        "ground",
        "--batch-size",
        "4",
        "--quiet",
    ]
    assert main(argv) == 1  # y.mp4 failed
    records = read_manifest(tmp_path / "out" / "manifest.json")
    assert [(Path(r.input).name, r.status) for r in records] == [
        ("x.mp4", "done"),
        ("y.mp4", "failed"),
    ]
    assert open_store(tmp_path / "out" / "x.zarr").num_frames == 4
    # Only the good one: exit code 0, and it is skipped.
    assert main([*argv[:1], str(tmp_path / "in" / "x.mp4"), *argv[2:]]) == 0
    assert read_manifest(tmp_path / "out" / "manifest.json")[0].status == "skipped"
    # Bad arguments: exit code 2 before any work.
    assert main(["batch", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
    assert main([*argv, "--resources", "GPU"]) == 2


def test_shards_stitch_to_the_one_pass_store(client: Client, tmp_path: Path) -> None:
    videos_dir = tmp_path / "long"
    videos_dir.mkdir()
    separate = _separate_objects_video(videos_dir / "separate.mp4")
    crossing = _crossing_objects_video(videos_dir / "crossing.mp4")
    config = _fake_config()
    spec = RunSpec(config=config, segmenter_factory=FakeSegmenter)
    out = tmp_path / "out"

    records = run_batch(
        expand_inputs([crossing, separate]),
        out,
        spec,
        client,
        shard_seconds=2.0,
        overlap_frames=3,
        progress=False,
    )
    assert [(r.status, r.frames) for r in records] == [("done", 60), ("done", 60)]
    assert not (out / ".shards").exists()  # shard stores removed after stitching

    for record in records:
        reference = tmp_path / "ref" / Path(record.output).name
        reference.parent.mkdir(exist_ok=True)
        run_video(record.input, reference, config=config, segmenter=FakeSegmenter())
        _assert_same_store(Path(record.output), reference)
        stitched = open_store(record.output)
        assert stitched.attrs.pop("stitched") == {"shards": 3, "iou_threshold": 0.5}
        assert stitched.attrs == open_store(reference).attrs
        assert stitched.progress.extra == open_store(reference).progress.extra
        # run_video recognizes the stitched store as its own finished store.
        summary = run_video(record.input, record.output, config=config, segmenter=FakeSegmenter())
        assert summary.status == "already done"

    # Crossing: ground, red and blue keep one id each over all 60 frames (3 shards).
    tracks = open_store(records[0].output).tracks
    assert tracks["track_id"].tolist() == [1, 2, 3]
    assert tracks["first_frame"].tolist() == [0, 0, 0]
    assert tracks["last_frame"].tolist() == [59, 59, 59]
    assert tracks["frames"].tolist() == [60, 60 - len(HIDDEN), 60]
    # Separate: ground, then one new id per object, in order of appearance.
    tracks = open_store(records[1].output).tracks
    assert tracks["track_id"].tolist() == [1, 2, 3, 4]
    assert tracks["class_id"].tolist() == [2, 0, 1, 0]
    assert tracks["first_frame"].tolist() == [0, 3, 24, 44]
    assert tracks["last_frame"].tolist() == [59, 14, 35, 55]


def _kill_worker_running(client: Client, pids: dict[str, int], prefix: str) -> int:
    """SIGKILL the worker process running a task whose key starts with `prefix`."""
    for address, keys in client.processing().items():
        if any(str(key).startswith(prefix) for key in keys):
            os.kill(pids[address], signal.SIGKILL)
            return pids[address]
    raise AssertionError(f"no worker is running {prefix}*")


def test_killed_worker_costs_only_a_retry(client: Client, tmp_path: Path) -> None:
    video = make_blob_video(tmp_path / "long.mp4", frames=48)
    # Commit every batch; slow batches so that the kill lands mid-task.
    config = _fake_config(commit_frames=4)
    spec = RunSpec(config=config, segmenter_factory=functools.partial(FakeSegmenter, delay=0.3))
    out = tmp_path / "out"
    pids = client.run(os.getpid)
    result: list[list[BatchRecord]] = []
    runner = threading.Thread(
        target=lambda: result.append(
            run_batch(expand_inputs([video]), out, spec, client, retries=0, progress=False)
        )
    )
    runner.start()
    store = out / "long.zarr"
    committed = 0
    for _ in range(ROUNDS):
        committed = read_progress(store).frames if store.exists() else 0
        if committed >= 4:
            break
        time.sleep(0.05)
    assert 4 <= committed < 48
    _kill_worker_running(client, pids, "streamseg-run-long")
    runner.join(timeout=ROUNDS * 0.2)
    assert not runner.is_alive()

    (records,) = result
    assert [(r.status, r.frames) for r in records] == [("done", 48)]
    reference = tmp_path / "ref.zarr"
    run_video(video, reference, config=config, segmenter=FakeSegmenter())
    _assert_same_store(store, reference)


def test_progress_bar_counts_frames_from_worker_events() -> None:
    from streamseg.batch.progress import ProgressBars as _Progress

    bar = _Progress(enabled=True, total=2)
    try:
        # (time, message) as Client.subscribe_topic delivers them; a task reports committed
        # frames, a resumed or repeated report never counts twice.
        for task, frames in (("a", 4), ("b", 8), ("a", 12), ("a", 12), ("a", 8)):
            bar.on_event((0.0, {"task": task, "frames": frames}))
        bar.on_event((0.0, "not a progress message"))
        assert bar.frames.n == 20
        bar.video_finished(BatchRecord("/x/a.mp4", "/o/a.zarr", "done", 12, 1.0))
        assert bar.videos.n == 1
    finally:
        bar.close()


def _hand_store(path: Path, labels: np.ndarray, first_index: int, things: set[int]) -> Path:
    """A finished store with the given (T, H, W) track ids, one segment row per id and frame
    (class 9 for stuff ids, else the id), frames numbered from `first_index`."""
    from streamseg.video.store import LabelStore

    settings = {"decode": {"start": None, "end": None}, "store": {"compression_level": 1}}
    store = LabelStore.open(
        path,
        label_size=labels.shape[1:],
        identity={"source": "hand", "settings": settings},
        attrs={"settings": settings},
    )
    rows = [(t, i) for t in range(len(labels)) for i in np.unique(labels[t]) if i]
    count = len(labels)
    store.write_block(
        labels,
        {
            "index": np.arange(count) + first_index,
            "pts": (np.arange(count) + first_index) * 10,
            "time": (np.arange(count) + first_index) * 0.1,
            "keyframe": np.zeros(count),
            "corrupt": np.zeros(count),
        },
        {
            "frame": np.array([t for t, _ in rows]),
            "track_id": np.array([i for _, i in rows]),
            "class_id": np.array([i if i in things else 9 for _, i in rows]),
            "score": np.full(len(rows), 0.5),
            "area": np.array([(labels[t] == i).sum() for t, i in rows]),
            "bbox_x": np.zeros(len(rows)),
            "bbox_y": np.zeros(len(rows)),
            "bbox_w": np.ones(len(rows)),
            "bbox_h": np.ones(len(rows)),
            "is_thing": np.array([i in things for _, i in rows]),
        },
    )
    store.finish()
    return path


def test_stitch_stores_renumbers_by_overlap_and_class(tmp_path: Path) -> None:
    from streamseg.batch.stitch import stitch_stores

    # Shard 0: frames 0-3, stuff 1 everywhere below a thing 2 (top-left 2x2).
    a = np.ones((4, 4, 4), np.int32)
    a[:, :2, :2] = 2
    # Shard 1: frames 2-5 (2 and 3 in common). Its tracker numbered differently: stuff is 2,
    # the continuing thing is 3, and thing 1 is new (bottom-right, from frame 4 on).
    b = np.full((4, 4, 4), 2, np.int32)
    b[:, :2, :2] = 3
    b[2:, 2:, 2:] = 1
    first = _hand_store(tmp_path / "s0.zarr", a, 0, things={2})
    second = _hand_store(tmp_path / "s1.zarr", b, 2, things={1, 3})
    assert stitch_stores([first, second], tmp_path / "out.zarr") == 6
    out = open_store(tmp_path / "out.zarr")
    labels = out.labels()
    assert labels.shape == (6, 4, 4)
    np.testing.assert_array_equal(labels[:4], a)
    # frames 4-5 from shard 1: stuff -> 1 (same class), thing 3 -> 2 (overlap IoU 1), new -> 3
    expected = np.ones((2, 4, 4), np.int32)
    expected[:, :2, :2] = 2
    expected[:, 2:, 2:] = 3
    np.testing.assert_array_equal(labels[4:], expected)
    np.testing.assert_array_equal(out.frames["index"], np.arange(6))
    segments = out.segments
    assert list(zip(segments["frame"].tolist(), segments["track_id"].tolist(), strict=True)) == [
        (0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2),
        (4, 1), (4, 2), (4, 3), (5, 1), (5, 2), (5, 3),
    ]  # fmt: skip
    tracks = out.tracks
    assert tracks["track_id"].tolist() == [1, 2, 3]
    assert tracks["first_frame"].tolist() == [0, 0, 4]
    assert tracks["last_frame"].tolist() == [5, 5, 5]
    assert out.attrs["status"] == "done" and out.attrs["stitched"]["shards"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
