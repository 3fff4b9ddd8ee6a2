"""The network's forward queues all of its work: no host read and no operator whose output size
depends on the values, so that on an accelerator the host runs ahead of the device (counted on
the CPU by tests/host_reads.py; tests/test_cuda.py checks the same under torch's sync debug
mode where there is a GPU)."""

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
        warnings.simplefilter("ignore", UserWarning)
        name = request.param
        if name == "shapes-tiny":
            from streamseg.model.embedded import DEFAULT_MODEL

            name = DEFAULT_MODEL
        seg = Segmenter.from_pretrained(name, device="cpu")
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
    calls = " ".join(reads.calls)
    ops = " ".join(reads.ops)
    for name in ("item", "tolist", "__setitem__", "nonzero", "masked_select"):
        assert name in calls, (name, calls)
    for name in ("aten._local_scalar_dense", "aten.index_put_", "aten.nonzero"):
        assert name in ops, (name, ops)
    with HostReads() as clean:
        y = x.clone()
        y.masked_fill_(y > 2, 0.0)
        torch.where(x > 1, x, torch.zeros_like(x)).sum()
    assert dict(clean.calls) == {} and dict(clean.ops) == {}
