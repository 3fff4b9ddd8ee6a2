"""A batch of network outputs -> `FrameSegmentation`s, with two host synchronisations.

1. The kept-query count per frame (B integers) is read, to size the work.
2. Panoptic merge (`panoptic_batch`), areas, boxes and embeddings (`segment_table`) run as
   tensor work on the model's device and end in one device-to-host copy (`host_copy`): the
   label maps in the smallest integer dtype that holds the ids, and a small segment table.
The host turns those arrays into the same `FrameSegmentation` objects as a frame-by-frame run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streamseg.model.host_copy import to_host
from streamseg.model.outputs import FrameSegmentation, Segment
from streamseg.model.panoptic_batch import (
    KeptQueries,
    MaskSizes,
    keep_queries,
    panoptic_batch,
)
from streamseg.model.postprocess import class_logits_from_probs
from streamseg.model.segment_table import segment_embeddings


@dataclass(frozen=True)
class PanopticSettings:
    """What panoptic inference needs besides the network outputs.

    Attributes:
        is_thing: (C,) bool on the model's device.
        object_mask_threshold, overlap_threshold: the official 0.0 and 0.8 by default.
        chunk: full-size masks made per step (memory O(chunk * H * W)); 16 as the former
            frame-by-frame path, whose results it reproduces bit for bit (CPU kernels round
            by the number of masks they see at once).
    """

    is_thing: Tensor
    object_mask_threshold: float
    overlap_threshold: float
    chunk: int = 16


def frame_segmentations(
    class_probs: Tensor,
    mask_logits: Sequence[Tensor] | Tensor,
    embeddings: Tensor,
    sizes: MaskSizes,
    settings: PanopticSettings,
    valid: Tensor | None = None,
) -> list[FrameSegmentation]:
    """Panoptic segmentation of B frames that share their mask sizes.

    Args:
        class_probs: (B, Q, C+1) ensembled class probabilities (last = void).
        mask_logits: (B, Q, h, w) tensor or B (Q, h, w) tensors, stride 4 of the padded input.
        embeddings: (B, Q, D) L2-normalized region CLIP embeddings.
        sizes: padded, input and output sizes of the B frames.
        settings: classes' thing flags and the thresholds.
        valid: (B, Q) bool, FC-CLIP's flag that a query's mask covered a cell of the
            stride-32 CLIP map (None: all did); invalid queries' embeddings count as zeros
            (`segment_table.segment_embeddings`).

    Returns:
        one `FrameSegmentation` per frame, equal to the official per-frame inference (but
        for the embedding of a segment with invalid queries).
    """
    kept = keep_queries(class_logits_from_probs(class_probs), settings.object_mask_threshold)
    counts = kept.count.tolist()  # host synchronisation 1 of 2
    if max(counts, default=0) == 0:
        return [_empty(sizes.output, embeddings.shape[-1]) for _ in counts]
    table = device_table(kept, counts, mask_logits, embeddings, sizes, settings, valid)
    return host_frames(to_host(table))  # host synchronisation 2 of 2: one copy


def device_table(
    kept: KeptQueries,
    counts: list[int],
    mask_logits: Sequence[Tensor] | Tensor,
    embeddings: Tensor,
    sizes: MaskSizes,
    settings: PanopticSettings,
    valid: Tensor | None = None,
) -> dict[str, Tensor]:
    """Everything between the two synchronisations, on the device and free of host reads.

    `valid` (B, Q) bool as in `frame_segmentations`.

    Returns (B frames, K = max(counts) rows per frame, row s = segment id s + 1):
        "labels" (B, H, W) ids in the smallest integer dtype; "count" (B,) segments per
        frame; "ints" (B, K, 7) int32 columns class, is_thing, area, x, y, w, h;
        "scores" (B, K) float32; "embeddings" (B, K, D) float32.
    """
    batch = panoptic_batch(
        kept,
        counts,
        mask_logits,
        sizes,
        settings.is_thing,
        settings.overlap_threshold,
        settings.chunk,
    )
    slots = max(counts)
    # A merged stuff segment's embedding is the normalized mean of its queries' embeddings.
    rows = embeddings.gather(1, batch.slot_queries[..., None].expand(-1, -1, embeddings.shape[-1]))
    slot_valid = None if valid is None else valid.gather(1, batch.slot_queries)
    pooled = segment_embeddings(rows, batch.segment_of, slots, slot_valid)
    ints = torch.cat(
        [
            batch.classes[..., None],
            batch.is_thing[..., None].long(),
            batch.areas[..., None],
            batch.boxes,
        ],
        -1,
    )
    return {
        "labels": batch.labels,
        "count": batch.count.to(torch.int32),
        "ints": ints.to(torch.int32),
        "scores": batch.scores.float(),
        "embeddings": pooled.float(),
    }


def host_frames(arrays: dict[str, np.ndarray]) -> list[FrameSegmentation]:
    """The host arrays of `device_table` -> one `FrameSegmentation` per frame."""
    frames = []
    for b, count in enumerate(arrays["count"].tolist()):
        segments = [
            Segment(
                id=s + 1,
                class_id=row[0],
                score=score,
                area=row[2],
                bbox=(row[3], row[4], row[5], row[6]),
                is_thing=bool(row[1]),
            )
            for s, (row, score) in enumerate(
                zip(
                    arrays["ints"][b, :count].tolist(),
                    arrays["scores"][b, :count].tolist(),
                    strict=True,
                )
            )
        ]
        frames.append(
            FrameSegmentation(
                # no copy where the maps are int32 already (the CPU's cell path)
                panoptic=arrays["labels"][b].astype(np.int32, copy=False),
                segments=segments,
                # A copy: a view would keep the whole batch's buffer alive.
                embeddings=arrays["embeddings"][b, :count].copy(),
            )
        )
    return frames


def _empty(size: tuple[int, int], dim: int) -> FrameSegmentation:
    """No kept query: an all-zero map, no segments."""
    return FrameSegmentation(
        panoptic=np.zeros(size, np.int32),
        segments=[],
        embeddings=np.zeros((0, dim), np.float32),
    )
