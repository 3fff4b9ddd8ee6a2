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
    draw_jitter,
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


def test_crowd_is_background_and_subset_of_categories(tmp_path):
    # Official mapper: a crowd segment gets no target and no ignore region; its pixels are
    # negative for every mask, like VOID.
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
    assert not sample.ignore.any()
    assert not sample.masks[:, torch.from_numpy(ids == 301)].any()


def test_segment_absent_from_the_png_is_an_empty_target(tmp_path):
    # Official mapper: every non-crowd segment of segments_info is a target, even with 0 pixels.
    path = write_dataset(tmp_path, count=1)
    data = json.loads(path.read_text())
    data["annotations"][0]["segments_info"].append({"id": 999, "category_id": 7, "iscrowd": 0})
    path.write_text(json.dumps(data))
    sample = PanopticDataset(
        json_path=path, image_root=tmp_path / "images", panoptic_root=tmp_path / "panoptic"
    )[0]
    assert sample.labels.tolist() == [2, 0, 1, 0]
    assert sample.masks.shape[0] == 4 and not sample.masks[3].any()


def test_image_is_turned_upright_by_its_exif_orientation(tmp_path):
    # detectron2's read_image applies the EXIF orientation; orientation 3 = turned 180 degrees.
    dataset = _dataset(tmp_path, count=1)
    stored = np.array(Image.open(tmp_path / "images" / "0000.png"))
    exif = Image.Exif()
    exif[0x0112] = 3
    Image.fromarray(stored).save(tmp_path / "images" / "0000.png", exif=exif)
    sample = dataset[0]
    turned = torch.from_numpy(np.ascontiguousarray(stored[::-1, ::-1])).permute(2, 0, 1)
    assert torch.equal(sample.image, turned)


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
    out = apply_jitter(sample, JitterParams(True, 16, 16, 0, 0), 16)
    assert torch.equal(out.image, sample.image.flip(-1))
    assert torch.equal(out.masks, sample.masks.flip(-1))
    # Upscale x2 and crop at (x=8, y=4): nearest-neighbour repeat, cropped.
    out = apply_jitter(sample, JitterParams(False, 32, 32, 4, 8), 16)
    big = sample.masks.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, 4:20, 8:24]
    assert out.labels.tolist() == [5, 6, 7]
    assert torch.equal(out.masks, big)


def test_padding_is_128_and_negative_for_every_mask():
    # Official FixedSizeCrop pads the image with 128 at the bottom/right; the padded pixels are
    # in no mask and not ignored (the model learns them as background).
    sample = _coded_sample()
    out = apply_jitter(sample, JitterParams(False, 8, 8, 0, 0), 16)
    assert (out.image[:, 8:] == 128).all() and (out.image[:, :, 8:] == 128).all()
    assert not out.masks[:, 8:].any() and not out.masks[:, :, 8:].any()
    assert out.masks[:, :8, :8].sum() == 64
    assert not out.ignore.any()
    dataset = JitteredDataset([sample], JitterConfig(size=32, min_scale=0.3, max_scale=0.6), 0)
    assert not dataset[0].ignore.any() and (dataset[0].image[:, -1] == 128).all()


def test_flip_comes_before_the_crop_so_padding_stays_bottom_right():
    sample = _coded_sample()
    out = apply_jitter(sample, JitterParams(True, 8, 8, 0, 0), 16)
    assert (out.image[:, :, 8:] == 128).all()  # right side padded, flipped or not
    # Mask 0 (left half of the source) is on the right of the flipped 8-px picture.
    assert out.masks[0, :8, 4:8].all() and not out.masks[0, :, :4].any()


def test_segments_cropped_away_stay_as_empty_targets():
    # Official mapper: no filter_empty_instances; a segment outside the crop is an all-False
    # mask with its class (the query matched to it learns "no pixels").
    sample = _coded_sample()
    out = apply_jitter(sample, JitterParams(False, 32, 32, 0, 0), 16)  # top-left quarter
    assert out.labels.tolist() == [5, 6, 7]
    assert out.masks[0].all() and not out.masks[1].any() and not out.masks[2].any()


def test_image_resize_is_pillows_antialiased_bilinear():
    # A 1-pixel checkerboard shrunk 3x: antialiased bilinear averages it to mid grey
    # everywhere; a point-sampled (aliased) resize hits pixel centers: black or white.
    board = ((np.indices((33, 33)).sum(0) % 2) * 255).astype(np.uint8)
    image = torch.from_numpy(np.stack([board] * 3))
    sample = Sample(
        image,
        torch.zeros((0, 33, 33), dtype=torch.bool),
        torch.zeros(0).long(),
        torch.zeros(33, 33, dtype=torch.bool),
        0,
    )
    out = apply_jitter(sample, JitterParams(False, 11, 11, 0, 0), 11)
    assert ((out.image > 100) & (out.image < 156)).all()
    # Exactly detectron2's ResizeTransform on a natural-ish image (Pillow BILINEAR).
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    sample = Sample(
        torch.from_numpy(picture).permute(2, 0, 1),
        torch.zeros((0, 40, 30), dtype=torch.bool),
        torch.zeros(0).long(),
        torch.zeros(40, 30, dtype=torch.bool),
        0,
    )
    out = apply_jitter(sample, JitterParams(False, 17, 13, 0, 0), 24)
    expected = np.array(Image.fromarray(picture).resize((13, 17), Image.Resampling.BILINEAR))
    assert torch.equal(out.image[:, :17, :13], torch.from_numpy(expected).permute(2, 0, 1))


def test_draw_jitter_as_resize_scale_and_fixed_size_crop():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        p = draw_jitter(480, 640, 64, 0.1, 2.0, 0.5, generator)
        # ResizeScale: the long side fits scale * 64 (aspect kept up to rounding each side).
        assert abs(p.width * 480 - p.height * 640) <= 0.5 * 480 + 0.5 * 640
        assert 0.1 * 64 - 0.5 <= p.width <= 2.0 * 64 + 0.5
        assert 0 <= p.offset_y <= max(p.height - 64, 0)
        assert 0 <= p.offset_x <= max(p.width - 64, 0)
        if p.height > 64:
            # FixedSizeCrop draws one number for both axes.
            share_y = p.offset_y / (p.height - 64)
            share_x = p.offset_x / (p.width - 64)
            assert abs(share_y - share_x) < 1.0 / (p.height - 64) + 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_jitter_keeps_image_and_masks_aligned(seed):
    sample = _coded_sample(32)
    dataset = JitteredDataset([sample], JitterConfig(size=24, min_scale=0.3, max_scale=2.0), seed)
    out = dataset[0]
    assert out.image.shape == (3, 24, 24) and out.masks.shape[1:] == (24, 24)
    assert out.labels.tolist() == [5, 6, 7]  # every segment stays a target
    for mask, label in zip(out.masks, out.labels, strict=True):
        channel = int(label) - 5
        # Inside a mask (away from its border) the image shows that mask's color channel.
        inner = mask.clone()
        inner[1:-1, 1:-1] = mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        inner[0], inner[-1], inner[:, 0], inner[:, -1] = False, False, False, False
        assert (out.image[channel][inner] == 200).all()
    assert not out.ignore.any()
    # Deterministic per (seed, epoch, index).
    again = dataset[0]
    assert torch.equal(again.image, out.image) and torch.equal(again.masks, out.masks)


def test_real_png_through_jitter(tmp_path):
    dataset = JitteredDataset(_dataset(tmp_path, count=1), JitterConfig(size=48), seed=3)
    out = dataset[0]
    assert out.masks.shape[1:] == (48, 48)
    assert set(out.labels.tolist()) <= {0, 1, 2}
    Image.fromarray(out.image.permute(1, 2, 0).numpy())  # a valid uint8 image
