"""`streamseg image`: COCO-panoptic PNG encoding, the predictions JSON, category matching, and
an end-to-end run of the tiny random-weight model on the bundled sample image."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamseg.cli import main
from streamseg.errors import UserError
from streamseg.image_outputs import (
    decode_panoptic,
    encode_panoptic,
    image_id_for,
    match_categories,
    segments_info,
)
from streamseg.model.outputs import FrameSegmentation, Segment
from streamseg.model.vocab import parse_vocab

SAMPLE = Path(str(resources.files("streamseg.data.samples").joinpath("shapes.png")))


def test_panoptic_encoding_exact_values() -> None:
    ids = np.array([[0, 1, 258], [65536 * 3, 256**3 - 1, 70000]], np.int32)
    rgb = encode_panoptic(ids)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb[0, 1].tolist() == [1, 0, 0]
    assert rgb[0, 2].tolist() == [2, 1, 0]
    assert rgb[1, 0].tolist() == [0, 0, 3]
    assert rgb[1, 1].tolist() == [255, 255, 255]
    assert rgb[1, 2].tolist() == [70000 % 256, (70000 // 256) % 256, 70000 // 65536]
    np.testing.assert_array_equal(decode_panoptic(rgb), ids)
    with pytest.raises(ValueError):
        encode_panoptic(np.array([[256**3]]))


def hand_made() -> FrameSegmentation:
    panoptic = np.zeros((4, 6), np.int32)
    panoptic[:2, :3] = 1
    panoptic[2:, :] = 2
    segments = [
        Segment(id=1, class_id=1, score=0.9, area=6, bbox=(0, 0, 3, 2), is_thing=True),
        Segment(id=2, class_id=0, score=0.5, area=12, bbox=(0, 2, 6, 2), is_thing=False),
    ]
    return FrameSegmentation(panoptic=panoptic, segments=segments)


def test_segments_info_uses_the_category_ids() -> None:
    info = segments_info(hand_made(), category_ids=[184, 7])
    assert info == [
        {
            "id": 1,
            "category_id": 7,
            "area": 6,
            "bbox": [0, 0, 3, 2],
            "iscrowd": 0,
            "score": 0.9,
            "isthing": 1,
        },
        {
            "id": 2,
            "category_id": 184,
            "area": 12,
            "bbox": [0, 2, 6, 2],
            "iscrowd": 0,
            "score": 0.5,
            "isthing": 0,
        },
    ]


def test_categories_match_by_name_or_synonym() -> None:
    categories = [
        {"id": 1, "name": "person"},
        {"id": 3, "name": "car,automobile"},
        {"id": 9, "name": "red disc", "synonyms": ["red circle"]},
    ]
    vocabulary = parse_vocab("Automobile,people|person,red circle")
    assert match_categories(vocabulary, categories, "c.json") == [3, 1, 9]
    with pytest.raises(UserError, match="c.json: no category matches the class 'dog'"):
        match_categories(parse_vocab("dog"), categories, "c.json")


def test_image_ids_from_the_dataset_or_the_file_name() -> None:
    images = [{"id": 42, "file_name": "000000000139.jpg"}]
    assert image_id_for("000000000139.png", images) == 42
    assert image_id_for("000000000140.jpg", images) == 140
    assert image_id_for("street.jpg", None) == "street"


class FakeSegmenter:
    """Returns `hand_made()` scaled to each frame (the writer is tested without a model)."""

    model_id = "fake@sha256:0"

    def set_vocabulary(self, vocabulary):
        self.vocabulary = vocabulary
        return vocabulary

    def segment(self, frames):
        out = []
        for frame in frames:
            result = hand_made()
            assert frame.shape == (4, 6, 3)
            out.append(result)
        return out


def test_writer_with_categories_file(tmp_path, monkeypatch, capsys) -> None:
    import streamseg.commands.image as image_command

    monkeypatch.setattr(image_command, "load_segmenter", lambda *a: FakeSegmenter())
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("000000000007.jpg", "b.png"):
        Image.fromarray(np.full((4, 6, 3), 100, np.uint8)).save(inputs / name)
    dataset = {
        "images": [{"id": 7, "file_name": "000000000007.jpg", "height": 4, "width": 6}],
        "categories": [
            {"id": 5, "name": "sky", "isthing": 0},
            {"id": 11, "name": "kite", "isthing": 1},
        ],
    }
    (tmp_path / "gt.json").write_text(json.dumps(dataset))
    out = tmp_path / "out"
    code = main(
        [
            "image",
            str(inputs),
            "--vocab",
            "sky,kite",
            "--stuff",
            "sky",
            "--out",
            str(out),
            "--categories",
            str(tmp_path / "gt.json"),
            "--batch-size",
            "2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions["categories"] == dataset["categories"]
    assert [a["image_id"] for a in predictions["annotations"]] == [7, "b"]
    assert [a["file_name"] for a in predictions["annotations"]] == ["000000000007.png", "b.png"]
    first = predictions["annotations"][0]["segments_info"]
    assert [(s["id"], s["category_id"]) for s in first] == [(1, 11), (2, 5)]
    ids = decode_panoptic(np.asarray(Image.open(out / "panoptic" / "000000000007.png")))
    np.testing.assert_array_equal(ids, hand_made().panoptic)
    assert (out / "overlay" / "b.png").is_file()


def test_unreadable_image_is_named_and_nothing_written(tmp_path, capsys) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "out"
    code = main(["image", str(bad), "--vocab", "cat", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"streamseg image: error: {bad}: not a readable image")
    assert not out.exists()


def test_missing_inputs_and_vocab_options(tmp_path, capsys) -> None:
    assert main(["image", str(tmp_path / "nope.png"), "--vocab", "cat", "--out", "o"]) == 2
    assert "nope.png: no such image, folder or pattern" in capsys.readouterr().err
    both = ["--vocab", "cat", "--vocab-file", str(SAMPLE)]
    assert main(["image", str(SAMPLE), *both, "--out", str(tmp_path / "o")]) == 2
    assert "at most one of --vocab and --vocab-file" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The CLI once on the sample image (plus a half-size copy) with the tiny random model."""
    folder = tmp_path_factory.mktemp("images")
    image = Image.open(SAMPLE).convert("RGB")
    image.save(folder / "sample.png")
    image.resize((128, 96)).save(folder / "small.jpg")
    out = tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as patch:
        # The text-classifier cache goes to a temporary folder, not the user's home.
        patch.setenv("STREAMSEG_CACHE", str(tmp_path_factory.mktemp("cache")))
        code = main(
            [
                "image",
                str(folder / "*"),
                "--vocab",
                "red hexagon|red polygon,pink square,water,grass,snow",
                "--stuff",
                "water,grass,snow",
                "--out",
                str(out),
                "--model",
                "tiny-convnext",
                "--device",
                "cpu",
                "--batch-size",
                "2",
            ]
        )
    return code, folder, out


def test_end_to_end_tiny_model(tiny_run) -> None:
    code, folder, out = tiny_run
    assert code == 0
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions["info"]["model"].startswith("tiny-convnext-random-seed0@sha256:")
    assert [c["name"] for c in predictions["categories"]] == [
        "red hexagon",
        "pink square",
        "water",
        "grass",
        "snow",
    ]
    assert [c["isthing"] for c in predictions["categories"]] == [1, 1, 0, 0, 0]
    sizes = {"sample": (192, 256), "small": (96, 128)}
    assert [a["image_id"] for a in predictions["annotations"]] == ["sample", "small"]
    for annotation in predictions["annotations"]:
        ids = decode_panoptic(np.asarray(Image.open(out / "panoptic" / annotation["file_name"])))
        assert ids.shape == sizes[annotation["image_id"]]
        info = annotation["segments_info"]
        # Ids in the PNG are exactly the JSON's segments (plus 0 = none), areas and boxes agree.
        assert set(np.unique(ids)) - {0} == {s["id"] for s in info}
        for segment in info:
            ys, xs = np.nonzero(ids == segment["id"])
            assert segment["area"] == len(ys)
            assert segment["bbox"] == [
                int(xs.min()),
                int(ys.min()),
                int(np.ptp(xs)) + 1,
                int(np.ptp(ys)) + 1,
            ]
            assert 1 <= segment["category_id"] <= 5
            assert segment["isthing"] == (segment["category_id"] <= 2)
        overlay = np.asarray(Image.open(out / "overlay" / annotation["file_name"]))
        assert overlay.shape == (*ids.shape, 3)


def test_registry_model_not_downloaded(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STREAMSEG_CACHE", str(tmp_path))
    code = main(
        [
            "image",
            str(SAMPLE),
            "--vocab",
            "cat",
            "--out",
            str(tmp_path / "o"),
            "--model",
            "fcclip-convnext-large-coco",
            "--device",
            "cpu",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert (
        "fcclip-convnext-large-coco: weights not downloaded; run `streamseg weights fetch " in err
    )
    assert str(tmp_path / "weights" / "fcclip_cocopan.pth") in err
