"""COCO-panoptic dataset targets, bad inputs, and large-scale jitter alignment."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from panoptic_fixture import id_to_rgb, scene, write_dataset
from PIL import Image

from streamseg.errors import UserError
from streamseg.panoptic_png import rgb_to_id
from streamseg.train.augment import (
    JitterConfig,
    JitteredDataset,
    JitterParams,
    apply_jitter,
)
from streamseg.train.data import PanopticDataset, Sample


def _dataset(root, **kwargs):
    path = write_dataset(root, **kwargs)
    return PanopticDataset(
        json_path=path, image_root=root / "images", panoptic_root=root / "panoptic"
    )


def test_rgb_to_id_round_trip():
    ids = np.array([[0, 1, 255], [256, 300, 70000]])
    assert np.array_equal(rgb_to_id(id_to_rgb(ids)), ids)


def test_targets_from_written_dataset(tmp_path):
    dataset = _dataset(tmp_path, count=2)
    assert len(dataset) == 2
    assert dataset.class_names == ["square", "disc", "ground"]
    assert dataset.is_thing == [True, True, False]
    sample = dataset[1]
    image, ids, _ = scene(1)
    assert torch.equal(sample.image, torch.from_numpy(image).permute(2, 0, 1))
    assert sample.labels.tolist() == [2, 0, 1]  # ground, square, disc -> training ids
    for mask, seg_id in zip(sample.masks, (300, 301, 302), strict=True):
        assert torch.equal(mask, torch.from_numpy(ids == seg_id))
    assert not sample.ignore.any()


def test_crowd_is_ignored_and_subset_of_categories(tmp_path):
    path = write_dataset(tmp_path, count=1)
    data = json.loads(path.read_text())
    data["annotations"][0]["segments_info"][1]["iscrowd"] = 1  # the square
    path.write_text(json.dumps(data))
    dataset = PanopticDataset(
        json_path=path,
        image_root=tmp_path / "images",
        panoptic_root=tmp_path / "panoptic",
        keep_categories=("disc", "ground"),
    )
    _, ids, _ = scene(0)
    sample = dataset[0]
    assert dataset.class_names == ["disc", "ground"]
    assert sample.labels.tolist() == [1, 0]
    assert torch.equal(sample.ignore, torch.from_numpy(ids == 301))


def test_bad_inputs_are_clear_errors(tmp_path):
    path = write_dataset(tmp_path, count=2)
    good = json.loads(path.read_text())
    kwargs = dict(image_root=tmp_path / "images", panoptic_root=tmp_path / "panoptic")

    data = json.loads(json.dumps(good))
    data["annotations"][1]["file_name"] = "nope.png"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="nope.png is missing"):
        PanopticDataset(json_path=path, **kwargs)

    data = json.loads(json.dumps(good))
    data["annotations"][0]["segments_info"][0]["category_id"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="unknown category_id 99"):
        PanopticDataset(json_path=path, **kwargs)

    data = dict(good, annotations=[], images=[])
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="no annotated images"):
        PanopticDataset(json_path=path, **kwargs)

    path.write_text("{not json")
    with pytest.raises(UserError, match="unreadable JSON"):
        PanopticDataset(json_path=path, **kwargs)
    with pytest.raises(UserError, match="not found"):
        PanopticDataset(json_path=tmp_path / "missing.json", **kwargs)


def _coded_sample(size=16):
    """An image whose pixel colors encode their mask index, so alignment is checkable."""
    masks = torch.zeros((3, size, size), dtype=torch.bool)
    masks[0, :, : size // 2] = True
    masks[1, : size // 2, size // 2 :] = True
    masks[2, size // 2 :, size // 2 :] = True
    image = torch.zeros((3, size, size), dtype=torch.uint8)
    for k in range(3):
        image[k][masks[k]] = 200
    return Sample(
        image, masks, torch.tensor([5, 6, 7]), torch.zeros(size, size, dtype=torch.bool), 0
    )


def test_jitter_exact_cases():
    sample = _coded_sample()
    out, valid = apply_jitter(sample, JitterParams(1.0, 0.0, 0.0, True), 16)
    assert torch.equal(out.image, sample.image.flip(-1))
    assert torch.equal(out.masks, sample.masks.flip(-1))
    assert valid.all()
    # Upscale x2 and crop at (x=8, y=4): nearest-neighbour repeat, cropped.
    out, valid = apply_jitter(sample, JitterParams(2.0, 8.0, 4.0, False), 16)
    big = sample.masks.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, 4:20, 8:24]
    assert out.labels.tolist() == [5, 6, 7]
    assert torch.equal(out.masks, big)
    # Downscale x0.5 into a 16 square: the bottom/right is padding (valid False, masks empty).
    out, valid = apply_jitter(sample, JitterParams(0.5, 0.0, 0.0, False), 16)
    assert valid[:8, :8].all() and not valid[8:].any() and not valid[:, 8:].any()
    assert not out.masks[:, 8:].any() and out.masks[:, :8, :8].sum() == 64


@pytest.mark.parametrize("seed", range(6))
def test_jitter_keeps_image_and_masks_aligned(seed):
    sample = _coded_sample(32)
    dataset = JitteredDataset([sample], JitterConfig(size=24, min_scale=0.3, max_scale=2.0), seed)
    out = dataset[0]
    assert out.image.shape == (3, 24, 24) and out.masks.shape[1:] == (24, 24)
    for mask, label in zip(out.masks, out.labels, strict=True):
        channel = int(label) - 5
        # Inside a mask (away from its border) the image shows that mask's color channel.
        inner = mask.clone()
        inner[1:-1, 1:-1] = mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        inner[0], inner[-1], inner[:, 0], inner[:, -1] = False, False, False, False
        assert (out.image[channel][inner] == 200).all()
    assert not (out.masks.any(0) & out.ignore).any()  # padding is never inside a mask
    # Deterministic per (seed, epoch, index).
    again = dataset[0]
    assert torch.equal(again.image, out.image) and torch.equal(again.masks, out.masks)


def test_real_png_through_jitter(tmp_path):
    dataset = JitteredDataset(_dataset(tmp_path, count=1), JitterConfig(size=48), seed=3)
    out = dataset[0]
    assert out.masks.shape[1:] == (48, 48)
    assert set(out.labels.tolist()) <= {0, 1, 2}
    Image.fromarray(out.image.permute(1, 2, 0).numpy())  # a valid uint8 image
