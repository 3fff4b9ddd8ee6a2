"""zarr's codec pipeline without the copy of whole chunks (video/zarr_pipeline.py): the same files
as zarr's own pipeline for every kind of write, no chunk-sized merge buffer for frames written
whole, and selected only where zarr's default was configured."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec
from zarr.core.buffer.cpu import NDBuffer
from zarr.core.codec_pipeline import BatchedCodecPipeline

from streamseg.video.store import LabelStore
from streamseg.video.zarr_pipeline import (
    PIPELINE_PATH,
    ZARR_DEFAULT_PIPELINE,
    WholeChunkPipeline,
    use_whole_chunk_pipeline,
)

SHAPE = (12, 24, 40)  # frames, height, width: shards of 8 frames, chunks of one


def _labels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 50, SHAPE, dtype=np.int32)


def _write(folder: Path, pipeline: str, write: Callable[[Any], None]) -> dict[str, bytes]:
    """Create the store's kind of labels array under `pipeline`, apply `write`; every file."""
    with zarr.config.set({"codec_pipeline.path": pipeline}):
        array = zarr.create_array(
            folder,
            shape=SHAPE,
            chunks=(1, *SHAPE[1:]),
            shards=(8, *SHAPE[1:]),
            dtype="int32",
            fill_value=0,
            compressors=ZstdCodec(level=3),
            config={"write_empty_chunks": True},
        )
        write(array)
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _whole_frames(array: Any) -> None:
    array[0:4] = _labels(0)[0:4]  # four frames at once, as the store writer writes them
    array[4:9] = _labels(0)[4:9]  # across a shard boundary


def _partial_chunk(array: Any) -> None:
    array[0:3] = _labels(1)[0:3]
    array[1:3, 5:20, 7:30] = 7  # a part of two chunks: merged with what is there


def _one_frame_2d(array: Any) -> None:
    array[2] = _labels(2)[2]  # a 2-D value into a 3-D array (a dropped axis)


def _non_contiguous(array: Any) -> None:
    array[0:4] = np.asfortranarray(_labels(3)[0:4])


def _other_dtype(array: Any) -> None:
    array[0:4] = _labels(4)[0:4].astype(np.int64)  # zarr casts it first


def _reference(write: Callable[[Any], None]) -> np.ndarray:
    """What the array holds after `write`, applied to a numpy array."""
    expected = np.zeros(SHAPE, np.int32)
    write(expected)
    return expected


@pytest.mark.parametrize(
    "write", [_whole_frames, _partial_chunk, _one_frame_2d, _non_contiguous, _other_dtype]
)
def test_the_same_files_as_zarrs_pipeline(tmp_path: Path, write: Callable[[Any], None]) -> None:
    ours = _write(tmp_path / "ours.zarr", PIPELINE_PATH, write)
    zarrs = _write(tmp_path / "zarr.zarr", ZARR_DEFAULT_PIPELINE, write)
    assert ours == zarrs
    assert any(name.startswith("c") for name in ours)  # chunks were written
    back = zarr.open_array(tmp_path / "ours.zarr", mode="r")[:]
    np.testing.assert_array_equal(back, _reference(write))


def test_frames_written_whole_are_not_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zarr makes a chunk-sized buffer for each new chunk it merges; with the pipeline, frames
    written whole need none (a shard's own buffers are not chunk-sized). Partly written chunks
    are merged as zarr merges them (their files are zarr's: the test above)."""
    made: list[tuple[int, ...]] = []
    create = NDBuffer.create.__func__  # type: ignore[attr-defined]

    def counting(cls: type[NDBuffer], *, shape: Any, **kwargs: Any) -> NDBuffer:
        made.append(tuple(shape))
        return create(cls, shape=shape, **kwargs)

    monkeypatch.setattr(NDBuffer, "create", classmethod(counting))
    chunk = (1, *SHAPE[1:])
    _write(tmp_path / "zarr.zarr", ZARR_DEFAULT_PIPELINE, _whole_frames)
    # zarr's own: one per frame, but for the lone frame of the second shard (a write of exactly
    # one chunk is zarr's own fast path)
    assert made.count(chunk) == 8
    made.clear()
    _write(tmp_path / "ours.zarr", PIPELINE_PATH, _whole_frames)
    assert made.count(chunk) == 0


def test_the_override_matches_zarrs_method() -> None:
    """A zarr release that renames or reorders the method would leave the override unused (or
    called wrongly): this fails first."""
    ours = inspect.signature(WholeChunkPipeline._merge_chunk_array).parameters
    zarrs = inspect.signature(BatchedCodecPipeline._merge_chunk_array).parameters
    assert list(ours) == list(zarrs)


def test_chosen_only_over_zarrs_default() -> None:
    with zarr.config.set({"codec_pipeline.path": ZARR_DEFAULT_PIPELINE}):
        assert use_whole_chunk_pipeline()
        assert zarr.config.get("codec_pipeline.path") == PIPELINE_PATH
        assert use_whole_chunk_pipeline()  # again: nothing changes
    other = "some.other.Pipeline"  # e.g. one set by ZARR_CODEC_PIPELINE__PATH
    with zarr.config.set({"codec_pipeline.path": other}):
        assert not use_whole_chunk_pipeline()
        assert zarr.config.get("codec_pipeline.path") == other


def test_a_store_selects_it(tmp_path: Path) -> None:
    with zarr.config.set({"codec_pipeline.path": ZARR_DEFAULT_PIPELINE}):
        store = LabelStore.open(tmp_path / "s.zarr", label_size=(16, 16), identity={}, attrs={})
        store.close()
        assert zarr.config.get("codec_pipeline.path") == PIPELINE_PATH
