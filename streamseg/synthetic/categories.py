"""The shapes world's vocabulary: 8 colours x 6 shapes of things, 6 textured stuff classes.

This is data, not rendering: the writers and the training recipe read the category list from
`shapes_categories()`. The model side (`parse_vocab("shapes")`, the model card) reads the same
list from streamseg/data/vocab/shapes.json instead, so that the model never imports this
package; tests/test_shapes_data.py fails when the file and `shapes_categories()` disagree (and
says how to write the file again).

Category ids: things 1..48 in colour-major order (`red circle`=1, `red square`=2, ...),
stuff 49..54. Segment ids in ground truth are `category_id * 1000 + instance` (instance 0
for stuff, the track number >= 1 for things), so an id alone names its category.
"""

from __future__ import annotations

from dataclasses import dataclass

# Colours chosen far apart in hue/lightness from each other and from the stuff textures'
# dominant colours (white would vanish on snow, cyan on water/sky).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "orange": (250, 135, 15),
    "yellow": (245, 225, 30),
    "green": (30, 150, 50),
    "blue": (30, 60, 215),
    "purple": (135, 40, 185),
    "pink": (250, 130, 200),
    "black": (20, 20, 20),
}

# Shape name -> synonyms that also name it (first is the canonical name).
SHAPES: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"),
    "square": ("square",),
    "triangle": ("triangle",),
    "star": ("star",),
    "hexagon": ("hexagon",),
    "cross": ("cross", "plus sign"),
}

STUFF: dict[str, tuple[str, ...]] = {
    "grass": ("grass", "lawn"),
    "water": ("water", "sea"),
    "sand": ("sand", "beach"),
    "sky": ("sky",),
    "brick": ("brick", "brick wall"),
    "snow": ("snow",),
}

# Segment id = category_id * ID_FACTOR + instance (see the module docstring).
ID_FACTOR = 1000


@dataclass(frozen=True)
class Category:
    """One class of the shapes world.

    Attributes:
        id: COCO-style category id (1-based).
        name: canonical name, e.g. "red circle" or "grass".
        synonyms: names that also mean this class, canonical first.
        isthing: True for the coloured shapes, False for the textured stuff.
        color: (r, g, b) display colour (the object's paint colour for things).
        color_name: the colour word for things, "" for stuff.
        shape: the shape word for things, the stuff name for stuff.
    """

    id: int
    name: str
    synonyms: tuple[str, ...]
    isthing: bool
    color: tuple[int, int, int]
    color_name: str
    shape: str

    def to_coco(self) -> dict:
        """The COCO panoptic `categories` entry."""
        return {
            "id": self.id,
            "name": self.name,
            "supercategory": self.shape if self.isthing else "stuff",
            "isthing": int(self.isthing),
            "color": list(self.color),
            "synonyms": list(self.synonyms),
        }


STUFF_DISPLAY_COLORS: dict[str, tuple[int, int, int]] = {
    "grass": (70, 150, 60),
    "water": (40, 110, 170),
    "sand": (215, 190, 130),
    "sky": (150, 200, 240),
    "brick": (165, 70, 50),
    "snow": (235, 240, 245),
}


def shapes_categories() -> list[Category]:
    """All 54 categories of the shapes world, things first, in id order."""
    categories: list[Category] = []
    for color_name, rgb in COLORS.items():
        for shape, shape_synonyms in SHAPES.items():
            synonyms = tuple(f"{color_name} {word}" for word in shape_synonyms)
            categories.append(
                Category(
                    id=len(categories) + 1,
                    name=synonyms[0],
                    synonyms=synonyms,
                    isthing=True,
                    color=rgb,
                    color_name=color_name,
                    shape=shape,
                )
            )
    for stuff, stuff_synonyms in STUFF.items():
        categories.append(
            Category(
                id=len(categories) + 1,
                name=stuff,
                synonyms=stuff_synonyms,
                isthing=False,
                color=STUFF_DISPLAY_COLORS[stuff],
                color_name="",
                shape=stuff,
            )
        )
    return categories


def category_by_name() -> dict[str, Category]:
    """Canonical name -> category."""
    return {category.name: category for category in shapes_categories()}


def thing_category_id(color_name: str, shape: str) -> int:
    """Category id of a coloured shape (colour-major order)."""
    return list(COLORS).index(color_name) * len(SHAPES) + list(SHAPES).index(shape) + 1


def stuff_category_id(stuff: str) -> int:
    """Category id of a stuff class."""
    return len(COLORS) * len(SHAPES) + list(STUFF).index(stuff) + 1
