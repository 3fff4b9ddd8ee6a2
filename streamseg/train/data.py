"""COCO-panoptic-format datasets for training: panoptic JSON + PNG folder + image folder.

Any dataset in that format works (COCO, ADE20K panoptic, Cityscapes converted, the shapes world).
Segment ids are decoded from the PNG's RGB (id = R + 256 G + 256^2 B, COCO panopticapi
`rgb2id`). Categories get contiguous training ids in the order of the JSON's `categories` list
(after an optional subset: training on seen classes only). Targets are the official mapper's
(FC-CLIP / Mask2Former `COCOPanopticNewBaselineDatasetMapper`): one mask per non-crowd segment of
`segments_info`, even one with no pixels; crowd segments are left out, so their pixels are
negative for every mask, like VOID pixels. Everything a user can get wrong is checked when
the dataset is built, before training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from streamseg.errors import UserError
from streamseg.panoptic_png import rgb_to_id


@dataclass(frozen=True)
class Category:
    """One dataset category: its id in the JSON, name, thing/stuff, and its training id."""

    dataset_id: int
    name: str
    is_thing: bool
    train_id: int


@dataclass(frozen=True)
class Sample:
    """One training image and its targets.

    image: (3, H, W) uint8 RGB; masks: (N, H, W) bool, one per non-crowd segment (may be
    empty); labels: (N,) long training ids; ignore: (H, W) bool pixels without loss (the
    official data path has none: crowd and padding are negatives, so datasets here leave it
    all False); image_id: the dataset's image id.
    """

    image: Tensor
    masks: Tensor
    labels: Tensor
    ignore: Tensor
    image_id: Any


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: panoptic JSON not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: unreadable JSON ({error})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise UserError(f"{path}: not a COCO panoptic JSON (no '{key}' list)")
    return data


def build_categories(
    categories_json: list[dict], keep: tuple[str, ...] = (), source: str = "dataset"
) -> list[Category]:
    """Training categories in JSON order; `keep` (names) restricts to a subset, in that order
    of the JSON. Unknown names in `keep` are an error naming `source`."""
    names = [str(c["name"]) for c in categories_json]
    missing = sorted(set(keep) - set(names))
    if missing:
        raise UserError(f"{source}: categories {missing} are not in the dataset")
    chosen = [c for c in categories_json if not keep or str(c["name"]) in keep]
    return [
        Category(
            dataset_id=int(c["id"]),
            name=str(c["name"]),
            is_thing=bool(c.get("isthing", 1)),
            train_id=index,
        )
        for index, c in enumerate(chosen)
    ]


class PanopticDataset(torch.utils.data.Dataset):
    """A COCO-panoptic-format dataset.

    Args:
        json_path: the panoptic JSON (images, annotations with segments_info, categories).
        image_root: folder of the RGB images (`images[i].file_name`).
        panoptic_root: folder of the panoptic PNGs (`annotations[i].file_name`).
        keep_categories: train on these category names only (others' segments are removed,
            they become background), empty = all.
        min_area: drop segments smaller than this many pixels (after decoding); 0 = keep every
            segment, as officially.

    Raises:
        UserError: empty dataset, missing image/PNG files, unknown category ids.
    """

    def __init__(
        self,
        *,
        json_path: str | Path,
        image_root: str | Path,
        panoptic_root: str | Path,
        keep_categories: tuple[str, ...] = (),
        min_area: int = 0,
    ) -> None:
        json_path = Path(json_path)
        self.image_root = Path(image_root)
        self.panoptic_root = Path(panoptic_root)
        self.min_area = int(min_area)
        data = _read_json(json_path)
        self.all_categories = build_categories(data["categories"], (), str(json_path))
        self.categories = build_categories(
            data["categories"], tuple(keep_categories), str(json_path)
        )
        known = {c.dataset_id for c in self.all_categories}
        self._train_id = {c.dataset_id: c.train_id for c in self.categories}
        images = {img["id"]: img for img in data["images"]}
        self.records: list[dict] = []
        for ann in data["annotations"]:
            image = images.get(ann.get("image_id"))
            if image is None:
                raise UserError(
                    f"{json_path}: annotation names unknown image_id {ann.get('image_id')}"
                )
            png = self.panoptic_root / ann["file_name"]
            if not png.is_file():
                raise UserError(f"{json_path}: panoptic PNG {png} is missing")
            picture = self.image_root / image["file_name"]
            if not picture.is_file():
                raise UserError(f"{json_path}: image {picture} is missing")
            for segment in ann.get("segments_info", []):
                if int(segment["category_id"]) not in known:
                    raise UserError(
                        f"{json_path}: segment {segment.get('id')} of {ann['file_name']} has "
                        f"unknown category_id {segment['category_id']}"
                    )
            self.records.append({"image": picture, "png": png, "ann": ann, "image_id": image["id"]})
        if not self.records:
            raise UserError(f"{json_path}: the dataset has no annotated images")

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.categories]

    @property
    def is_thing(self) -> list[bool]:
        return [c.is_thing for c in self.categories]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        from PIL import Image, ImageOps

        record = self.records[index]
        # Upright by the EXIF orientation, as detectron2's read_image gives both files.
        with Image.open(record["image"]) as picture:
            image = np.asarray(ImageOps.exif_transpose(picture).convert("RGB"))
        with Image.open(record["png"]) as png:
            ids = rgb_to_id(np.asarray(ImageOps.exif_transpose(png).convert("RGB")))
        if ids.shape != image.shape[:2]:
            raise UserError(
                f"{record['png']}: size {ids.shape} differs from its image {image.shape[:2]}"
            )
        return self.targets_from_ids(image, ids, record["ann"].get("segments_info", []), record)

    def targets_from_ids(
        self, image: np.ndarray, ids: np.ndarray, segments: list[dict], record: dict
    ) -> Sample:
        """Binary masks + training ids from an id map and its segments_info."""
        height, width = ids.shape
        masks, labels = [], []
        for segment in segments:
            if segment.get("iscrowd", 0):
                continue
            region = ids == int(segment["id"])
            train_id = self._train_id.get(int(segment["category_id"]))
            if train_id is None or int(region.sum()) < self.min_area:
                continue
            masks.append(region)
            labels.append(train_id)
        mask_tensor = (
            torch.from_numpy(np.stack(masks))
            if masks
            else torch.zeros((0, height, width), dtype=torch.bool)
        )
        return Sample(
            image=torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous(),
            masks=mask_tensor,
            labels=torch.tensor(labels, dtype=torch.long),
            ignore=torch.zeros((height, width), dtype=torch.bool),
            image_id=record["image_id"],
        )


def collate_samples(samples: list[Sample]) -> list[Sample]:
    """Keep samples as a list (sizes differ before augmentation)."""
    return list(samples)
