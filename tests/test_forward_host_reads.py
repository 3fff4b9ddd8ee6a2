"""The network's forward queues all of its work: no host read, no blocking copy from the host
and no operator whose output size depends on the values, so that on an accelerator the host
runs ahead of the device; the whole `segment` call adds only the post-processing's two reads
(counted on the CPU by tests/host_reads.py; tests/test_cuda.py checks the same under torch's
sync debug mode where there is a GPU)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from host_reads import HostReads

from streamseg.model.segmenter import Segmenter

SAMPLE = Path(__file__).resolve().parents[1] / "streamseg" / "data" / "samples" / "shapes.png"


@pytest.fixture(scope="module", params=["shapes-tiny", "tiny-convnext"])
def segmenter(request: pytest.FixtureRequest) -> Segmenter:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny-convnext: random weights
        seg = Segmenter.from_pretrained(request.param, device="cpu")
    seg.set_vocabulary("circle,square,triangle,background", cache_dir=None)
    return seg


def frames(count: int) -> list[np.ndarray]:
    from PIL import Image

    image = np.asarray(Image.open(SAMPLE).convert("RGB"))
    return [np.ascontiguousarray(np.roll(image, 9 * i, axis=1)) for i in range(count)]


@pytest.mark.parametrize("batch", [1, 3])
def test_forward_reads_nothing_back(segmenter: Segmenter, batch: int) -> None:
    # fp32 only: under CPU autocast, torch 2.14 hands a dispatch mode einsum's inner products
    # uncast (a dtype error inside the mode); which operators run does not depend on precision.
    images = frames(batch)
    segmenter.run_network(images)  # warm-up: first-call paths are not the loop's
    with HostReads() as reads:
        out = segmenter.run_network(images)
    assert len(out.frames) == batch and out.frames[0]["mask_logits"].dim() == 3
    assert dict(reads.calls) == {} and dict(reads.ops) == {}


@pytest.mark.parametrize("output_size", [None, (1080, 1920)])
def test_segment_on_the_accelerator_path_reads_twice_per_batch(
    segmenter: Segmenter, output_size: tuple[int, int] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole `segment` call, forward and post-processing, as it runs on an accelerator:
    the kept-query counts, then one copy of maps and table; nothing else."""
    from streamseg.model import host_copy, panoptic_batch
    from streamseg.model.code_stats import code_stats_from_lines, lookup_gather

    # The CPU's own shortcuts (numpy statistics, per-cell decisions, no copy) switched off.
    monkeypatch.setattr(panoptic_batch, "code_stats", code_stats_from_lines)
    monkeypatch.setattr(panoptic_batch, "lookup", lookup_gather)
    monkeypatch.setattr(panoptic_batch, "by_cells", lambda device, sizes: False)
    monkeypatch.setattr(host_copy, "on_host", lambda tensors: False)
    images = frames(3)
    segmenter.segment(images, output_size=output_size)
    with HostReads() as reads:
        out = segmenter.segment(images, output_size=output_size)
    assert len(out) == 3 and out[0].panoptic.shape == (output_size or images[0].shape[:2])
    assert sorted(call.split(" at ")[0] for call in reads.calls.elements()) == ["cpu", "tolist"]
    assert dict(reads.ops) == {}


def test_the_counter_sees_each_kind_of_read() -> None:
    """The check can fail: each synchronising pattern is counted, at its level."""
    x = torch.arange(6.0).reshape(2, 3)
    with HostReads() as reads:
        x.sum().item()
        x[0].tolist()
        y = x.clone()
        y[y > 2] = 0.0
        torch.nonzero(x)
        x.masked_select(x > 1)
        torch.tensor([1.0, 2.0], device=x.device)
        x[[0, 1], 1:]
    calls = " ".join(reads.calls)
    ops = " ".join(reads.ops)
    for name in ("item", "tolist", "__setitem__", "nonzero", "masked_select", "tensor"):
        assert name in calls, (name, calls)
    assert sum(n for place, n in reads.calls.items() if place.startswith("__getitem__")) == 1
    for name in ("aten._local_scalar_dense", "aten.index_put_", "aten.nonzero"):
        assert name in ops, (name, ops)
    with HostReads() as clean:
        y = x.clone()
        y.masked_fill_(y > 2, 0.0)
        torch.where(x > 1, x, torch.zeros_like(x)).sum()
        torch.full((2,), 3.0, device=x.device)
        x[1, 1:] = 0.5
    assert dict(clean.calls) == {} and dict(clean.ops) == {}
