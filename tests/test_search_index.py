"""The search index (streamseg/catalog/index.py, query.py) on made-up stores' tracks: round trip,
incremental updates, replacement and compaction, a planted track found, a mixed model refused,
and an update killed halfway leaving the previous index intact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamseg.catalog.index import IndexInfo, add_to_index, open_index
from streamseg.catalog.query import stores_as_index, top_rows
from streamseg.catalog.store_tracks import StoreTracks
from streamseg.errors import UserError

DIM = 8


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def fake_tracks(path: str, count: int, seed: int, model: str = "m@sha256:1") -> StoreTracks:
    rng = np.random.default_rng(seed)
    ids = np.arange(1, count + 1, dtype=np.int32)
    return StoreTracks(
        path=path,
        signature=f"sig-{seed}",
        model=model,
        classes=["red", "blue"],
        source=f"{path}.mp4",
        label_size=(16, 24),
        embeddings=unit(rng.standard_normal((count, DIM))).astype(np.float16),
        track_id=ids,
        class_id=(ids % 2).astype(np.int32),
        score=np.full(count, 0.5, np.float32),
        first_time=ids * 1.0,
        last_time=ids * 1.0 + 2,
        best_frame=ids.astype(np.int64) * 3,
        best_time=ids * 1.0 + 1,
        best_box=np.tile(np.array([1, 2, 3, 4], np.int32), (count, 1)),
    )


def test_round_trip_and_incremental_updates(tmp_path: Path) -> None:
    index = tmp_path / "index"
    a, b = fake_tracks("/s/a.zarr", 5, 1), fake_tracks("/s/b.zarr", 3, 2)
    report = add_to_index(index, [a])
    assert report.added == ["/s/a.zarr"] and report.tracks == 5
    report = add_to_index(index, [b])
    assert report.added == ["/s/b.zarr"] and report.replaced == [] and report.tracks == 8
    arrays = open_index(index)
    assert arrays.info.rows == 8 and arrays.info.model == "m@sha256:1"
    np.testing.assert_array_equal(arrays.embeddings[:5], a.embeddings)
    np.testing.assert_array_equal(arrays.embeddings[5:], b.embeddings)
    assert arrays.tracks["track_id"].tolist() == [1, 2, 3, 4, 5, 1, 2, 3]
    assert arrays.tracks["store"].tolist() == [0] * 5 + [1] * 3
    assert arrays.tracks["best_time"][6] == 3.0 and arrays.tracks["box"][0].tolist() == [1, 2, 3, 4]
    assert [s.path for s in arrays.info.stores] == ["/s/a.zarr", "/s/b.zarr"]


def test_a_changed_store_replaces_its_rows_then_compacts(tmp_path: Path) -> None:
    index = tmp_path / "index"
    add_to_index(index, [fake_tracks("/s/a.zarr", 4, 1), fake_tracks("/s/b.zarr", 2, 2)])
    grown = fake_tracks("/s/b.zarr", 3, 3)  # the store was resumed: one more track
    report = add_to_index(index, [grown])
    assert report.replaced == ["/s/b.zarr"] and report.tracks == 7 and not report.compacted
    arrays = open_index(index)
    assert arrays.info.rows == 9 and arrays.info.dead == 2
    assert arrays.tracks["alive"].tolist() == [1] * 4 + [0] * 2 + [1] * 3
    # Replacing a again leaves 4 + 2 + 4 dead of 13 rows: more than half, so compacted.
    add_to_index(index, [fake_tracks("/s/b.zarr", 3, 4)])
    report = add_to_index(index, [fake_tracks("/s/a.zarr", 4, 5)])
    assert report.compacted and report.tracks == 7
    arrays = open_index(index)
    assert arrays.info.rows == 7 and arrays.info.dead == 0 and arrays.info.generation == 1
    assert arrays.tracks["alive"].all()
    # Stores keep their order (a, then b), each with its latest tracks.
    np.testing.assert_array_equal(arrays.embeddings[:4], fake_tracks("/s/a", 4, 5).embeddings)
    np.testing.assert_array_equal(arrays.embeddings[4:], fake_tracks("/s/b", 3, 4).embeddings)
    assert [(s.start, s.stop) for s in arrays.info.stores] == [(0, 4), (4, 7)]
    assert sorted(p.name for p in index.iterdir()) == [
        "embeddings-1.f16",
        "index.json",
        "tracks-1.bin",
    ]


def test_a_planted_track_is_found_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    query = unit(rng.standard_normal(DIM))
    stores = [fake_tracks(f"/s/{i}.zarr", 50, 10 + i) for i in range(3)]
    planted = stores[1].embeddings.copy()
    planted[17] = query.astype(np.float16)  # track 18 of store 1 is the query itself
    stores[1] = StoreTracks(**{**vars(stores[1]), "embeddings": planted})
    add_to_index(tmp_path / "index", stores)
    arrays = open_index(tmp_path / "index")
    rows, scores = top_rows(arrays.embeddings, arrays.tracks["alive"], query, 5)
    assert rows[0] == 50 + 17 and scores[0] == pytest.approx(1.0, abs=2e-3)
    assert list(scores) == sorted(scores, reverse=True) and len(rows) == 5
    # The same ranking from the stores directly, and none of a dead row.
    direct = stores_as_index(stores)
    assert top_rows(direct.embeddings, None, query, 1)[0].tolist() == [67]
    alive = np.ones(150, bool)
    alive[67] = False
    assert 67 not in top_rows(arrays.embeddings, alive, query, 150)[0].tolist()


def test_ranking_matches_a_plain_sort_across_chunks(monkeypatch) -> None:
    import streamseg.catalog.query as query_module

    monkeypatch.setattr(query_module, "CHUNK_ROWS", 7)  # many chunks, merged
    rng = np.random.default_rng(3)
    vectors = unit(rng.standard_normal((100, DIM))).astype(np.float16)
    query = unit(rng.standard_normal(DIM))
    rows, _ = top_rows(vectors, None, query, 10)
    want = np.argsort(-(vectors.astype(np.float32) @ query.astype(np.float32)), kind="stable")
    # float16 products may reorder near-ties only; the sets agree here.
    assert set(rows.tolist()) == set(want[:10].tolist())


def test_another_models_store_is_refused(tmp_path: Path) -> None:
    index = tmp_path / "index"
    add_to_index(index, [fake_tracks("/s/a.zarr", 2, 1)])
    other = fake_tracks("/s/c.zarr", 2, 2, model="other@sha256:2")
    with pytest.raises(UserError, match=r"/s/c.zarr: made by other@sha256:2, but the index"):
        add_to_index(index, [other])
    assert open_index(index).info.rows == 2  # unchanged
    with pytest.raises(UserError, match="only compare with the same CLIP"):
        stores_as_index([fake_tracks("/s/a.zarr", 2, 1), other])


def test_an_update_killed_before_its_record_leaves_the_old_index(tmp_path: Path) -> None:
    index = tmp_path / "index"
    add_to_index(index, [fake_tracks("/s/a.zarr", 3, 1)])
    info = IndexInfo.read(index)
    # As if a later update appended half a row and died before writing index.json.
    with open(info.embeddings_file(index), "ab") as handle:
        handle.write(b"\x01" * 5)
    arrays = open_index(index)
    assert arrays.info.rows == 3 and arrays.embeddings.shape == (3, DIM)
    add_to_index(index, [fake_tracks("/s/b.zarr", 1, 2)])  # cuts the garbage, then appends
    arrays = open_index(index)
    np.testing.assert_array_equal(arrays.embeddings[3], fake_tracks("/s/b", 1, 2).embeddings[0])


def test_not_an_index(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a streamseg index"):
        open_index(tmp_path)
    (tmp_path / "index.json").write_text('{"format": "something"}')
    with pytest.raises(UserError, match="not a version-1 streamseg index"):
        open_index(tmp_path)
