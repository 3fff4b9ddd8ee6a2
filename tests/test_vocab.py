"""Vocabulary parsing: CLI syntax, class files, built-in datasets and their thing/stuff split."""

from __future__ import annotations

import json

import pytest

from streamseg.errors import UserError
from streamseg.model.config import coco_panoptic_synonyms
from streamseg.model.vocab import (
    BUILTIN_VOCABULARIES,
    VocabClass,
    Vocabulary,
    builtin_vocabulary,
    load_vocab_file,
    parse_vocab,
    seen_classes,
)


def test_cli_syntax_classes_synonyms_and_spaces() -> None:
    vocabulary = parse_vocab("  person | people ,car,red   panda ")
    assert vocabulary.classes == (
        VocabClass("person", ("person", "people"), True),
        VocabClass("car", ("car",), True),
        VocabClass("red panda", ("red panda",), True),
    )
    assert vocabulary.names == ["person", "car", "red panda"]
    assert len(vocabulary) == 3


def test_stuff_option_by_any_synonym() -> None:
    vocabulary = parse_vocab("person,road|street,sky", stuff="street, sky")
    assert vocabulary.is_thing == [True, False, False]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no class names"),
        ("   ", "no class names"),
        ("person,,car", "empty class name"),
        ("person,", "empty class name"),
        ("person|,car", "empty class name"),
        ("car,Car", "appears twice"),
    ],
)
def test_cli_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_vocab(text)


def test_unknown_stuff_name_is_an_error() -> None:
    with pytest.raises(UserError, match="'road' is not a class"):
        parse_vocab("person,car", stuff="road")


@pytest.mark.parametrize(
    "name, classes, things",
    [
        ("coco", 133, 80),
        ("ade20k", 150, 100),
        ("cityscapes", 19, 8),
        ("mapillary", 65, 37),
        ("coco-stuff", 171, 80),
        ("lvis", 1203, 1203),
        ("ade20k-847", 847, 0),
        ("pascal-context", 59, 0),
        ("pascal-context-459", 459, 0),
        ("pascal-voc", 21, 0),
        ("shapes", 54, 48),
    ],
)
def test_builtin_vocabularies(name: str, classes: int, things: int) -> None:
    vocabulary = parse_vocab(name)
    assert len(vocabulary) == classes
    assert sum(vocabulary.is_thing) == things


def test_builtin_details_match_the_official_files() -> None:
    coco = builtin_vocabulary("coco")
    # COCO ids with invalid_class_id are skipped; the first line is person with 17 synonyms.
    assert coco.classes[0].name == "person"
    assert coco.classes[0].synonyms[:3] == ("person", "child", "girl")
    assert len(coco.classes[0].synonyms) == 17
    assert coco.is_thing[:80] == [True] * 80 and coco.is_thing[80:] == [False] * 53
    # coco_stuff's file writes "a, b" with a space: split as the official code does.
    assert all(
        ", " not in s and s == s.strip()
        for c in parse_vocab("coco-stuff").classes
        for s in c.synonyms
    )
    city = builtin_vocabulary("cityscapes")
    assert city.classes[0].synonyms == ("road", "railroad")
    assert [c.name for c, t in zip(city.classes, city.is_thing, strict=True) if t] == [
        "person",
        "rider",
        "car",
        "truck",
        "bus",
        "train",
        "motorcycle",
        "bicycle",
    ]
    # Case does not matter for the built-in names; --stuff applies on top.
    assert parse_vocab("COCO", stuff="person").is_thing[0] is False


def test_builtin_names_are_all_known() -> None:
    assert set(BUILTIN_VOCABULARIES) == {
        "coco",
        "ade20k",
        "ade20k-847",
        "cityscapes",
        "mapillary",
        "pascal-voc",
        "pascal-context",
        "pascal-context-459",
        "coco-stuff",
        "lvis",
    }


def test_official_format_file(tmp_path) -> None:
    path = tmp_path / "classes.txt"
    path.write_text("0:invalid_class_id\n1:person,people, men\n\n# comment\n2:sky\n")
    vocabulary = load_vocab_file(path, stuff="sky")
    assert vocabulary.classes == (
        VocabClass("person", ("person", "people", "men"), True),
        VocabClass("sky", ("sky",), False),
    )


def test_one_class_per_line_file(tmp_path) -> None:
    path = tmp_path / "classes.txt"
    path.write_text("red panda|lesser panda\ncar, automobile\n  tree  \n")
    vocabulary = load_vocab_file(path)
    assert [c.synonyms for c in vocabulary.classes] == [
        ("red panda", "lesser panda"),
        ("car", "automobile"),
        ("tree",),
    ]


def test_json_categories_file(tmp_path) -> None:
    path = tmp_path / "panoptic.json"
    categories = [
        {"id": 7, "name": "red circle", "isthing": 1, "synonyms": ["red circle", "red disc"]},
        {"id": 9, "name": "grass,lawn", "isthing": 0},
    ]
    path.write_text(json.dumps({"categories": categories}))
    vocabulary = load_vocab_file(path)
    assert vocabulary.classes == (
        VocabClass("red circle", ("red circle", "red disc"), True),
        VocabClass("grass", ("grass", "lawn"), False),
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no classes in the file"),
        ("1:person\ncar\n", "line 2: expected 'id:name"),
        ("1:person\n1:car\n", "line 2: id 1 appears twice"),
        ("1:person\n2: ,\n", "line 2: class 2 has no name"),
        ("person\n|car\n", "line 2: empty class name"),
        ("person\nperson\n", "'person' appears twice"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(
        UserError, match=f"{path}: .*{message}" if "line" not in message else f"{path}: {message}"
    ):
        load_vocab_file(path)


def test_unreadable_files(tmp_path) -> None:
    with pytest.raises(UserError, match="no such vocabulary file"):
        load_vocab_file(tmp_path / "missing.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserError, match="binary.txt: cannot read"):
        load_vocab_file(binary)


def test_json_round_trip() -> None:
    vocabulary = parse_vocab("person|people,sky", stuff="sky")
    assert Vocabulary.from_json(vocabulary.to_json()) == vocabulary
    assert Vocabulary.from_json(json.loads(vocabulary.to_json())) == vocabulary


def test_seen_classes_by_synonym_overlap() -> None:
    vocabulary = parse_vocab("people|crowd,red panda,automobile|car")
    train = set(coco_panoptic_synonyms())
    assert seen_classes(vocabulary, train).tolist() == [True, False, True]
    assert seen_classes(vocabulary, set()).tolist() == [False, False, False]
