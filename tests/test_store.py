"""Label store: round trip, commit protocol (uncommitted rows dropped), refusal, plain zarr."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamseg.errors import UserError
from streamseg.video.store import (
    LabelStore,
    open_store,
    read_progress,
    store_status,
    summarize_tracks,
)

SIZE = (6, 8)
IDENTITY = {"source": {"name": "a.mp4", "bytes": 10}, "settings": {"stride": 1}}


def _block(t0: int, n: int) -> tuple[np.ndarray, dict, dict]:
    labels = np.zeros((n, *SIZE), np.int32)
    seg: dict[str, list] = {k: [] for k in ("frame", "track_id", "class_id", "score", "area")}
    for i in range(n):
        t = t0 + i
        labels[i, 0:2, t % 6 : t % 6 + 2] = 1  # track 1 moves right
        labels[i, 4:6, :] = 2  # stuff track 2
        for track, cls, area in ((1, 0, 4), (2, 3, 16)):
            seg["frame"].append(i)
            seg["track_id"].append(track)
            seg["class_id"].append(cls if t % 3 else cls + 1)  # class 1 every third frame
            seg["score"].append(0.5 + 0.01 * t)
            seg["area"].append(area)
    segments = {key: np.array(value) for key, value in seg.items()}
    m = len(seg["frame"])
    for key in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"):
        segments[key] = np.arange(m)
    segments["is_thing"] = (segments["track_id"] == 1).astype(np.uint8)
    frames = {
        "index": np.arange(t0, t0 + n) * 2,
        "pts": np.arange(t0, t0 + n) * 512,
        "time": np.arange(t0, t0 + n) / 12.5,
        "keyframe": np.zeros(n),
        "corrupt": np.zeros(n),
    }
    return labels, frames, segments


def _open(path: Path, **kwargs) -> LabelStore:
    return LabelStore.open(
        path,
        label_size=SIZE,
        identity=kwargs.pop("identity", IDENTITY),
        attrs={"vocabulary": {"names": ["a", "b", "c", "d", "e"]}},
        table_chunk=4,
        **kwargs,
    )


def _write(store: LabelStore, t0: int, n: int, state: str = "{}") -> None:
    labels, frames, segments = _block(t0, n)
    store.write_block(labels, frames, segments, tracker_state=state)


def test_round_trip_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "v.zarr"
    store = _open(path)
    _write(store, 0, 3)
    _write(store, 3, 3)
    assert store_status(path) is None  # not finished
    store.finish()
    assert store_status(path) == 6
    reader = open_store(path)
    assert len(reader) == 6 and reader.status == "done"
    expected = np.concatenate([_block(0, 3)[0], _block(3, 3)[0]])
    np.testing.assert_array_equal(reader.labels(), expected)
    np.testing.assert_array_equal(reader.labels(4), expected[4])
    frames = reader.frames
    np.testing.assert_array_equal(frames["index"], np.arange(6) * 2)
    np.testing.assert_array_equal(frames["segment_start"], np.arange(6) * 2)
    np.testing.assert_array_equal(frames["segment_count"], [2] * 6)
    segments = reader.segments
    np.testing.assert_array_equal(segments["frame"], np.repeat(np.arange(6), 2))
    tracks = reader.tracks
    np.testing.assert_array_equal(tracks["track_id"], [1, 2])
    # track 1: class 1 on frames 0 and 3 (scores .50 + .53), class 0 on the other four
    np.testing.assert_array_equal(tracks["class_id"], [0, 3])
    np.testing.assert_array_equal(tracks["first_frame"], [0, 0])
    np.testing.assert_array_equal(tracks["last_frame"], [5, 5])
    np.testing.assert_array_equal(tracks["frames"], [6, 6])
    np.testing.assert_allclose(tracks["score"], [0.525, 0.525], rtol=1e-6)
    frame_ids, masks = reader.track_mask(1)
    np.testing.assert_array_equal(frame_ids, np.arange(6))
    np.testing.assert_array_equal(masks, expected == 1)
    rle = reader.segment_rle(2)  # frame 1, track 1: rows 0-1, columns 1-2
    # column-major: 6 zeros (col 0), then col 1: 2 ones + 4 zeros, col 2: 2 ones
    assert rle["size"] == [6, 8]
    from streamseg.video.rle import decode_mask

    np.testing.assert_array_equal(decode_mask(rle), expected[1] == 1)


def test_plain_zarr_can_read_it(tmp_path: Path) -> None:
    import zarr

    path = tmp_path / "v.zarr"
    store = _open(path, frames_per_shard=2)
    _write(store, 0, 3)
    _write(store, 3, 1)
    store.finish()
    group = zarr.open_group(str(path), mode="r")
    assert group["labels"].shape == (4, *SIZE)
    assert group["labels"].chunks == (1, *SIZE) and group["labels"].shards == (2, *SIZE)
    assert sorted(p.name for p in (path / "labels" / "c").iterdir()) == ["0", "1"]  # 2 shards
    np.testing.assert_array_equal(group["labels"][3], _block(3, 1)[0][0])
    assert group["labels"].dtype == np.int32
    assert group.attrs["streamseg"]["status"] == "done"
    assert group.attrs["streamseg"]["frames"] == 4
    np.testing.assert_array_equal(group["frames"]["time"][:], np.arange(4) / 12.5)
    assert group["segments"]["track_id"].shape == (8,)


@pytest.mark.parametrize("shard", [0, 3])
def test_uncommitted_rows_are_dropped_on_resume(tmp_path: Path, shard: int) -> None:
    path = tmp_path / "v.zarr"
    store = _open(path, frames_per_shard=shard)
    _write(store, 0, 2, state='{"a":1}')
    # a crash mid-block: data written to the arrays, no commit record
    labels, frames, segments = _block(2, 2)
    group = store._group
    group["labels"].resize((9, *SIZE))
    group["labels"][2:4] = labels + 7
    group["segments"]["track_id"].resize((50,))
    del store
    reader = open_store(path)  # a reader during the run sees committed frames only
    assert len(reader) == 2 and reader.segments["track_id"].shape == (4,)
    resumed = _open(path, frames_per_shard=shard)
    assert resumed.committed_frames == 2
    assert resumed.progress.tracker == '{"a":1}'
    _write(resumed, 2, 2)
    resumed.finish()
    straight = _open(tmp_path / "w.zarr", frames_per_shard=shard)
    _write(straight, 0, 2)
    _write(straight, 2, 2)
    straight.finish()
    a, b = open_store(path), open_store(tmp_path / "w.zarr")
    np.testing.assert_array_equal(a.labels(), b.labels())
    for name in ("frames", "segments", "tracks"):
        for col, values in getattr(b, name).items():
            np.testing.assert_array_equal(getattr(a, name)[col], values, err_msg=f"{name}.{col}")


def test_other_identity_refused_overwrite_replaces(tmp_path: Path) -> None:
    path = tmp_path / "v.zarr"
    store = _open(path)
    _write(store, 0, 2)
    other = {"source": {"name": "b.mp4", "bytes": 11}, "settings": {"stride": 1}}
    with pytest.raises(UserError, match="another video"):
        _open(path, identity=other)
    with pytest.raises(UserError, match="other settings"):
        _open(path, identity={**IDENTITY, "settings": {"stride": 2}})
    fresh = _open(path, identity=other, overwrite=True)
    assert fresh.committed_frames == 0
    assert read_progress(path).frames == 0


def test_refuses_non_store_paths(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="not a streamseg store"):
        _open(folder)
    with pytest.raises(UserError, match="refusing"):
        _open(folder, overwrite=True)
    assert (folder / "keep.txt").read_text() == "precious"
    with pytest.raises(UserError, match="does not exist"):
        _open(tmp_path / "missing" / "v.zarr")
    with pytest.raises(UserError, match="no such store"):
        open_store(tmp_path / "nothing.zarr")


def test_finished_store_reopens_as_done(tmp_path: Path) -> None:
    path = tmp_path / "v.zarr"
    store = _open(path)
    _write(store, 0, 2)
    store.finish()
    again = _open(path)
    assert again.done and again.committed_frames == 2
    meta = json.loads((path / "zarr.json").read_text())["attributes"]["streamseg"]
    assert meta["identity"] == IDENTITY


def test_summarize_tracks_tie_goes_to_lowest_class() -> None:
    segments = {
        "track_id": np.array([5, 5]),
        "class_id": np.array([4, 2]),
        "score": np.array([0.5, 0.5], np.float32),
        "frame": np.array([0, 1]),
        "is_thing": np.array([1, 1]),
    }
    tracks = summarize_tracks(segments)
    assert tracks["class_id"].tolist() == [2]
    assert tracks["frames"].tolist() == [2]


@pytest.mark.parametrize("shard", [0, 4])
def test_labels_appended_ahead_equal_a_block_write(tmp_path: Path, shard: int) -> None:
    # The store writer's way: each block's maps first (append_labels), its table rows at the
    # commit (write_block(None, ...)); the store must equal one written block by block.
    ahead = _open(tmp_path / "ahead.zarr", frames_per_shard=shard)
    first, second = _block(0, 3), _block(3, 2)
    ahead.append_labels(first[0])
    ahead.append_labels(second[0])
    frames = {k: np.concatenate([first[1][k], second[1][k]]) for k in first[1]}
    segments = {k: np.concatenate([first[2][k], second[2][k]]) for k in first[2]}
    segments["frame"] = np.concatenate([first[2]["frame"], second[2]["frame"] + 3])
    ahead.write_block(None, frames, segments, tracker_state="{}")
    ahead.finish()
    plain = _open(tmp_path / "plain.zarr", frames_per_shard=shard)
    _write(plain, 0, 3)
    _write(plain, 3, 2)
    plain.finish()
    a, b = open_store(tmp_path / "ahead.zarr"), open_store(tmp_path / "plain.zarr")
    np.testing.assert_array_equal(a.labels(), b.labels())
    np.testing.assert_array_equal(a.labels(4), second[0][1])
    for name in ("frames", "segments", "tracks"):
        for col, values in getattr(b, name).items():
            np.testing.assert_array_equal(getattr(a, name)[col], values, err_msg=f"{name}.{col}")


def test_labels_appended_ahead_must_match_the_rows(tmp_path: Path) -> None:
    store = _open(tmp_path / "v.zarr")
    labels, frames, segments = _block(0, 3)
    store.append_labels(labels[:2])
    with pytest.raises(ValueError, match="3 frames, but 2 label maps"):
        store.write_block(None, frames, segments)
    with pytest.raises(ValueError, match="appended ahead wait"):
        store.write_block(labels, frames, segments)
    with pytest.raises(ValueError, match="2 label maps for 3 frames"):
        _open(tmp_path / "w.zarr").write_block(labels[:2], frames, segments)


def test_labels_appended_but_not_committed_are_dropped_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "v.zarr"
    store = _open(path, frames_per_shard=4)
    _write(store, 0, 2, state='{"a":1}')
    store.append_labels(_block(2, 2)[0] + 7)  # a crash before this block's rows and commit
    del store
    resumed = _open(path, frames_per_shard=4)
    assert resumed.committed_frames == 2
    _write(resumed, 2, 2)
    resumed.finish()
    np.testing.assert_array_equal(
        open_store(path).labels(), np.concatenate([_block(0, 2)[0], _block(2, 2)[0]])
    )
