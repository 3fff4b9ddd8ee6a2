"""The shapes world's class list exists twice: generated (synthetic) and as data (model side)."""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib import resources

from streamseg.model.vocab import SHAPES, SHAPES_FILE, builtin_vocabulary
from streamseg.synthetic.categories import shapes_categories

REWRITE = (
    "python -c 'import json, dataclasses; from streamseg.synthetic.categories import "
    'shapes_categories as s; print("[\\n" + ",\\n".join("  " + json.dumps(dataclasses.asdict(c)) '
    'for c in s()) + "\\n]")\' > streamseg/data/vocab/shapes.json'
)


def test_data_file_is_the_generated_list() -> None:
    text = resources.files("streamseg.data.vocab").joinpath(SHAPES_FILE).read_text("utf-8")
    # Through JSON once so tuples compare equal to the file's lists.
    generated = json.loads(json.dumps([asdict(c) for c in shapes_categories()]))
    assert json.loads(text) == generated, f"{SHAPES_FILE} is stale; rewrite it: {REWRITE}"


def test_builtin_vocabulary_follows_the_categories() -> None:
    classes = builtin_vocabulary(SHAPES).classes
    assert [(c.name, c.synonyms, c.is_thing) for c in classes] == [
        (c.name, c.synonyms, c.isthing) for c in shapes_categories()
    ]
