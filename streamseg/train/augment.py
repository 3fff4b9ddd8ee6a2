"""Large-scale jitter (Ghiasi et al., "Simple Copy-Paste", CVPR 2021), as Mask2Former/FC-CLIP
train COCO: resize by a random scale of the target square (aspect kept), random crop or zero-pad
to the fixed square, random horizontal flip. Image and masks move together.

The three steps are one affine map, applied with kornia's `warp_affine` to the image (bilinear)
and to the segment-index map (nearest; float32 keeps integer ids exact below 2^24). Pixels
outside the source image come out 0, so a warped validity channel marks the padding (kornia
does not know an ignore value). Parameters are drawn from an explicit `torch.Generator`, so a
sample's augmentation depends only on (seed, epoch, index), not on DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from streamseg.train.data import Sample


@dataclass(frozen=True)
class JitterParams:
    """One draw: scale factor of the source image, crop offset (x, y) in the resized image
    (negative = pad on that side), flip."""

    factor: float
    offset_x: float
    offset_y: float
    flip: bool


def draw_jitter(
    height: int,
    width: int,
    size: int,
    min_scale: float,
    max_scale: float,
    flip_prob: float,
    generator: torch.Generator,
) -> JitterParams:
    """detectron2 `ResizeScale` + `FixedSizeCrop` + `RandomFlip` parameters.

    factor = scale * min(size / height, size / width) with scale ~ U(min_scale, max_scale);
    the crop offset is uniform over the positions where the crop fits, 0 where it does not
    (then the image is padded at the bottom/right).
    """
    draw = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    scale = min_scale + (max_scale - min_scale) * draw[0]
    factor = scale * min(size / height, size / width)
    new_h, new_w = round(height * factor), round(width * factor)
    offset_y = float(int(draw[1] * (max(new_h - size, 0) + 1)))
    offset_x = float(int(draw[2] * (max(new_w - size, 0) + 1)))
    return JitterParams(
        factor=factor, offset_x=offset_x, offset_y=offset_y, flip=draw[3] < flip_prob
    )


def jitter_matrix(params: JitterParams, size: int) -> Tensor:
    """(1, 2, 3) affine map from source pixel coordinates to output pixel coordinates."""
    f = params.factor
    # Pixel centers: x_out + 0.5 = f (x_in + 0.5) - offset.
    shift = 0.5 * f - 0.5
    matrix = torch.tensor(
        [[f, 0.0, shift - params.offset_x], [0.0, f, shift - params.offset_y]], dtype=torch.float32
    )
    if params.flip:
        matrix = torch.tensor([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]]) @ torch.cat(
            [matrix, torch.tensor([[0.0, 0.0, 1.0]])]
        )
    return matrix[None]


def apply_jitter(sample: Sample, params: JitterParams, size: int) -> tuple[Sample, Tensor]:
    """Warp a sample to the (size, size) square.

    Returns:
        the new Sample (image (3, size, size) uint8, masks of the segments still visible,
        ignore = crowd pixels), and valid (size, size) bool: pixels that came from the image.
    """
    from kornia.geometry.transform import warp_affine

    matrix = jitter_matrix(params, size)
    _, height, width = sample.image.shape
    image = warp_affine(
        sample.image[None].float(), matrix, (size, size), mode="bilinear", align_corners=True
    )
    # Channel 0: segment index + 1 (0 = none), channel 1: crowd, channel 2: validity.
    index = torch.zeros((height, width), dtype=torch.float32)
    for k in range(sample.masks.shape[0]):
        index[sample.masks[k]] = float(k + 1)
    stack = torch.stack([index, sample.ignore.float(), torch.ones((height, width))])[None]
    warped = warp_affine(stack, matrix, (size, size), mode="nearest", align_corners=True)[0]
    index_out = warped[0].round().long()
    present = torch.unique(index_out)
    keep = [int(k) - 1 for k in present.tolist() if k > 0]
    masks = (
        torch.stack([index_out == k + 1 for k in keep])
        if keep
        else torch.zeros((0, size, size), dtype=torch.bool)
    )
    out = Sample(
        image=image[0].round().clamp(0, 255).to(torch.uint8),
        masks=masks,
        labels=sample.labels[keep] if keep else sample.labels[:0],
        ignore=warped[1] > 0.5,
        image_id=sample.image_id,
    )
    return out, warped[2] > 0.5


@dataclass(frozen=True)
class JitterConfig:
    """Large-scale jitter settings (official COCO: 1024, 0.1-2.0, flip 0.5)."""

    size: int = 1024  # output square side in pixels
    min_scale: float = 0.1  # smallest random scale of the target square
    max_scale: float = 2.0  # largest random scale of the target square
    flip_prob: float = 0.5  # probability of a horizontal flip


class JitteredDataset(torch.utils.data.Dataset):
    """Wrap a dataset with large-scale jitter; item i of epoch e is the same for any worker
    count (its generator is seeded from (seed, epoch, i)). Padding joins the ignore region."""

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
        out, valid = apply_jitter(sample, params, c.size)
        return Sample(
            image=out.image,
            masks=out.masks,
            labels=out.labels,
            ignore=out.ignore | ~valid,
            image_id=out.image_id,
        )
