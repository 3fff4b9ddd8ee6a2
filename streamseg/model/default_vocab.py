"""The vocabulary a model folder brings along, used when the user names none.

Every front end (run, image, app, batch, live) resolves a missing `--vocab` through
`require_vocabulary`, so they agree. A folder's default vocabulary is, in order:
1. config.json's `default_vocab` (a built-in name such as "shapes", or the CLI syntax
   "a|syn,b") with `default_stuff` (set by `streamseg weights ship --default-vocab`);
2. its `vocabulary.json` (the training vocabulary that `streamseg train` writes);
3. none: presets and official checkpoints know no classes, so the user must say them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamseg.errors import UserError
from streamseg.model import checkpoint, embedded
from streamseg.model.vocab import Vocabulary, parse_vocab

TRAIN_VOCABULARY_FILE = "vocabulary.json"


def folder_default_vocabulary(folder: str | Path) -> Vocabulary | None:
    """The default vocabulary of an own-format model folder (see the module docstring)."""
    folder = Path(folder)
    path = folder / checkpoint.CONFIG_FILE
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: unreadable JSON ({error})") from None
    text = header.get("default_vocab") if isinstance(header, dict) else None
    if text:
        if not isinstance(text, str):
            raise UserError(f"{path}: default_vocab must be a string")
        return parse_vocab(text, header.get("default_stuff") or None)
    vocab_file = folder / TRAIN_VOCABULARY_FILE
    if vocab_file.is_file():
        try:
            return Vocabulary.from_json(vocab_file.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"{vocab_file}: not a vocabulary JSON ({error})") from None
    return None


def model_folder(model_name: str | None) -> Path | None:
    """The own-format folder a `--model` value names (None = the default model), or None."""
    name = model_name or embedded.DEFAULT_MODEL
    path = Path(name)
    if path.is_dir():
        return path if (path / checkpoint.CONFIG_FILE).is_file() else None
    if path.exists():
        return None  # a weights file (official .pth), not a folder
    return embedded.find_model_folder(name)


def default_vocabulary(segmenter: Any, model_name: str | None) -> Vocabulary | None:
    """The default vocabulary of the model `segmenter` was built from.

    Args:
        segmenter: a `Segmenter` (its `default_vocabulary`, set by `from_pretrained`, is the
            answer) or a stand-in without that attribute.
        model_name: the `--model` value it was built from (None = DEFAULT_MODEL); used only
            for stand-ins.

    For a stand-in the folder's vocabulary is used only if its name is that folder's name
    (`Segmenter.from_pretrained` names folder models after the folder), so a segmenter built
    from something else never receives another model's classes.
    """
    if hasattr(segmenter, "default_vocabulary"):  # a `Segmenter` read its folder when loading
        own = segmenter.default_vocabulary
        return own if isinstance(own, Vocabulary) else None
    folder = model_folder(model_name)
    if folder is None or getattr(segmenter, "name", None) != folder.name:
        return None
    return folder_default_vocabulary(folder)


def require_vocabulary(segmenter: Any, model_name: str | None) -> Vocabulary:
    """`default_vocabulary`, or a UserError asking for --vocab."""
    vocabulary = default_vocabulary(segmenter, model_name)
    if vocabulary is None:
        label = getattr(segmenter, "name", None) or model_name or "the model"
        raise UserError(
            f"--vocab: no vocabulary given and {label} names no default one "
            "(e.g. --vocab 'person,dog' or coco)"
        )
    return vocabulary
