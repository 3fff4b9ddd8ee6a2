"""The tracking benchmark's two forms of detections (bench/tracking_data.py `Detections`): the
model's "marked" form is exactly what `Segmenter.segment` gives, the "unmarked" one differs
only in the embeddings of segments whose queries all missed the stride-32 CLIP map; the
oracle's unknown appearances are zero rows marked, one shared constant unmarked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamseg.bench.tracking_data import (
    category_maps,
    model_detections,
    oracle_detections,
    render_kind,
)
from streamseg.model.segmenter import Segmenter
from streamseg.model.vocab import parse_vocab
from streamseg.video.segments import SegmentFilter

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "shapes-tiny" / "model.safetensors"


@pytest.fixture(scope="module")
def shapes_tiny() -> Segmenter:
    if not WEIGHTS.is_file():
        pytest.skip("weights/shapes-tiny is not in this checkout")
    seg = Segmenter.from_pretrained("shapes-tiny", device="cpu")
    seg.set_vocabulary(parse_vocab("shapes"), cache_dir=None)
    return seg


@pytest.fixture(scope="module")
def video():
    return render_kind("plain", 200000, 16, 256, 12.0)


def test_model_marked_form_is_the_segmenters_output(shapes_tiny, video) -> None:
    from streamseg.config import ModelSettings

    detections = model_detections(shapes_tiny, video.scenes, batch_size=8)
    settings = ModelSettings()
    keep = SegmentFilter(settings.score_threshold, settings.min_area, None)
    want = [
        keep(s)
        for start in (0, 8)
        for s in shapes_tiny.segment(
            [scene.image for scene in video.scenes[start : start + 8]], output_size=(256, 256)
        )
    ]
    unknown = 0
    for marked, unmarked, w in zip(detections.marked, detections.unmarked, want, strict=True):
        np.testing.assert_array_equal(marked.panoptic, w.panoptic)
        np.testing.assert_array_equal(unmarked.panoptic, w.panoptic)
        assert marked.segments == w.segments == unmarked.segments
        np.testing.assert_array_equal(marked.embeddings, w.embeddings)
        zero = ~marked.embeddings.any(1)
        unknown += int(zero.sum())
        # unmarked: every row a unit vector; where the marked row is known, the same row
        # unless a merged segment had an invalid query too (then only the direction moves)
        np.testing.assert_allclose(np.linalg.norm(unmarked.embeddings, axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(marked.embeddings[~zero], axis=1), 1, atol=1e-5)
    assert unknown > 0  # the comparison covers a segment of invalid queries


def test_oracle_unknown_appearance_is_one_constant_unmarked(shapes_tiny, video) -> None:
    _, class_of = category_maps(shapes_tiny.vocabulary)
    detections = oracle_detections(video.scenes, class_of, shapes_tiny, batch_size=8)
    constants = []
    for marked, unmarked in zip(detections.marked, detections.unmarked, strict=True):
        assert marked.segments == unmarked.segments
        zero = ~marked.embeddings.any(1)
        np.testing.assert_array_equal(marked.embeddings[~zero], unmarked.embeddings[~zero])
        constants.extend(unmarked.embeddings[zero])
    assert len(constants) >= 2
    for row in constants[1:]:
        np.testing.assert_allclose(row, constants[0], atol=1e-5)
    assert np.linalg.norm(constants[0]) == pytest.approx(1, abs=1e-5)
