"""Large-scale jitter (Ghiasi et al., "Simple Copy-Paste", CVPR 2021) exactly as the official
FC-CLIP / Mask2Former COCO panoptic mapper builds it from detectron2 augmentations, in order:

1. `RandomFlip`: horizontal flip of the source picture.
2. `ResizeScale`: resize (aspect kept) to fit the target square times scale ~ U(min, max);
   the picture with Pillow's BILINEAR (antialiased when shrinking), the segments with NEAREST.
3. `FixedSizeCrop(pad=True, pad_value=128)`: a random crop where the picture is larger than the
   square (one uniform draw for both axes), then padding at the bottom/right where it is
   smaller: 128 in the picture, no segment in the targets.

What reaches the loss is then the official one: padded pixels are negative for every mask (the
padding is not ignored), and a segment cropped away stays a target with an empty mask (the
mapper keeps every non-crowd segment; there is no `filter_empty_instances`). docs/TRAINING.md
has the comparison point by point.

Parameters come from an explicit `torch.Generator`, so a sample's augmentation depends only on
(seed, epoch, index), not on DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streamseg.train.data import Sample

PAD_VALUE = 128  # detectron2 FixedSizeCrop's pad_value for the picture


@dataclass(frozen=True)
class JitterParams:
    """One draw: flip, the resized picture's size, and the crop offset in it (0 on an axis
    where the resized picture is not larger than the square)."""

    flip: bool
    height: int
    width: int
    offset_y: int
    offset_x: int


def draw_jitter(
    height: int,
    width: int,
    size: int,
    min_scale: float,
    max_scale: float,
    flip_prob: float,
    generator: torch.Generator,
) -> JitterParams:
    """detectron2 `RandomFlip` + `ResizeScale` + `FixedSizeCrop` parameters for a source of
    (height, width) and a (size, size) output.

    factor = min(size * scale / height, size * scale / width), scale ~ U(min_scale, max_scale);
    resized size = round(side * factor); crop offset = round(max(resized - size, 0) * u) with
    one u ~ U(0, 1) for both axes, as FixedSizeCrop draws it.
    """
    flip_draw, scale_draw, crop_draw = torch.rand(
        3, generator=generator, dtype=torch.float64
    ).tolist()
    scale = min_scale + (max_scale - min_scale) * scale_draw
    factor = min(size * scale / height, size * scale / width)
    # max(1, ...): an extreme aspect ratio at a small scale must not round a side to 0.
    new_h, new_w = max(1, round(height * factor)), max(1, round(width * factor))
    return JitterParams(
        flip=flip_draw < flip_prob,
        height=new_h,
        width=new_w,
        offset_y=round(max(new_h - size, 0) * crop_draw),
        offset_x=round(max(new_w - size, 0) * crop_draw),
    )


def segment_index_map(masks: Tensor) -> np.ndarray:
    """(N, H, W) bool disjoint masks -> (H, W) int32: k + 1 inside mask k, 0 elsewhere (on an
    overlap the later mask wins; panoptic masks do not overlap)."""
    index = np.zeros(masks.shape[1:], dtype=np.int32)
    for k, mask in enumerate(masks.numpy()):
        index[mask] = k + 1
    return index


def apply_jitter(sample: Sample, params: JitterParams, size: int) -> Sample:
    """Flip, resize, crop and pad a sample to the (size, size) square.

    Returns:
        the new Sample: image (3, size, size) uint8, padding 128; masks (N, size, size) for
        every input segment, in order (empty where cropped away); the same labels; ignore
        moved along (padding is not ignored).
    """
    from PIL import Image

    image = sample.image.permute(1, 2, 0).numpy()
    index = segment_index_map(sample.masks)
    # The official datasets mark no ignore pixels; one given by another dataset moves along.
    ignore = sample.ignore.numpy().astype(np.uint8)
    if params.flip:
        image, index, ignore = image[:, ::-1], index[:, ::-1], ignore[:, ::-1]
    new_size = (params.width, params.height)
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(
        new_size, Image.Resampling.BILINEAR
    )
    # Mode "I" (int32) keeps the segment indices; NEAREST never mixes them.
    resized_index = Image.fromarray(np.ascontiguousarray(index)).resize(
        new_size, Image.Resampling.NEAREST
    )
    resized_ignore = Image.fromarray(np.ascontiguousarray(ignore)).resize(
        new_size, Image.Resampling.NEAREST
    )
    y, x = params.offset_y, params.offset_x
    crop = np.asarray(resized)[y : y + size, x : x + size]
    crop_index = np.asarray(resized_index)[y : y + size, x : x + size]
    out_image = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    out_image[: crop.shape[0], : crop.shape[1]] = crop
    out_index = np.zeros((size, size), dtype=np.int64)
    out_index[: crop.shape[0], : crop.shape[1]] = crop_index
    out_ignore = np.zeros((size, size), dtype=bool)
    out_ignore[: crop.shape[0], : crop.shape[1]] = (
        np.asarray(resized_ignore)[y : y + size, x : x + size] > 0
    )
    count = sample.masks.shape[0]
    masks = torch.from_numpy(out_index)[None] == torch.arange(1, count + 1)[:, None, None]
    return Sample(
        image=torch.from_numpy(out_image).permute(2, 0, 1).contiguous(),
        masks=masks,
        labels=sample.labels.clone(),
        ignore=torch.from_numpy(out_ignore),
        image_id=sample.image_id,
    )


@dataclass(frozen=True)
class JitterConfig:
    """Large-scale jitter settings (official COCO: 1024, 0.1-2.0, flip 0.5)."""

    size: int = 1024  # output square side in pixels
    min_scale: float = 0.1  # smallest random scale of the target square
    max_scale: float = 2.0  # largest random scale of the target square
    flip_prob: float = 0.5  # probability of a horizontal flip


class JitteredDataset(torch.utils.data.Dataset):
    """Wrap a dataset with large-scale jitter; item i of epoch e is the same for any worker
    count (its generator is seeded from (seed, epoch, i))."""

    def __init__(self, dataset: torch.utils.data.Dataset, config: JitterConfig, seed: int) -> None:
        self.dataset = dataset
        self.config = config
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Sample:
        sample = self.dataset[index]
        generator = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.epoch) * 1_000_003 + int(index)
        )
        c = self.config
        _, height, width = sample.image.shape
        params = draw_jitter(
            height, width, c.size, c.min_scale, c.max_scale, c.flip_prob, generator
        )
        return apply_jitter(sample, params, c.size)
