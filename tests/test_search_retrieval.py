"""The retrieval measurement's pieces (streamseg/bench/retrieval.py): average precision on
hand-worked rankings, and a whole small run of the three groups with the default model."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamseg.bench.retrieval import RetrievalSettings, average_precision, measure_retrieval


def test_average_precision_by_hand() -> None:
    assert average_precision([True, False, True]) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert average_precision([False, True]) == pytest.approx(0.5)
    assert average_precision([True, True, False]) == 1.0
    assert average_precision([False, False]) == 0.0  # nothing relevant


def test_a_small_run_reports_the_three_groups(tmp_path: Path) -> None:
    from streamseg.bench.quality import load_model

    settings = RetrievalSettings(videos=1, frames=8, size=128, seed=500000)
    report = measure_retrieval(settings, tmp_path, load_model(None, "cpu"), say=lambda _: None)
    groups = ("in_vocabulary", "held_out_from_training", "not_in_run_vocabulary")
    for name in groups:
        group = report[name]
        assert 0.0 <= group["search_map"] <= 1.0 and 0.0 <= group["chance"] <= 1.0
        assert group["queries"] == len(group["per_query"])
    assert report["in_vocabulary"]["label_map"] is not None
    assert report["not_in_run_vocabulary"]["label_map"] is None  # labels cannot name them
    assert report["left_out_classes"] and all(
        "star" in c or "hexagon" in c for c in report["left_out_classes"]
    )
