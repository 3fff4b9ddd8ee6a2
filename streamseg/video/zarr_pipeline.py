"""`WholeChunkPipeline`: zarr's codec pipeline, without a copy of each chunk a write covers whole.

zarr 3.1's `BatchedCodecPipeline` merges every chunk of a write into a fresh chunk-sized array
(`np.full` with the fill value, then a copy of the written part) unless the whole write is one
chunk; that is zarr-developers/zarr-python#2038, open as of zarr 3.1.6. The store writer writes
several frames per call (store_writer.MAPS_PER_WRITE), each frame one whole chunk of a shard, so
every 1080p frame paid an 8 MB fill and an 8 MB copy on zarr's event-loop thread, beside the
network on the same two cores. Handing the encoder a view of the written frame instead took the
label writes from about 8.4 to 5.7 ms of CPU a 1080p frame, and a live run at batch 1 at 1080p
from 17-18 to 19-21 fps (docs/BENCHMARKS.md section 13). The bytes written are the same.

The pipeline is process-wide: zarr's sharding codec takes the pipeline of a shard's inner chunks
from `zarr.config` at every write, so it cannot be set per array. `use_whole_chunk_pipeline`
selects it when zarr's own default is configured and leaves any other choice alone.

It overrides a private method, `_merge_chunk_array`, the same in zarr 3.1.3 to 3.1.6 (every
release in pyproject.toml's range today); tests/test_zarr_pipeline.py fails if a release changes
its parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zarr.core.codec_pipeline import BatchedCodecPipeline
from zarr.registry import register_pipeline

if TYPE_CHECKING:
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import NDBuffer
    from zarr.core.indexing import SelectorTuple

# zarr's default `codec_pipeline.path`, the only one this pipeline replaces.
ZARR_DEFAULT_PIPELINE = "zarr.core.codec_pipeline.BatchedCodecPipeline"
PIPELINE_PATH = f"{__name__}.WholeChunkPipeline"


class WholeChunkPipeline(BatchedCodecPipeline):
    """`BatchedCodecPipeline` that encodes a view of the written value for a chunk the write
    covers whole, when that view is already a C-ordered chunk of the array's dtype; any other
    chunk is merged as zarr merges it."""

    def _merge_chunk_array(
        self,
        existing_chunk_array: NDBuffer | None,
        value: NDBuffer,
        out_selection: SelectorTuple,
        chunk_spec: ArraySpec,
        chunk_selection: SelectorTuple,
        is_complete_chunk: bool,
        drop_axes: tuple[int, ...],
    ) -> NDBuffer:
        if is_complete_chunk and not drop_axes and chunk_spec.order == "C":
            part = value[out_selection]
            array = part.as_ndarray_like()
            if (
                part.shape == chunk_spec.shape
                and array.flags.c_contiguous
                and array.dtype == chunk_spec.dtype.to_native_dtype()
            ):
                return part
        return super()._merge_chunk_array(
            existing_chunk_array,
            value,
            out_selection,
            chunk_spec,
            chunk_selection,
            is_complete_chunk,
            drop_axes,
        )


register_pipeline(WholeChunkPipeline)


def use_whole_chunk_pipeline() -> bool:
    """Make `WholeChunkPipeline` zarr's codec pipeline unless a pipeline other than zarr's
    default is configured (e.g. by ZARR_CODEC_PIPELINE__PATH). Returns whether it is in use.
    Arrays opened before keep their own pipeline; a shard's inner chunks follow at once."""
    import zarr

    path = zarr.config.get("codec_pipeline.path")
    if path == ZARR_DEFAULT_PIPELINE:
        zarr.config.set({"codec_pipeline.path": PIPELINE_PATH})
        return True
    return path == PIPELINE_PATH
