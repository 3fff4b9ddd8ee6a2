"""Vocabularies: the classes a user asks for, their synonyms, and which of them are stuff.

    parse_vocab("person|people,car,red panda", stuff="road")   # CLI syntax
    parse_vocab("coco")                                       # a built-in dataset vocabulary
    load_vocab_file("classes.txt")                            # `id:name,syn` or one per line

A class is a thing (separate instances) unless declared stuff. The built-in vocabularies come
from the official FC-CLIP class files in streamseg/data/vocab/ (one line per class, synonyms
comma-separated) with the official thing/stuff split from categories.json.

The text side (prompt templates, text classifier, its disk cache) lives in text_classifier.py,
which builds on this module (never the other way round).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from streamseg.errors import UserError

__all__ = [
    "BUILTIN_VOCABULARIES",
    "VocabClass",
    "Vocabulary",
    "builtin_vocabulary",
    "load_vocab_file",
    "parse_vocab",
    "seen_classes",
    "split_synonyms",
]


@dataclass(frozen=True)
class VocabClass:
    """One class: its display name, every synonym (the name first), thing or stuff."""

    name: str
    synonyms: tuple[str, ...]
    is_thing: bool = True


@dataclass(frozen=True)
class Vocabulary:
    """An ordered set of classes; class index = position in `classes`."""

    classes: tuple[VocabClass, ...]

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        """Display name of each class."""
        return [c.name for c in self.classes]

    @property
    def is_thing(self) -> list[bool]:
        """True for thing classes, False for stuff, per class."""
        return [c.is_thing for c in self.classes]

    def to_json(self) -> str:
        """JSON text: a list of {"name", "synonyms", "is_thing"}."""
        return json.dumps(
            [
                {"name": c.name, "synonyms": list(c.synonyms), "is_thing": c.is_thing}
                for c in self.classes
            ]
        )

    @classmethod
    def from_json(cls, data: str | list[dict[str, Any]]) -> Vocabulary:
        """Inverse of `to_json`; also accepts the already-parsed list."""
        items = json.loads(data) if isinstance(data, str) else data
        return cls(
            classes=tuple(
                VocabClass(
                    name=str(item["name"]),
                    synonyms=tuple(str(s) for s in item.get("synonyms") or [item["name"]]),
                    is_thing=bool(item.get("is_thing", True)),
                )
                for item in items
            )
        )


# Built-in name -> (class file, categories.json key or None). Without a categories entry the
# split follows how the official code registers the dataset: LVIS is instance-only (all
# things); the semantic-only datasets register stuff classes only (all stuff).
BUILTIN_VOCABULARIES: dict[str, tuple[str, str | None]] = {
    "coco": ("coco_panoptic_with_prompt_eng.txt", "coco_categories_with_prompt_eng"),
    "ade20k": ("ade20k_150_with_prompt_eng.txt", "ade20k_categories_with_prompt_eng"),
    "ade20k-847": ("ade20k_847_with_prompt_eng.txt", None),
    "cityscapes": ("cityscapes_with_prompt_eng.txt", "cityscapes_categories_with_prompt_eng"),
    "mapillary": (
        "mapillary_vistas_with_prompt_eng.txt",
        "mapillary_vistas_categories_with_prompt_eng",
    ),
    "pascal-voc": ("pascal_voc_21_with_prompt_eng.txt", None),
    "pascal-context": ("pascal_ctx_59_with_prompt_eng.txt", None),
    "pascal-context-459": ("pascal_ctx_459_with_prompt_eng.txt", None),
    "coco-stuff": ("coco_stuff_with_prompt_eng.txt", "coco_stuff_categories"),
    "lvis": ("lvis_1203_with_prompt_eng.txt", None),
}
_ALL_THINGS = {"lvis"}
# The shapes world's classes (streamseg/synthetic) as data, so the model never imports the
# synthetic package; tests/test_shapes_data.py checks the file against the generator.
SHAPES = "shapes"
SHAPES_FILE = "shapes.json"

_ID_LINE = re.compile(r"^\s*(\d+)\s*:(.*)$")


def _clean(name: str) -> str:
    """Trim and collapse inner whitespace ("red   panda " -> "red panda")."""
    return " ".join(name.split())


def split_synonyms(names: str) -> tuple[str, ...]:
    """An official class-file entry "name, syn,syn2" -> ("name", "syn", "syn2").

    As the official code: ", " is first replaced by ","; then split on ",". Empty pieces are
    dropped here (callers that must reject them check before)."""
    return tuple(s for s in (_clean(p) for p in names.replace(", ", ",").split(",")) if s)


def _read_data(name: str) -> str:
    return resources.files("streamseg.data.vocab").joinpath(name).read_text(encoding="utf-8")


@cache
def _categories() -> dict[str, list[dict[str, Any]]]:
    return json.loads(_read_data("categories.json"))


def _parse_class_file(text: str, source: str) -> list[tuple[int, tuple[str, ...]]]:
    """`id:name,syn,...` lines -> [(id, synonyms)], `invalid_class_id` entries skipped."""
    entries: list[tuple[int, tuple[str, ...]]] = []
    seen_ids: set[int] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ID_LINE.match(line)
        if match is None:
            raise UserError(f"{source}: line {number}: expected 'id:name,synonym,...'")
        class_id, names = int(match.group(1)), match.group(2).strip()
        if class_id in seen_ids:
            raise UserError(f"{source}: line {number}: id {class_id} appears twice")
        seen_ids.add(class_id)
        if names == "invalid_class_id":
            continue
        synonyms = split_synonyms(names)
        if not synonyms:
            raise UserError(f"{source}: line {number}: class {class_id} has no name")
        entries.append((class_id, synonyms))
    return entries


@cache
def builtin_vocabulary(name: str) -> Vocabulary:
    """The vocabulary of a built-in dataset (`BUILTIN_VOCABULARIES` or "shapes")."""
    if name == SHAPES:
        return Vocabulary(
            classes=tuple(
                VocabClass(name=c["name"], synonyms=tuple(c["synonyms"]), is_thing=c["isthing"])
                for c in json.loads(_read_data(SHAPES_FILE))
            )
        )
    if name not in BUILTIN_VOCABULARIES:
        known = ", ".join([*BUILTIN_VOCABULARIES, SHAPES])
        raise UserError(f"{name}: not a built-in vocabulary (known: {known})")
    filename, categories_key = BUILTIN_VOCABULARIES[name]
    entries = _parse_class_file(_read_data(filename), filename)
    if categories_key is not None:
        categories = _categories()[categories_key]
        # The official category lists are in class-file order (checked by the tests).
        flags = [bool(c.get("isthing", 0)) for c in categories]
    else:
        flags = [name in _ALL_THINGS] * len(entries)
    return Vocabulary(
        classes=tuple(
            VocabClass(name=synonyms[0], synonyms=synonyms, is_thing=flag)
            for (_, synonyms), flag in zip(entries, flags, strict=True)
        )
    )


def _apply_stuff(vocabulary: Vocabulary, stuff: str | None, source: str) -> Vocabulary:
    """Mark the classes named in `stuff` ("sky,road|street"; any synonym) as stuff."""
    if stuff is None or not stuff.strip():
        return vocabulary
    lookup: dict[str, int] = {}
    for index, vocab_class in enumerate(vocabulary.classes):
        for synonym in vocab_class.synonyms:
            lookup.setdefault(synonym.lower(), index)
    stuff_indices: set[int] = set()
    for item in stuff.split(","):
        names = [_clean(n) for n in item.split("|")]
        if not any(names):
            raise UserError(f"{source}: empty class name in {stuff!r}")
        found = [lookup[n.lower()] for n in names if n.lower() in lookup]
        if not found:
            raise UserError(f"{source}: {item.strip()!r} is not a class of the vocabulary")
        stuff_indices.update(found)
    return Vocabulary(
        classes=tuple(
            VocabClass(c.name, c.synonyms, is_thing=c.is_thing and i not in stuff_indices)
            for i, c in enumerate(vocabulary.classes)
        )
    )


def _check_unique(classes: list[VocabClass], source: str) -> None:
    names = [c.name.lower() for c in classes]
    for name in names:
        if names.count(name) > 1:
            raise UserError(f"{source}: class {name!r} appears twice")


def parse_vocab(text: str, stuff: str | None = None) -> Vocabulary:
    """A vocabulary from the CLI syntax or a built-in dataset name.

    Args:
        text: "person|people,car,red panda" (classes by commas, synonyms by `|`; spaces
            around names are ignored), or a built-in name (`coco`, `ade20k`, `ade20k-847`,
            `cityscapes`, `mapillary`, `pascal-voc`, `pascal-context`, `pascal-context-459`,
            `coco-stuff`, `lvis`, `shapes`).
        stuff: the classes that are stuff, same syntax (any synonym names its class).

    Raises:
        UserError: empty text, an empty class or synonym ("a,,b", "a|"), a repeated class,
            or a stuff name that is not in the vocabulary.
    """
    key = text.strip().lower()
    if key in BUILTIN_VOCABULARIES or key == SHAPES:
        return _apply_stuff(builtin_vocabulary(key), stuff, "--stuff")
    if not text.strip():
        raise UserError("--vocab: no class names given")
    classes: list[VocabClass] = []
    for item in text.split(","):
        synonyms = tuple(_clean(s) for s in item.split("|"))
        if not all(synonyms):
            raise UserError(f"--vocab: empty class name in {text!r}")
        classes.append(VocabClass(name=synonyms[0], synonyms=synonyms))
    _check_unique(classes, "--vocab")
    return _apply_stuff(Vocabulary(classes=tuple(classes)), stuff, "--stuff")


def _load_json_categories(path: Path, text: str) -> Vocabulary:
    """A COCO-panoptic JSON (or its `categories` list): names, `synonyms`, `isthing`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    categories = data.get("categories") if isinstance(data, dict) else data
    if not isinstance(categories, list) or not categories:
        raise UserError(f"{path}: no 'categories' list")
    classes = []
    for number, category in enumerate(categories, start=1):
        if not isinstance(category, dict) or not str(category.get("name", "")).strip():
            raise UserError(f"{path}: category {number} has no name")
        synonyms = split_synonyms(str(category["name"]))
        extra = tuple(_clean(str(s)) for s in category.get("synonyms", []) if str(s).strip())
        synonyms = tuple(dict.fromkeys(synonyms + extra))
        classes.append(VocabClass(synonyms[0], synonyms, is_thing=bool(category.get("isthing", 1))))
    return Vocabulary(classes=tuple(classes))


def _load_text_classes(path: Path, text: str) -> list[VocabClass]:
    """Classes of an official class file or a one-class-per-line file."""
    lines = [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise UserError(f"{path}: no classes in the file")
    with_ids = [_ID_LINE.match(line) is not None for _, line in lines]
    if all(with_ids):
        entries = _parse_class_file(text, str(path))
        if not entries:
            raise UserError(f"{path}: no classes in the file")
        return [VocabClass(name=s[0], synonyms=s) for _, s in entries]
    if any(with_ids):
        number = lines[with_ids.index(False)][0]
        raise UserError(
            f"{path}: line {number}: expected 'id:name,synonym,...' like the other lines"
        )
    classes = []
    for number, line in lines:
        pieces = [_clean(p) for p in re.split(r"[|,]", line)]
        if not all(pieces):
            raise UserError(f"{path}: line {number}: empty class name")
        classes.append(VocabClass(name=pieces[0], synonyms=tuple(pieces)))
    _check_unique(classes, str(path))
    return classes


def load_vocab_file(path: str | Path, stuff: str | None = None) -> Vocabulary:
    """A vocabulary from a file.

    Formats: the official class file (`id:name,synonym,...` per line, `invalid_class_id`
    skipped); one class per line (synonyms separated by `|` or `,`); or a COCO-panoptic JSON
    / categories list (`.json`: `name`, optional `synonyms`, `isthing`). Blank lines and lines
    starting with `#` are ignored. `stuff` marks classes as stuff (as in `parse_vocab`).

    Raises:
        UserError: naming the file (and line) when it cannot be read or parsed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such vocabulary file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read ({error})") from None
    if path.suffix.lower() == ".json":
        classes = list(_load_json_categories(path, text).classes)
    else:
        classes = _load_text_classes(path, text)
    # Official class files may repeat a name (ADE20K-847 does): kept, as the official code.
    vocabulary = Vocabulary(classes=tuple(classes))
    return _apply_stuff(vocabulary, stuff, "--stuff")


def seen_classes(vocabulary: Vocabulary, train_synonyms: set[str]) -> Tensor:
    """Which classes were seen in training: any synonym among the training synonyms.

    Official FC-CLIP decides the ensemble exponent (alpha for seen, beta for unseen) by exact
    synonym overlap with the COCO-panoptic training class names.

    Returns:
        (C,) bool.
    """
    return torch.tensor(
        [any(s in train_synonyms for s in c.synonyms) for c in vocabulary.classes],
        dtype=torch.bool,
    )


def vocabulary_from_options(
    vocab: str | None, vocab_file: str | Path | None, stuff: str | None
) -> Vocabulary | None:
    """The one reading of `--vocab` / `--vocab-file` / `--stuff`, for every command.

    Returns:
        The vocabulary the options give, or None when neither `--vocab` nor `--vocab-file`
        is given (then the model's default vocabulary applies).

    Raises:
        UserError: both given; an empty `--vocab`; `--stuff` without a vocabulary to apply to;
            a `--stuff` name that is not in the vocabulary; unreadable files.
    """
    if vocab is not None and vocab_file is not None:
        raise UserError("give at most one of --vocab and --vocab-file")
    if vocab_file is not None:
        return load_vocab_file(vocab_file, stuff=stuff)
    if vocab is not None:
        if not vocab.strip():
            raise UserError(
                "--vocab: empty; name the classes (e.g. --vocab 'person,dog' or coco), or leave "
                "it out for the model's own default classes"
            )
        return parse_vocab(vocab, stuff=stuff)
    if stuff is not None and stuff.strip():
        raise UserError("--stuff: names classes of --vocab or --vocab-file; give one of them")
    return None
