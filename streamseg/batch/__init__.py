"""Batch jobs over video archives on Dask distributed: `streamseg batch` (docs/BATCH.md).

inputs, layout, manifest: which videos, where their stores go, what happened to each; cluster:
the Dask client; spec, model_cache, progress, tasks: what runs on the workers; shards,
track_matching, stitch: time shards of long videos; run: `run_batch`, which ties them together.
"""

from streamseg.batch.cluster import open_client
from streamseg.batch.inputs import VIDEO_EXTENSIONS, VideoInput, expand_inputs
from streamseg.batch.layout import MANIFEST_NAME, STORE_SUFFIX, assign_outputs
from streamseg.batch.manifest import (
    STATUSES,
    BatchRecord,
    merge_records,
    read_manifest,
    write_manifest,
)
from streamseg.batch.model_cache import cached_segmenter, model_loads
from streamseg.batch.progress import PROGRESS_INTERVAL, PROGRESS_TOPIC
from streamseg.batch.run import run_batch
from streamseg.batch.shards import ShardPlan, plan_shards
from streamseg.batch.spec import RunSpec
from streamseg.batch.stitch import stitch_stores
from streamseg.batch.tasks import plan_video, process_video, stitch_video, store_frames_if_done
from streamseg.batch.track_matching import assign_ids, match_tracks, overlap_iou, relabel

__all__ = [
    "open_client", "VIDEO_EXTENSIONS", "VideoInput", "expand_inputs", "MANIFEST_NAME",
    "STORE_SUFFIX", "assign_outputs", "STATUSES", "BatchRecord", "merge_records",
    "read_manifest", "write_manifest", "cached_segmenter", "model_loads", "PROGRESS_INTERVAL",
    "PROGRESS_TOPIC", "run_batch", "ShardPlan", "plan_shards", "RunSpec", "stitch_stores",
    "plan_video", "process_video", "stitch_video", "store_frames_if_done", "assign_ids",
    "match_tracks", "overlap_iou", "relabel",
]  # fmt: skip
