"""The per-cell panoptic assignment (streamseg/model/panoptic_cells.py) against the full-size
path of `panoptic_batch.winning_slots` and PyTorch's bilinear resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamseg.model.code_stats import code_stats
from streamseg.model.panoptic_batch import MaskSizes, winning_slots
from streamseg.model.panoptic_cells import (
    axis_table,
    cell_code,
    cell_pixels,
    cell_stats,
    paint,
    resized_in_cells,
)
from streamseg.model.postprocess import resize_mask_logits


@pytest.fixture
def two_threads():
    """PyTorch's bilinear kernel rounds differently with one thread; the bit-level checks
    are about the multi-thread kernel the pipeline runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def blobs(queries: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """(Q, h, w) mask logits shaped like a model's: round blobs, positive inside."""
    generator = torch.Generator().manual_seed(seed)
    h, w = size
    yy, xx = torch.meshgrid(torch.arange(float(h)), torch.arange(float(w)), indexing="ij")
    centers = torch.rand(queries, 2, generator=generator) * torch.tensor([h, w])
    radius = (0.1 + 0.3 * torch.rand(queries, 1, 1, generator=generator)) * min(h, w)
    dist2 = (yy - centers[:, :1, None]) ** 2 + (xx - centers[:, 1:, None]) ** 2
    noise = torch.randn(queries, h, w, generator=generator) * 0.5
    return 8 * (1 - dist2 / radius**2) + noise


def full_size(source: torch.Tensor, scores: torch.Tensor, sizes: MaskSizes):
    """The full-size path (every mask resized to the output) and its floats."""
    queries = torch.arange(source.shape[0])[None]
    code, area = winning_slots([source], queries, scores[None], [source.shape[0]], sizes, chunk=16)
    resized = resize_mask_logits(source, sizes.padded, sizes.image, sizes.output)
    return code[0], area[0], resized


def codes_by_cells(source: torch.Tensor, scores: torch.Tensor, sizes: MaskSizes):
    """The cell path's code map (H, W) long, original areas and `CellCode`."""
    cropped = resize_mask_logits(source, sizes.padded, sizes.image, sizes.image).contiguous()
    cells, area = cell_code(cropped, scores, sizes.output, source.shape[0])
    code = paint(cells, np.arange(2 * source.shape[0]))
    return torch.from_numpy(code), area, cells


def knife_edge(resized: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: pixels whose full-size answer depends on the last bits of a float (the
    top two score * sigmoid within 1e-5, or some logit within 1e-4 of 0)."""
    products = resized.sigmoid() * scores[:, None, None]
    if products.shape[0] > 1:
        top = products.topk(2, dim=0).values
        close = top[0] - top[1] <= 1e-5 * top[0]
    else:
        close = torch.zeros(resized.shape[1:], dtype=torch.bool)
    return close | (resized.abs() < 1e-4).any(0)


@pytest.mark.parametrize(
    ("source_size", "output"), [((37, 50), (600, 801)), ((9, 13), (71, 97)), ((36, 64), (36, 1920))]
)
def test_resize_in_cells_equals_the_bilinear_resize(two_threads, source_size, output) -> None:
    generator = torch.Generator().manual_seed(1)
    source = torch.randn((3, *source_size), generator=generator) * 16
    full = F.interpolate(source[None], size=output, mode="bilinear", align_corners=False)[0]
    rows, cols = axis_table(source_size[0], output[0]), axis_table(source_size[1], output[1])
    pixels = cell_pixels(torch.ones(source_size, dtype=torch.bool), rows, cols)
    assert pixels.y.numel() == output[0] * output[1]  # every pixel, once
    want = full[:, pixels.y, pixels.x]
    got = resized_in_cells(source, rows, cols, pixels)
    # At most a few ulps of the values' magnitude (the cell margins assume far less than
    # 1e-5 relative); on this project's machines, with two threads, bit for bit.
    ulp = torch.finfo(torch.float32).eps * want.abs().clamp(min=1)
    assert ((got - want).abs() <= 4 * ulp).all()


@pytest.mark.parametrize(
    "sizes",
    [
        MaskSizes((40, 64), (36, 64), (270, 480)),
        MaskSizes((48, 64), (45, 60), (97, 133)),
        MaskSizes((16, 16), (13, 15), (13, 200)),  # one axis kept, one enlarged
    ],
)
@pytest.mark.parametrize("queries", [1, 5, 23])
def test_cells_equal_the_full_size_path(sizes: MaskSizes, queries: int) -> None:
    source = blobs(queries, (sizes.padded[0] // 4, sizes.padded[1] // 4), seed=queries)
    scores = torch.linspace(0.95, 0.5, queries)
    code, area, resized = full_size(source, scores, sizes)
    got_code, got_area, cells = codes_by_cells(source, scores, sizes)
    edge = knife_edge(resized, scores)
    assert edge.float().mean() < 0.01  # the comparison covers almost every pixel
    assert torch.equal(got_code[~edge], code[~edge])
    # original areas differ at most by the knife-edge pixels of each query's sign
    near_zero = (resized.abs() < 1e-4).flatten(1).sum(1)
    assert ((got_area - area[:queries]).abs() <= near_zero).all()
    # the stats read from the cells are those of the painted map
    want = code_stats(got_code[None], 2 * queries)
    got = cell_stats(cells, 2 * queries)
    for name, values in zip(("count", "y0", "y1", "x0", "x1"), got, strict=True):
        assert torch.equal(values, getattr(want, name)[0]), name


def test_most_cells_are_decided_without_pixels() -> None:
    """The point of the cells: at 1080p only the cells along borders are computed."""
    sizes = MaskSizes((40, 64), (36, 64), (1080, 1920))
    source = blobs(6, (10, 16), seed=3)
    cropped = resize_mask_logits(source, sizes.padded, sizes.image, sizes.image).contiguous()
    from streamseg.model.panoptic_cells import decide_cells

    cells = decide_cells(cropped, torch.linspace(0.9, 0.6, 6), 6)
    decided = cells.known.float().mean().item()
    assert 0.5 < decided < 1.0


def test_an_exact_tie_goes_to_the_earliest_slot() -> None:
    sizes = MaskSizes((40, 64), (36, 64), (180, 320))
    source = blobs(4, (10, 16), seed=5)
    source[3] = source[1]  # slot 3 repeats slot 1 exactly, with the same score
    scores = torch.tensor([0.9, 0.8, 0.7, 0.8])
    code, _, _ = codes_by_cells(source, scores, sizes)
    slot = code % 4
    assert (slot == 1).any()
    assert not (slot == 3).any()


def test_cells_resize_as_the_pixels_do() -> None:
    """Some cells give the same floats at their pixels as all cells do: the per-cell
    horizontal step does not depend on which cells are computed."""
    generator = torch.Generator().manual_seed(2)
    source = torch.randn((3, 11, 17), generator=generator) * 8
    rows, cols = axis_table(11, 83), axis_table(17, 151)
    marked = torch.rand((11, 17), generator=generator) < 0.3
    pixels = cell_pixels(marked, rows, cols)
    assert pixels.y.numel() == int((rows.count[:, None] * cols.count[None, :])[marked].sum())
    every = cell_pixels(torch.ones((11, 17), dtype=torch.bool), rows, cols)
    whole = torch.zeros((3, 83, 151))
    whole[:, every.y, every.x] = resized_in_cells(source, rows, cols, every)
    assert torch.equal(resized_in_cells(source, rows, cols, pixels), whole[:, pixels.y, pixels.x])


def test_many_undecided_cells_go_the_full_size_way() -> None:
    """A noisy frame leaves most cells undecided: computing them one by one would cost more
    than the full-size path, so the batch takes that path."""
    from streamseg.model.panoptic_batch import cell_codes

    sizes = MaskSizes((160, 256), (144, 256), (1080, 1920))  # the default model at 1080p
    smooth = blobs(5, (40, 64), seed=4)
    noisy = torch.randn((5, 40, 64), generator=torch.Generator().manual_seed(4)) * 0.2
    queries = torch.arange(5).repeat(2, 1)
    scores = torch.full((2, 5), 0.5) + torch.linspace(0, 0.1, 5)
    assert cell_codes([smooth, smooth], queries, scores, [5, 5], sizes) is not None
    assert cell_codes([smooth, noisy], queries, scores, [5, 5], sizes) is None


def test_a_frame_without_kept_queries_is_one_decided_code() -> None:
    """In a batch decided by cells, a frame without kept queries is code 0 everywhere: its
    stats are those of an all-zero map and it paints as zeros."""
    from streamseg.model.panoptic_batch import cell_codes, cells_stats, paint_cells

    sizes = MaskSizes((160, 256), (144, 256), (1080, 1920))
    smooth = blobs(5, (40, 64), seed=4)
    queries = torch.arange(5).repeat(2, 1)
    scores = torch.full((2, 5), 0.5) + torch.linspace(0, 0.1, 5)
    decided = cell_codes([smooth, smooth], queries, scores, [5, 0], sizes)
    assert decided is not None
    cells, area = decided
    assert area[1].tolist() == [0] * 5
    got = cells_stats(cells, 10)
    want = code_stats(torch.zeros((1, *sizes.output), dtype=torch.uint8), 10)
    for name in ("count", "y0", "y1", "x0", "x1"):
        assert torch.equal(getattr(got, name)[1], getattr(want, name)[0]), name
    maps = paint_cells(torch.arange(1, 11).repeat(2, 1), cells, sizes.output)
    assert maps.shape == (2, *sizes.output) and bool((maps[1] == 1).all())
