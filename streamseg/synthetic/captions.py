"""One caption per image naming every class in it, in varied wording.

Every present class appears by its canonical name ("red circle", "grass"); plurals only add a
suffix ("red circles", "red crosses"), so the canonical name is always a substring.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from streamseg.synthetic.categories import shapes_categories

_NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

_OPENINGS = [
    "a picture of {things}{stuff}.",
    "{things}{stuff}.",
    "an image showing {things}{stuff}.",
    "there is {things}{stuff}.",
    "a photo with {things}{stuff}.",
    "a drawing of {things}{stuff}.",
    "this scene contains {things}{stuff}.",
    "a rendering of {things}{stuff}.",
]
_STUFF_LINKS = [" on {stuff}", " over {stuff}", " in front of {stuff}", " with {stuff}"]
_STUFF_ONLY = ["a picture of {stuff}.", "{stuff}.", "an empty scene of {stuff}."]


class _HasCategory(Protocol):
    category_id: int


def _plural(name: str) -> str:
    return name + ("es" if name.endswith(("s", "x", "ch", "sh")) else "s")


def _join(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def write_caption(segments: Sequence[_HasCategory], rng: np.random.Generator) -> str:
    """A caption naming every category present in `segments` (things with counts)."""
    categories = {c.id: c for c in shapes_categories()}
    thing_counts = Counter(s.category_id for s in segments if categories[s.category_id].isthing)
    stuff_names = sorted(
        {categories[s.category_id].name for s in segments if not categories[s.category_id].isthing}
    )
    order = list(thing_counts)
    rng.shuffle(order)
    phrases = []
    for category_id in order:
        name, count = categories[category_id].name, thing_counts[category_id]
        if count == 1:
            phrases.append(("an " if name[0] in "aeiou" else "a ") + name)
        else:
            number = _NUMBERS[count] if count < len(_NUMBERS) else "many"
            phrases.append(f"{number} {_plural(name)}")
    stuff_order = list(stuff_names)
    rng.shuffle(stuff_order)
    if not phrases:
        return str(rng.choice(_STUFF_ONLY)).format(stuff=_join(stuff_order))
    stuff = str(rng.choice(_STUFF_LINKS)).format(stuff=_join(stuff_order)) if stuff_order else ""
    return str(rng.choice(_OPENINGS)).format(things=_join(phrases), stuff=stuff)
