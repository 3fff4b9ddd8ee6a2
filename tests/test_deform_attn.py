"""The pure-PyTorch multi-scale deformable attention against a plain per-level reference that
does the bilinear sampling by hand (pixel-centre convention, zero outside the map)."""

from __future__ import annotations

import math

import pytest
import torch

from streamseg.model.ms_deform_attn import MSDeformAttn, level_sizes, ms_deform_attn_sample
from streamseg.model.pixel_decoder import reference_points, sine_position_embedding


def bilinear_zero_padded(value: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """value (D, H, W) sampled at normalized (x, y) in [0, 1] (align_corners False)."""
    _, height, width = value.shape
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(value.shape[0], dtype=value.dtype)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < height and 0 <= xx < width:
                out += wy * wx * value[:, yy, xx]
    return out


def reference_sample(value, shapes, locations, weights):
    batch, _, heads, dim = value.shape
    _, queries, _, levels, points, _ = locations.shape
    out = torch.zeros(batch, queries, heads, dim, dtype=value.dtype)
    start = 0
    for level, (height, width) in enumerate(shapes):
        level_value = value[:, start : start + height * width]  # (N, HW, M, D)
        start += height * width
        for n in range(batch):
            for m in range(heads):
                grid = level_value[n, :, m].T.reshape(dim, height, width)
                for q in range(queries):
                    for p in range(points):
                        x, y = locations[n, q, m, level, p].tolist()
                        out[n, q, m] += weights[n, q, m, level, p] * bilinear_zero_padded(
                            grid, x, y
                        )
    return out.reshape(batch, queries, heads * dim)


def test_sampling_matches_per_level_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    shapes = [(3, 5), (4, 2), (6, 7)]
    batch, heads, dim, queries, points = 2, 2, 3, 5, 3
    total = sum(h * w for h, w in shapes)
    value = torch.randn(batch, total, heads, dim, generator=generator, dtype=torch.float64)
    # Locations partly outside [0, 1] to exercise the zero padding.
    locations = torch.rand(batch, queries, heads, len(shapes), points, 2, generator=generator)
    locations = (locations * 1.4 - 0.2).double()
    weights = torch.rand(batch, queries, heads, len(shapes), points, generator=generator).double()
    weights = weights / weights.sum(dim=(-1, -2), keepdim=True)
    got = ms_deform_attn_sample(value, shapes, locations, weights)
    want = reference_sample(value, shapes, locations, weights)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_one_image_matches_its_row_of_a_batch() -> None:
    # With one image the per-level reshapes are strided views (made contiguous for the CPU
    # kernel's speed): the result must be the batch's row, bit for bit.
    generator = torch.Generator().manual_seed(1)
    shapes = [(5, 8), (3, 4)]
    heads, dim, queries, points = 2, 4, 6, 2
    total = sum(h * w for h, w in shapes)
    value = torch.randn(2, total, heads, dim, generator=generator)
    locations = torch.rand(2, queries, heads, len(shapes), points, 2, generator=generator)
    weights = torch.rand(2, queries, heads, len(shapes), points, generator=generator)
    both = ms_deform_attn_sample(value, shapes, locations, weights)
    for row in range(2):
        one = ms_deform_attn_sample(
            value[row : row + 1], shapes, locations[row : row + 1], weights[row : row + 1]
        )
        assert torch.equal(one[0], both[row])


def test_module_forward_matches_reference() -> None:
    torch.manual_seed(1)
    shapes = [(2, 3), (4, 4)]
    attn = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=2).double()
    with torch.no_grad():  # non-trivial offsets and weights
        for p in attn.parameters():
            p.add_(0.3 * torch.randn_like(p))
    total = sum(h * w for h, w in shapes)
    src = torch.randn(1, total, 8, dtype=torch.float64)
    ref = reference_points(shapes, "cpu", torch.float64)[None, :, None].expand(1, -1, 2, -1)
    got = attn(src, ref, src, shapes)

    value = attn.value_proj(src).view(1, total, 2, 4)
    offsets = attn.sampling_offsets(src).view(1, total, 2, 2, 2, 2)
    weights = attn.attention_weights(src).view(1, total, 2, 4).softmax(-1).view(1, total, 2, 2, 2)
    locations = torch.empty_like(offsets)
    for level, (height, width) in enumerate(shapes):
        locations[:, :, :, level, :, 0] = (
            ref[:, :, None, level, None, 0] + offsets[..., level, :, 0] / width
        )
        locations[:, :, :, level, :, 1] = (
            ref[:, :, None, level, None, 1] + offsets[..., level, :, 1] / height
        )
    want = attn.output_proj(reference_sample(value, shapes, locations, weights))
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_reference_points_are_normalized_pixel_centres() -> None:
    points = reference_points([(2, 4)], "cpu", torch.float32)
    assert points.shape == (8, 2)
    torch.testing.assert_close(points[0], torch.tensor([0.125, 0.25]))
    torch.testing.assert_close(points[-1], torch.tensor([0.875, 0.75]))


def test_sine_position_embedding_values() -> None:
    pos = sine_position_embedding(1, 2, 3, num_feats=4, device="cpu")
    assert pos.shape == (1, 8, 2, 3)
    y_last = 2 / (2 + 1e-6) * 2 * math.pi  # second row, y channels first
    x_first = 1 / (3 + 1e-6) * 2 * math.pi
    torch.testing.assert_close(pos[0, 0, 1, 0], torch.tensor(math.sin(y_last)))
    torch.testing.assert_close(pos[0, 1, 1, 0], torch.tensor(math.cos(y_last)))
    torch.testing.assert_close(pos[0, 2, 1, 0], torch.tensor(math.sin(y_last / 100)))  # 1e4^(2/4)
    torch.testing.assert_close(pos[0, 4, 0, 0], torch.tensor(math.sin(x_first)))
    torch.testing.assert_close(pos[0, 7, 0, 0], torch.tensor(math.cos(x_first / 100)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_level_sizes_equal_the_tensor_of_the_shapes(dtype: torch.dtype) -> None:
    shapes = [(100, 178), (50, 89), (25, 45)]
    want = torch.tensor([[w, h] for h, w in shapes], dtype=dtype)
    got = level_sizes(shapes, dtype, torch.device("cpu"))
    assert got.dtype == dtype and torch.equal(got, want)
