"""How frames reach the network (issue 17): one stacked upload per batch, and under
torch.compile a ragged last batch padded to the size the graph was compiled for."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from streamseg.model.segmenter import Segmenter


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random weights, on purpose
        model = Segmenter.from_pretrained("tiny-convnext", device="cpu")
    model.set_vocabulary(["cat", "dog", "sky"])
    return model


def _frames(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(count)]


def test_one_upload_per_batch(segmenter: Segmenter, monkeypatch: pytest.MonkeyPatch) -> None:
    uploads: list[int] = []
    original = segmenter._upload

    def counting(frames: list[np.ndarray]) -> torch.Tensor:
        uploads.append(len(frames))
        return original(frames)

    monkeypatch.setattr(segmenter, "_upload", counting)
    segmenter.segment_raw(_frames(3))
    assert uploads == [3]


def test_ragged_batch_is_padded_under_compile(
    segmenter: Segmenter, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = _frames(4, seed=1)
    eager_full = segmenter.segment_raw(frames)
    eager_tail = segmenter.segment_raw(frames[:3])
    shapes: list[int] = []
    predict = segmenter._predict

    def recording(batch: torch.Tensor, *args: object) -> dict:
        shapes.append(batch.shape[0])
        return predict(batch, *args)

    # Stand in for torch.compile (the padding rule is what is tested, not the compiler).
    monkeypatch.setattr(segmenter, "_predict", recording)
    monkeypatch.setattr(segmenter, "_compile_mode", "default")
    monkeypatch.setattr(segmenter, "_largest_batch", 0)
    full = segmenter.segment_raw(frames)
    tail = segmenter.segment_raw(frames[:3])  # a ragged last batch: padded to 4 rows
    assert shapes == [4, 4]
    assert tail["class_probs"].shape[0] == 3
    for padded, eager in ((full, eager_full), (tail, eager_tail)):
        # one network call per batch: the padded rows may change float rounding of the
        # batched convolutions slightly, nothing more
        torch.testing.assert_close(padded["class_probs"], eager["class_probs"])
        assert padded["image_sizes"] == eager["image_sizes"]
