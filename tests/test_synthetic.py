"""The shapes world: determinism, exact ground truth, track ids, file formats, captions."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest

from streamseg.panoptic_png import id_to_rgb, read_panoptic_png, rgb_to_id
from streamseg.synthetic.categories import (
    ID_FACTOR,
    shapes_categories,
    stuff_category_id,
    thing_category_id,
)
from streamseg.synthetic.scene import SceneConfig, Thing, compose, render_image
from streamseg.synthetic.shapes import rasterize
from streamseg.synthetic.video import render_video, small_video_config

SMALL = replace(SceneConfig(), height=96, width=96)


def test_categories_ids_and_split() -> None:
    categories = shapes_categories()
    assert [c.id for c in categories] == list(range(1, 55))
    assert sum(c.isthing for c in categories) == 48
    assert categories[0].name == "red circle"
    assert thing_category_id("red", "square") == 2
    assert thing_category_id("black", "cross") == 48
    assert stuff_category_id("grass") == 49 and categories[48].name == "grass"
    assert len({c.name for c in categories}) == 54


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    a, b, c = render_image(7, SMALL), render_image(7, SMALL), render_image(8, SMALL)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.panoptic, b.panoptic)
    assert a.caption == b.caption and a.segments == b.segments
    assert not np.array_equal(a.image, c.image)
    va = render_video(3, small_video_config(64, 6))
    vb = render_video(3, small_video_config(64, 6))
    assert all(np.array_equal(x.image, y.image) for x, y in zip(va, vb, strict=True))
    assert all(np.array_equal(x.panoptic, y.panoptic) for x, y in zip(va, vb, strict=True))


def test_segments_cover_every_pixel_with_exact_area_and_bbox() -> None:
    for seed in range(5):
        scene = render_image(seed, SMALL)
        ids = set(np.unique(scene.panoptic).tolist())
        assert ids == {s.id for s in scene.segments}
        assert 0 not in ids
        for s in scene.segments:
            mask = scene.panoptic == s.id
            assert s.area == int(mask.sum())
            ys, xs = np.nonzero(mask)
            assert s.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert s.category_id == s.id // ID_FACTOR
            assert s.isthing == (s.track_id > 0)


def test_labelled_pixels_are_exactly_where_the_object_is_drawn() -> None:
    # Hand-placed scene: a red square over a black circle, on plain grass.
    labels = np.zeros((40, 40), dtype=np.int64)
    stuff = np.full((40, 40, 3), 100.0, dtype=np.float32)
    circle = Thing(1, "black", "circle", 15.0, 15.0, 12.0, 0.0, shade=1.0)
    square = Thing(2, "red", "square", 25.0, 25.0, 10.0, 0.0, shade=1.0)
    image, panoptic, segments = compose(stuff, labels, ["grass"], [circle, square])
    square_mask = rasterize(square.polygon(), 40, 40)
    circle_mask = rasterize(circle.polygon(), 40, 40) & ~square_mask
    assert np.array_equal(
        panoptic == thing_category_id("red", "square") * ID_FACTOR + 2, square_mask
    )
    assert np.array_equal(
        panoptic == thing_category_id("black", "circle") * ID_FACTOR + 1, circle_mask
    )
    background = ~(square_mask | circle_mask)
    assert np.all(panoptic[background] == stuff_category_id("grass") * ID_FACTOR)
    assert np.all(image[background] == 100)  # stuff pixels untouched
    assert np.all(image[square_mask][:, 1:] < 60) and np.all(image[square_mask][:, 0] > 100)
    assert {s.id for s in segments} == {49000, 43001, 2002}


def test_video_track_ids_consistent_and_reentry_keeps_id() -> None:
    frames = render_video(11, small_video_config(96, 24))
    categories_of_track: dict[int, int] = {}
    presence: dict[int, list[bool]] = {}
    for t, frame in enumerate(frames):
        for s in frame.segments:
            if s.isthing:
                # A track never changes category, and its id encodes both.
                assert categories_of_track.setdefault(s.track_id, s.category_id) == s.category_id
                assert s.id == s.category_id * ID_FACTOR + s.track_id
                presence.setdefault(s.track_id, [False] * len(frames))[t] = True
    # The wanderer (track 1) leaves the view and comes back with the same id.
    seen = presence[1]
    first, last = seen.index(True), len(seen) - 1 - seen[::-1].index(True)
    assert not all(seen[first : last + 1]), "track 1 should leave and re-enter"


def test_id_rgb_round_trip() -> None:
    ids = np.array([[0, 1, 255], [256, 54000, 256**3 - 1]], dtype=np.int32)
    rgb = id_to_rgb(ids)
    assert rgb[1, 0].tolist() == [0, 1, 0]
    assert np.array_equal(rgb_to_id(rgb), ids)


def _synth(argv: list[str]) -> None:
    from streamseg.commands import synth

    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    assert synth.run(parser.parse_args(argv)) == 0


def test_coco_panoptic_files_round_trip(tmp_path) -> None:
    _synth(["images", "--out", str(tmp_path), "--n", "3", "--seed", "5", "--size", "64", "80"])
    data = json.loads((tmp_path / "panoptic.json").read_text())
    assert len(data["images"]) == 3 and len(data["categories"]) == 54
    assert {c["isthing"] for c in data["categories"]} == {0, 1}
    config = replace(SceneConfig(), height=64, width=80)
    for image, annotation in zip(data["images"], data["annotations"], strict=True):
        assert (image["height"], image["width"]) == (64, 80)
        ids = read_panoptic_png(tmp_path / "panoptic" / annotation["file_name"])
        scene = render_image(5 + image["id"], config)
        assert np.array_equal(ids, scene.panoptic)
        info = {s["id"]: s for s in annotation["segments_info"]}
        assert set(np.unique(ids).tolist()) == set(info)
        for segment_id, s in info.items():
            assert s["area"] == int((ids == segment_id).sum())
    captions = json.loads((tmp_path / "captions.json").read_text())
    assert len(captions["annotations"]) == 3


def test_vipseg_files_and_mp4(tmp_path) -> None:
    import av

    _synth(
        [
            "videos",
            "--out",
            str(tmp_path),
            "--n",
            "1",
            "--seed",
            "2",
            "--size",
            "64",
            "--frames",
            "5",
            "--format",
            "png",
        ]
    )
    data = json.loads((tmp_path / "panoptic.json").read_text())
    video = data["videos"][0]
    name = video["video_id"]
    assert len(video["annotations"]) == 5
    frames = render_video(2, small_video_config(64, 5))
    for annotation, frame in zip(video["annotations"], frames, strict=True):
        ids = read_panoptic_png(tmp_path / "panomasks" / name / annotation["file_name"])
        assert np.array_equal(ids, frame.panoptic)
        assert {s["id"] for s in annotation["segments_info"]} == set(np.unique(ids).tolist())
    with av.open(str(tmp_path / "videos" / f"{name}.mp4")) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 5 and decoded[0].shape == (64, 64, 3)
    # Lossy but close to the rendered frame.
    assert np.abs(decoded[0].astype(int) - frames[0].image.astype(int)).mean() < 12


@pytest.mark.parametrize("seed", range(6))
def test_caption_names_every_present_class(seed: int) -> None:
    scene = render_image(seed, SMALL)
    names = {c.id: c.name for c in shapes_categories()}
    for s in scene.segments:
        assert names[s.category_id] in scene.caption
    absent = set(names) - {s.category_id for s in scene.segments}
    assert not any(f" {names[i]} " in f" {scene.caption} " for i in absent if names[i] != "sky")
