"""Search vectors in stores (video/track_vectors.py, the store's segments/embedding and
tracks/embedding) and `streamseg index` / `streamseg search` on real runs of the default
model: a track is found by its own class name, the vectors survive a resume, a store without
vectors is refused with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fake_segmenter import FakeSegmenter, make_blob_video

from streamseg.cli import main
from streamseg.video.pipeline import run_video
from streamseg.video.store_reader import StoreReader
from streamseg.video.track_vectors import row_embeddings, summarize_track_vectors

SAMPLE = Path(__file__).resolve().parents[1] / "weights" / "shapes-tiny" / "sample.mp4"


def test_track_vectors_are_score_weighted_means_and_best_views() -> None:
    segments = {
        "track_id": np.array([2, 1, 2, 2]),
        "score": np.array([1.0, 0.5, 3.0, 0.0]),
        "area": np.array([10, 4, 5, 100]),
        "frame": np.array([0, 0, 1, 2]),
        "bbox_x": np.array([1, 2, 3, 4]),
        "bbox_y": np.array([5, 6, 7, 8]),
        "bbox_w": np.array([9, 9, 9, 9]),
        "bbox_h": np.array([1, 1, 1, 1]),
    }
    embeddings = np.array([[2.0, 0.0], [0.0, 5.0], [0.0, 1.0], [7.0, 7.0]])
    vectors = summarize_track_vectors(segments, embeddings)
    # Track 1: one segment -> (0, 1). Track 2: 1 x (1, 0) + 3 x (0, 1) + 0 x ... -> (1, 3)/|.|
    np.testing.assert_allclose(vectors.embeddings[0].astype(float), [0, 1], atol=1e-3)
    np.testing.assert_allclose(
        vectors.embeddings[1].astype(float), np.array([1, 3]) / np.sqrt(10), atol=1e-3
    )
    # Best view = largest score x area: track 1 row 1; track 2 row 2 (15 > 10 > 0).
    assert vectors.best["best_frame"].tolist() == [0, 1]
    assert vectors.best["best_x"].tolist() == [2, 3] and vectors.best["best_y"].tolist() == [6, 7]


def test_row_embeddings_merge_pieces_of_a_track_by_area() -> None:
    rows = row_embeddings(
        areas=np.array([3, 1, 5]),
        embeddings=np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]),
        track_ids=np.array([7, 7, 9]),
        row_tracks=np.array([7, 9]),
    )
    np.testing.assert_allclose(rows[0].astype(float), np.array([3, 1]) / np.sqrt(10), atol=1e-3)
    assert not rows[1].any()  # an unknown appearance stays a zero vector


def test_vectors_survive_a_resume(tmp_path: Path) -> None:
    video = make_blob_video(tmp_path / "blobs.mp4", frames=24)
    whole = tmp_path / "whole.zarr"
    run_video(video, whole, segmenter=FakeSegmenter())

    class Crash(Exception):
        pass

    class CrashingSegmenter(FakeSegmenter):
        calls = 0

        def segment(self, frames, output_size=None):  # type: ignore[no-untyped-def]
            CrashingSegmenter.calls += 1
            if CrashingSegmenter.calls == 4:
                raise Crash
            return super().segment(frames, output_size)

    resumed = tmp_path / "resumed.zarr"
    with pytest.raises(Crash):
        run_video(video, resumed, segmenter=CrashingSegmenter())
    run_video(video, resumed, segmenter=FakeSegmenter())
    a, b = StoreReader(whole), StoreReader(resumed)
    assert a.attrs["embedding_dim"] == b.attrs["embedding_dim"] > 0
    np.testing.assert_array_equal(a.segment_embeddings(), b.segment_embeddings())
    va, vb = a.track_vectors(), b.track_vectors()
    assert va is not None and vb is not None
    np.testing.assert_array_equal(va.embeddings, vb.embeddings)
    assert va.best["best_frame"].tolist() == vb.best["best_frame"].tolist()
    assert len(va.embeddings) == len(a.tracks["track_id"])


def test_index_and_search_find_a_track_by_its_class(tmp_path: Path, capsys) -> None:
    store = tmp_path / "sample.zarr"
    assert main(["run", str(SAMPLE), "--out", str(store), "--max-frames", "24"]) == 0
    capsys.readouterr()
    index = tmp_path / "index"
    assert main(["index", str(tmp_path), "--out", str(index), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == [str(store.resolve())] and report["tracks"] > 0
    reader = StoreReader(store)
    tracks = reader.tracks
    names = reader.class_names
    # The query: the class name of the store's highest-scoring thing track.
    things = np.flatnonzero(tracks["is_thing"] == 1)
    best = things[np.argmax(tracks["score"][things])]
    query = names[int(tracks["class_id"][best])]
    thumbnails = tmp_path / "thumbs"
    argv = ["search", str(index), "--query", query, "--top", "3", "--json"]
    assert main([*argv, "--thumbnails", str(thumbnails)]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and hits[0]["rank"] == 1
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    # Some track of that class is among the top hits (a 16-query model on 24 frames).
    assert query in [hit["class_name"] for hit in hits]
    assert all(Path(hit["thumbnail"]).is_file() for hit in hits)
    # Re-indexing an unchanged store reads nothing.
    assert main(["index", str(store), "--out", str(index), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unchanged"] == [str(store.resolve())]


def test_a_store_without_vectors_is_refused(tmp_path: Path, capsys) -> None:
    video = make_blob_video(tmp_path / "blobs.mp4", frames=8)
    store = tmp_path / "old.zarr"
    run_video(video, store, segmenter=FakeSegmenter())
    # As a store written before search existed: no embedding_dim, no vector arrays.
    meta_path = store / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["streamseg"].pop("embedding_dim")
    meta_path.write_text(json.dumps(meta))
    for name in ("segments/embedding", "tracks/embedding"):
        shutil.rmtree(store / name)
    assert main(["index", str(store), "--out", str(tmp_path / "index")]) == 2
    assert "no track vectors" in capsys.readouterr().err
