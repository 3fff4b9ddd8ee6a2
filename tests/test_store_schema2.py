"""Schema 2 of the label store: xarray sees labels(t, y, x) with a time coordinate, the
consolidated metadata follows the commits, the root is an OME-Zarr 0.5 label image with a
pyramid; schema-1 stores (hand-built here in the old layout) still read everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamseg.cli import main
from streamseg.errors import UserError
from streamseg.video.store import LabelStore, open_store
from streamseg.video.store_check import check_store

SIZE = (64, 96)  # one pyramid level (32 x 48); the next (16 x 24) is below 32 pixels
NAMES = ["cat", "grass"]


def _block(t0: int, n: int, size: tuple[int, int] = SIZE) -> tuple[np.ndarray, dict, dict]:
    """n frames: track 1 (a thing, class 0) moving right one pixel a frame, track 2 (stuff,
    class 1) on the bottom rows."""
    height, width = size
    labels = np.zeros((n, height, width), np.int32)
    rows: dict[str, list] = {k: [] for k in ("frame", "track_id", "class_id", "is_thing")}
    for i in range(n):
        t = t0 + i
        labels[i, 3:13, 5 + t : 17 + t] = 1
        labels[i, height - 4 :, :] = 2
        for track, cls in ((1, 0), (2, 1)):
            rows["frame"].append(i)
            rows["track_id"].append(track)
            rows["class_id"].append(cls)
            rows["is_thing"].append(int(track == 1))
    segments = {k: np.array(v) for k, v in rows.items()}
    m = len(rows["frame"])
    segments["score"] = np.full(m, 0.75)
    segments["area"] = np.where(segments["track_id"] == 1, 120, 4 * width)
    for key in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"):
        segments[key] = np.zeros(m)
    frames = {
        "index": np.arange(t0, t0 + n),
        "pts": np.arange(t0, t0 + n) * 1000,
        "time": np.arange(t0, t0 + n) / 25.0,
        "keyframe": np.zeros(n),
        "corrupt": np.zeros(n),
    }
    return labels, frames, segments


def _open(path: Path) -> LabelStore:
    return LabelStore.open(
        path,
        label_size=SIZE,
        identity={"source": "v"},
        attrs={"vocabulary": {"names": NAMES}, "source": {"path": "/videos/walk.mp4"}},
        table_chunk=4,
        frames_per_shard=4,
    )


def _finished(path: Path, frames: int = 7) -> Path:
    store = _open(path)
    for t0 in range(0, frames, 3):
        store.write_block(*_block(t0, min(3, frames - t0)), tracker_state="{}")
    store.finish()
    return path


def test_xarray_gives_labels_over_t_with_a_time_coordinate(tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    store = _finished(tmp_path / "s.zarr")
    dataset = xr.open_zarr(store)
    assert dataset["labels"].dims == ("t", "y", "x")
    assert dataset["labels"].shape == (7, *SIZE)
    assert "time" in dataset.coords and dataset["time"].dims == ("t",)
    np.testing.assert_array_equal(dataset["time"].values, np.arange(7) / 25.0)
    np.testing.assert_array_equal(dataset["labels"].values, open_store(store).labels())
    assert dataset["labels"].dtype == np.int32  # no fill-value masking into floats
    # the frames table is indexed by t as well
    frames = xr.open_zarr(store, group="frames")
    assert frames["pts"].dims == ("t",) and frames.sizes["t"] == 7
    assert xr.open_zarr(store, group="segments")["track_id"].dims == ("segment",)
    assert xr.open_zarr(store, group="tracks")["track_id"].dims == ("track",)


def test_consolidated_metadata_shows_the_committed_frames_of_a_running_store(
    tmp_path: Path,
) -> None:
    import zarr

    xr = pytest.importorskip("xarray")
    path = tmp_path / "s.zarr"
    store = _open(path)
    store.write_block(*_block(0, 3), tracker_state="{}")
    store.write_block(*_block(3, 2), commit=False)  # appended, not committed (as a crash)
    root = json.loads((path / "zarr.json").read_text())
    consolidated = root["consolidated_metadata"]["metadata"]
    assert consolidated["labels"]["shape"] == [3, *SIZE]
    assert consolidated["frames/time"]["shape"] == [3]
    assert consolidated["segments/track_id"]["shape"] == [6]
    assert consolidated["pyramid/1"]["shape"] == [3, 32, 48]
    # the arrays' own metadata is ahead (grown in large steps): readers use the consolidated
    assert zarr.open_group(path, mode="r", use_consolidated=False)["labels"].shape[0] > 3
    group = zarr.open_consolidated(path)
    assert group["labels"].shape == (3, *SIZE)
    assert xr.open_zarr(path).sizes["t"] == 3
    store.commit("{}")
    assert xr.open_zarr(path).sizes["t"] == 5
    store.close()
    # a resumed store (the writer reopening it) keeps it right
    again = _open(path)
    again.write_block(*_block(5, 1), tracker_state="{}")
    again.finish()
    assert xr.open_zarr(path).sizes["t"] == 6
    assert zarr.open_consolidated(path)["tracks/track_id"].shape == (2,)


def test_ome_zarr_label_image_metadata_field_by_field(tmp_path: Path) -> None:
    path = _finished(tmp_path / "s.zarr")
    root = json.loads((path / "zarr.json").read_text())
    assert root["zarr_format"] == 3 and root["node_type"] == "group"
    ome = root["attributes"]["ome"]
    # OME-Zarr 0.5: the version sits in the "ome" key, not in multiscales / image-label
    assert ome["version"] == "0.5"
    (multiscale,) = ome["multiscales"]
    assert "version" not in multiscale
    assert multiscale["name"] == "walk.mp4"
    # axes: 2-5 of them, time before space, each name unique, types from the spec's list
    assert multiscale["axes"] == [
        {"name": "t", "type": "time"},
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ]
    datasets = multiscale["datasets"]
    assert [d["path"] for d in datasets] == ["labels", "pyramid/1"]
    scales = [d["coordinateTransformations"] for d in datasets]
    assert scales == [
        [{"type": "scale", "scale": [1.0, 1.0, 1.0]}],
        [{"type": "scale", "scale": [1.0, 2.0, 2.0]}],
    ]
    # every dataset: an integer array of the axes' dimensionality and names, finer first
    shapes = []
    for dataset in datasets:
        meta = json.loads((path / dataset["path"] / "zarr.json").read_text())
        assert meta["node_type"] == "array" and meta["data_type"] == "int32"
        assert meta["dimension_names"] == ["t", "y", "x"]
        shapes.append(meta["shape"])
    assert shapes == [[7, 64, 96], [7, 32, 48]]
    # image-label: one colour and one property per track, label values = track ids
    label = ome["image-label"]
    assert [c["label-value"] for c in label["colors"]] == [1, 2]
    for color in label["colors"]:
        assert len(color["rgba"]) == 4 and all(0 <= v <= 255 for v in color["rgba"])
    assert [(p["label-value"], p["class"]) for p in label["properties"]] == [
        (1, "cat"),
        (2, "grass"),
    ]
    # the pyramid level is the labels' every second pixel (nearest: ids never blended)
    import zarr

    group = zarr.open_group(path, mode="r")
    labels = np.asarray(group["labels"][:])
    np.testing.assert_array_equal(np.asarray(group["pyramid/1"][:]), labels[:, ::2, ::2])


def test_ome_zarr_models_validates_the_metadata_and_arrays(tmp_path: Path) -> None:
    pytest.importorskip("ome_zarr_models")
    import zarr
    from ome_zarr_models.v05.image_label import ImageLabel, ImageLabelAttrs
    from pydantic_zarr.v3 import GroupSpec

    path = _finished(tmp_path / "s.zarr")
    spec = GroupSpec.from_zarr(zarr.open_group(path, mode="r"))
    attrs = ImageLabelAttrs.model_validate(spec.attributes["ome"])
    assert attrs.image_label is not None and len(attrs.image_label.properties or ()) == 2
    # the group model: the metadata plus each dataset's array (exists, is an array, has the
    # axes' dimensionality). ImageLabel.from_zarr itself refuses the store because it looks
    # for an image's "labels" *group* there (docs/FORMATS.md says why the array keeps it).
    model = ImageLabel.model_validate({"attributes": spec.attributes, "members": spec.members})
    assert [d.path for d in model.ome_attributes.multiscales[0].datasets] == [
        "labels",
        "pyramid/1",
    ]


def test_small_labels_have_no_pyramid_and_still_a_valid_multiscale(tmp_path: Path) -> None:
    store = LabelStore.open(tmp_path / "s.zarr", label_size=(16, 16), identity={}, attrs={})
    store.write_block(*_block(0, 2, (16, 16)), tracker_state="{}")
    store.finish()
    ome = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())["attributes"]["ome"]
    assert [d["path"] for d in ome["multiscales"][0]["datasets"]] == ["labels"]
    assert not (tmp_path / "s.zarr" / "pyramid").exists()
    assert check_store(tmp_path / "s.zarr").ok


def test_info_check_finds_a_pyramid_that_disagrees(tmp_path: Path) -> None:
    import zarr

    path = _finished(tmp_path / "s.zarr")
    assert check_store(path).ok
    level = zarr.open_group(path, mode="r+", use_consolidated=False)["pyramid/1"]
    level[5, 0, 0] = 9
    assert check_store(path).problems == ("pyramid/1 disagrees with labels at frame 5",)


# ---------------------------------------------------------------- schema 1 (the old layout)


def _schema1_store(path: Path, status: str = "done") -> Path:
    """A store in schema 1's layout, built with zarr directly: every table dimension "row", no
    time array, pyramid, OME attributes or consolidated metadata."""
    import zarr

    from streamseg.video.store import FRAME_COLUMNS, SEGMENT_COLUMNS, TRACK_COLUMNS
    from streamseg.video.store_tracks import summarize_tracks

    labels, frames, segments = _block(0, 5, (8, 12))
    counts = np.bincount(segments["frame"], minlength=5)
    frames["segment_start"] = np.cumsum(counts) - counts
    frames["segment_count"] = counts
    tracks = summarize_tracks(segments) if status == "done" else None
    # as schema 1's writer did (empty_chunks_written): chunks of zeros are stored too
    zarr.config.set({"array.write_empty_chunks": True})
    group = zarr.open_group(path, mode="w", zarr_format=3)
    array = group.create_array(
        "labels", shape=labels.shape, chunks=(1, 8, 12), dtype="int32", fill_value=0,
        dimension_names=("t", "y", "x"),
    )  # fmt: skip
    array[:] = labels
    for table, columns, values in (
        ("frames", FRAME_COLUMNS, frames),
        ("segments", SEGMENT_COLUMNS, segments),
        ("tracks", TRACK_COLUMNS, tracks),
    ):
        sub = group.create_group(table)
        for name, dtype in columns.items():
            data = np.zeros(0, dtype) if values is None else np.asarray(values[name], dtype)
            column = sub.create_array(
                name, shape=data.shape, chunks=(4,), dtype=dtype, fill_value=0,
                dimension_names=("row",),
            )  # fmt: skip
            if data.size:
                column[:] = data
    meta = {
        "schema_version": 1,
        "vocabulary": {"names": NAMES},
        "identity": {"source": "v"},
        "label_size": [8, 12],
        "status": status,
        "empty_chunks_written": True,
    }
    if status == "done":
        meta.update(frames=5, segments=10, tracks=2)
    group.attrs["streamseg"] = meta
    zarr.config.set({"array.write_empty_chunks": False})
    (path / "progress.json").write_text(
        json.dumps({"frames": 5, "segments": 10, "tracker": None, "extra": {}})
    )
    return path


def test_a_schema_1_store_still_reads_everywhere(tmp_path: Path, capsys) -> None:
    path = _schema1_store(tmp_path / "old.zarr")
    reader = open_store(path)
    assert reader.schema == 1 and len(reader) == 5
    assert reader.labels().shape == (5, 8, 12)
    assert reader.tracks["track_id"].tolist() == [1, 2]
    frames, masks = reader.track_mask(1)
    assert frames.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(masks, _block(0, 5, (8, 12))[0] == 1)
    assert [t for t, _ in reader.iter_track_mask(1, start=3)] == [3, 4]
    assert check_store(path).ok
    assert main(["info", str(path)]) == 0
    assert "schema:   1" in capsys.readouterr().out
    assert main(["info", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["schema"] == 1
    # export streams it (PNG: one file per frame, the track ids as RGB)
    out = tmp_path / "png"
    assert main(["export", str(path), "--format", "png", "--out", str(out)]) == 0
    from streamseg.panoptic_png import read_panoptic_png

    assert sorted(p.name for p in (out / "labels").iterdir())[:2] == ["000000.png", "000001.png"]
    np.testing.assert_array_equal(
        read_panoptic_png(out / "labels" / "000004.png"), reader.labels(4)
    )
    # and a finished schema-1 store is "done" for a rerun (nothing to write)
    assert LabelStore.open(path, label_size=(8, 12), identity={"source": "v"}, attrs={}).done


def test_info_says_schema_2(tmp_path: Path, capsys) -> None:
    path = _finished(tmp_path / "s.zarr")
    assert main(["info", str(path)]) == 0
    assert "schema:   2" in capsys.readouterr().out


def test_an_unfinished_schema_1_store_is_not_resumed(tmp_path: Path) -> None:
    path = _schema1_store(tmp_path / "old.zarr", status="running")
    before = sorted((p.relative_to(path), p.stat().st_mtime_ns) for p in path.rglob("*"))
    with pytest.raises(UserError, match="unfinished store of schema 1 cannot be resumed"):
        LabelStore.open(path, label_size=(8, 12), identity={"source": "v"}, attrs={})
    assert sorted((p.relative_to(path), p.stat().st_mtime_ns) for p in path.rglob("*")) == before
