"""Still-image outputs in standard formats: COCO-panoptic PNGs and the predictions JSON.

COCO panoptic PNG: each pixel's segment id as RGB, id = R + 256 G + 256^2 B (0 = no segment)
(Kirillov et al., "Panoptic Segmentation", CVPR 2019; the format of cocodataset/panopticapi).
The predictions JSON follows the COCO panoptic results format: per image an annotation with
`image_id`, `file_name` (the PNG) and `segments_info` (id, category_id, area, bbox, iscrowd),
so that standard tools (panopticapi's pq_compute) can score a folder of predictions.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError
from streamseg.model.outputs import FrameSegmentation
from streamseg.model.vocab import Vocabulary, split_synonyms
from streamseg.panoptic_png import id_to_rgb, rgb_to_id

# The image faces' names for the one COCO-panoptic codec (streamseg/panoptic_png.py).
encode_panoptic = id_to_rgb
decode_panoptic = rgb_to_id


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 PNG atomically (temp file in the same folder, then rename)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(handle)
    try:
        Image.fromarray(np.ascontiguousarray(image)).save(temp, format="PNG")
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def vocabulary_categories(vocabulary: Vocabulary) -> list[dict[str, Any]]:
    """COCO `categories` of a vocabulary: id = class index + 1."""
    return [
        {
            "id": index + 1,
            "name": vocab_class.name,
            "isthing": int(vocab_class.is_thing),
            "synonyms": list(vocab_class.synonyms),
        }
        for index, vocab_class in enumerate(vocabulary.classes)
    ]


def read_dataset_file(path: str | Path) -> dict[str, Any]:
    """A COCO(-panoptic) JSON or a bare categories list, as {"categories": [...], ...}.

    Raises:
        UserError: unreadable, not JSON, or without a usable categories list.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such categories file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read ({error})") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if isinstance(data, list):
        data = {"categories": data}
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list) or not categories:
        raise UserError(f"{path}: no 'categories' list")
    for number, category in enumerate(categories, start=1):
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise UserError(f"{path}: category {number} needs an 'id' and a 'name'")
    return data


def match_categories(
    vocabulary: Vocabulary, categories: Sequence[dict[str, Any]], source: str
) -> list[int]:
    """The dataset category id of each vocabulary class, matched by name or synonym.

    A category's names are its `name` split on commas (the official class-file style) plus
    its `synonyms` list if any; matching ignores case. The class's own name is tried first,
    then its other synonyms.

    Raises:
        UserError: a class matches no category (naming the class and `source`).
    """
    lookup: dict[str, int] = {}
    for category in categories:
        names = list(split_synonyms(str(category["name"])))
        names += [str(s) for s in category.get("synonyms", [])]
        for name in names:
            lookup.setdefault(" ".join(name.lower().split()), int(category["id"]))
    ids = []
    for vocab_class in vocabulary.classes:
        found = [lookup[s.lower()] for s in vocab_class.synonyms if s.lower() in lookup]
        if not found:
            raise UserError(f"{source}: no category matches the class {vocab_class.name!r}")
        ids.append(found[0])
    return ids


def image_id_for(file_name: str, images: Sequence[dict[str, Any]] | None) -> int | str:
    """The COCO image id of an input file: from the dataset's `images` by file name (stem
    compared, so a .jpg input matches a .png entry); otherwise the stem (an int if numeric)."""
    stem = Path(file_name).stem
    for image in images or ():
        if Path(str(image.get("file_name", ""))).stem == stem and "id" in image:
            return image["id"]
    return int(stem) if stem.isdigit() else stem


def segments_info(result: FrameSegmentation, category_ids: Sequence[int]) -> list[dict[str, Any]]:
    """COCO-panoptic `segments_info` of one frame (ids as in `result.panoptic`)."""
    return [
        {
            "id": int(segment.id),
            "category_id": int(category_ids[segment.class_id]),
            "area": int(segment.area),
            "bbox": [int(v) for v in segment.bbox],
            "iscrowd": 0,
            "score": round(float(segment.score), 6),
            "isthing": int(segment.is_thing),
        }
        for segment in result.segments
    ]
