"""Map a store's vocabulary classes to a dataset's category ids, by name or synonym.

Names compare after normalizing (lower case; `_` and `-` as spaces; COCO's `-merged` and
`-other` suffixes dropped; FC-CLIP-style comma lists are synonyms). A `--category-map` JSON
object {"store class name": category id | category name | null} overrides the automatic
match (null = leave the class out: its pixels become VOID).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streamseg.errors import UserError


def normalize_name(name: str) -> str:
    """`"Wall-Other-Merged"` -> `"wall"`; `"traffic_light"` -> `"traffic light"`."""
    text = name.strip().lower()
    text = re.sub(r"(-merged|-other)+$", "", text)
    text = re.sub(r"[_\-]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def category_names(entry: Mapping[str, Any]) -> list[str]:
    """Every name of a dataset category: its name (split at commas) and `synonyms`."""
    names = [part for part in str(entry.get("name", "")).split(",") if part.strip()]
    names += [str(s) for s in entry.get("synonyms") or []]
    return [normalize_name(n) for n in names]


def vocabulary_classes(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A store's classes as [{"name", "synonyms", "is_thing"}] from its `vocabulary` attrs."""
    import json

    vocabulary = attrs.get("vocabulary") or {}
    if vocabulary.get("json"):
        items = json.loads(vocabulary["json"])
        return [
            {
                "name": str(item["name"]),
                "synonyms": [str(s) for s in item.get("synonyms") or [item["name"]]],
                "is_thing": bool(item.get("is_thing", True)),
            }
            for item in items
        ]
    names = list(vocabulary.get("names") or [])
    things = list(vocabulary.get("is_thing") or [True] * len(names))
    return [
        {"name": str(n), "synonyms": [str(n)], "is_thing": bool(t)}
        for n, t in zip(names, things, strict=False)
    ]


def vocabulary_categories(classes: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """Categories for an export without a dataset: class i -> category id i + 1."""
    return {
        i + 1: {
            "id": i + 1,
            "name": c["name"],
            "isthing": int(bool(c["is_thing"])),
            "synonyms": list(c.get("synonyms") or []),
        }
        for i, c in enumerate(classes)
    }


def read_category_map(path: str | Path | None) -> dict[str, Any]:
    """The `--category-map` JSON object (empty without a file)."""
    if path is None:
        return {}
    from streamseg.eval.formats import read_json

    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object {{store class: category id or name}}")
    return data


def map_classes(
    classes: Sequence[Mapping[str, Any]],
    categories: Mapping[int, Mapping[str, Any]],
    overrides: Mapping[str, Any] | None = None,
    source: str = "--category-map",
) -> tuple[dict[int, int], list[str]]:
    """Class index -> category id, and the names of classes left without a category.

    Raises:
        UserError: an override names a class not in the store, or a category not in the data.
    """
    overrides = dict(overrides or {})
    by_name: dict[str, int] = {}
    for cid, entry in categories.items():
        for name in category_names(entry):
            by_name.setdefault(name, cid)
    class_names = {str(c["name"]) for c in classes}
    for key in overrides:
        if key not in class_names:
            raise UserError(
                f"{source}: {key!r} is not a class of the store ({sorted(class_names)})"
            )
    mapping: dict[int, int] = {}
    unmapped: list[str] = []
    for index, cls in enumerate(classes):
        name = str(cls["name"])
        if name in overrides:
            target = overrides[name]
            if target is None:
                unmapped.append(name)
                continue
            if isinstance(target, int) and not isinstance(target, bool):
                if target not in categories:
                    raise UserError(f"{source}: {name!r} -> unknown category id {target}")
                mapping[index] = target
                continue
            found = by_name.get(normalize_name(str(target)))
            if found is None:
                raise UserError(f"{source}: {name!r} -> unknown category {target!r}")
            mapping[index] = found
            continue
        candidates = [name, *(cls.get("synonyms") or [])]
        found = next((by_name[n] for n in map(normalize_name, candidates) if n in by_name), None)
        if found is None:
            unmapped.append(name)
        else:
            mapping[index] = found
    return mapping, unmapped
