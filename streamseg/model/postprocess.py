"""Semantic, panoptic and instance inference from per-query class scores and mask logits.

Pure functions on one image. The thresholds and the order of operations are the official ones
(MaskFormer/Mask2Former `panoptic_inference`, `semantic_inference`, `instance_inference`, as
FC-CLIP uses them; detectron2 `sem_seg_postprocess` for the mask resizing). `Segmenter.segment`
runs panoptic inference for a whole batch on the device (streamseg/model/panoptic_frames.py);
`panoptic_inference` here is the same decisions on one image with every mask at full size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def class_logits_from_probs(probs: Tensor) -> Tensor:
    """FC-CLIP's post-processing logits: log(probs + 1e-8). (..., C+1) -> (..., C+1)."""
    return torch.log(probs + 1e-8)


def resize_mask_logits(
    mask_logits: Tensor,
    padded_size: tuple[int, int],
    image_size: tuple[int, int],
    output_size: tuple[int, int],
) -> Tensor:
    """Mask logits at stride 4 -> output resolution, in the official order: bilinear upsample to
    the padded input size, crop the unpadded image, bilinear resize to the output size.

    Args:
        mask_logits: (Q, h, w) logits at stride 4 of the padded input.
        padded_size: (Hp, Wp) padded model input size.
        image_size: (H, W) model input size before padding.
        output_size: (Ho, Wo) wanted size.

    Returns:
        (Q, Ho, Wo) float32 logits. Per-query independent in exact arithmetic; on CPU the last
        bit can depend on how many rows are resized together (vectorized and scalar paths).
    """
    if mask_logits.shape[0] == 0:  # interpolate refuses empty batches
        return mask_logits.new_zeros((0, *output_size), dtype=torch.float32)
    x = mask_logits[None].float()
    x = F.interpolate(x, size=padded_size, mode="bilinear", align_corners=False)
    x = x[:, :, : image_size[0], : image_size[1]]
    if tuple(output_size) != tuple(image_size):
        x = F.interpolate(x, size=output_size, mode="bilinear", align_corners=False)
    return x[0]


def panoptic_keep(mask_cls: Tensor, object_mask_threshold: float) -> Tensor:
    """Queries that panoptic inference considers: label not void and score above threshold.

    Args:
        mask_cls: (Q, C+1) class logits (last = void).

    Returns:
        (Q,) bool.
    """
    scores, labels = mask_cls.softmax(-1).max(-1)
    return (labels != mask_cls.shape[-1] - 1) & (scores > object_mask_threshold)


@dataclass(frozen=True)
class PanopticSegment:
    """One segment of `panoptic_inference`.

    Attributes:
        id: value in the panoptic map (1, 2, ...).
        class_id: class index.
        score: class score of the first query of the segment.
        is_thing: thing (instance) or stuff.
        queries: indices (into the input rows) of the queries merged into it.
    """

    id: int
    class_id: int
    score: float
    is_thing: bool
    queries: tuple[int, ...]


def panoptic_inference(
    mask_cls: Tensor,
    mask_logits: Tensor,
    is_thing: Tensor,
    object_mask_threshold: float,
    overlap_threshold: float,
) -> tuple[Tensor, list[PanopticSegment]]:
    """Merge queries into a panoptic map.

    score, label = softmax(mask_cls).max; keep label != void and score > threshold; each pixel
    goes to the kept query with the largest score * sigmoid(mask); a query's segment is the
    pixels it won where its sigmoid >= 0.5, dropped when won/original (sigmoid >= 0.5) area is
    below `overlap_threshold`; stuff classes reuse the first segment id of their class; ids are
    1, 2, ... in query order. Vectorized, but decisions equal the official per-query loop.

    Args:
        mask_cls: (Q, C+1) class logits (last = void).
        mask_logits: (Q, H, W) mask logits at the output size.
        is_thing: (C,) bool.
        object_mask_threshold, overlap_threshold: the official 0.0 and 0.8 by default.

    Returns:
        panoptic (H, W) int32 (0 = no segment), and the segments in id order.
    """
    height, width = mask_logits.shape[-2:]
    device = mask_logits.device
    panoptic = torch.zeros((height, width), dtype=torch.int32, device=device)
    scores, labels = mask_cls.softmax(-1).max(-1)
    keep = (labels != mask_cls.shape[-1] - 1) & (scores > object_mask_threshold)
    kept = torch.nonzero(keep).flatten()
    if kept.numel() == 0:
        return panoptic, []
    probs = mask_logits[kept].float().sigmoid()  # (K, H, W)
    winner = (scores[kept].view(-1, 1, 1) * probs).argmax(0)  # (H, W)
    winner_prob = probs.gather(0, winner[None])[0]
    original_area = (probs >= 0.5).flatten(1).sum(1).tolist()
    return _paint_segments(
        panoptic,
        kept,
        labels,
        scores,
        winner,
        winner_prob,
        original_area,
        is_thing,
        overlap_threshold,
    )


def _paint_segments(
    panoptic: Tensor,
    kept: Tensor,
    labels: Tensor,
    scores: Tensor,
    winner: Tensor,
    winner_prob: Tensor,
    original_area: list[int],
    is_thing: Tensor,
    overlap_threshold: float,
) -> tuple[Tensor, list[PanopticSegment]]:
    """The common end of both panoptic paths: areas, segment choice, the painted id map.

    Args:
        panoptic: (H, W) int32 zeros to paint into.
        kept: (K,) long indices of the queries that survived the class thresholds.
        labels, scores: (Q,) class and score of every query.
        winner: (H, W) long, index into `kept` of the query that wins each pixel.
        winner_prob: (H, W) float, the winning query's mask probability.
        original_area: per kept query, its pixels with probability >= 0.5.
        is_thing: (C,) bool.
    """
    count = kept.numel()
    won_area = torch.bincount(winner.flatten(), minlength=count).tolist()
    inside = winner_prob >= 0.5
    mask_area = torch.bincount(winner[inside], minlength=count).tolist()
    segment_of, segments = assign_segments(
        kept.tolist(),
        labels[kept].tolist(),
        scores[kept].tolist(),
        won_area,
        original_area,
        mask_area,
        is_thing.tolist(),
        overlap_threshold,
    )
    lookup = torch.tensor(segment_of, dtype=torch.int32, device=panoptic.device)
    return torch.where(inside, lookup[winner], panoptic), segments


def assign_segments(
    queries: list[int],
    classes: list[int],
    scores: list[float],
    won_area: list[int],
    original_area: list[int],
    mask_area: list[int],
    thing: list[bool],
    overlap_threshold: float,
) -> tuple[list[int], list[PanopticSegment]]:
    """The official per-query decisions of panoptic inference, in query order.

    Args (one entry per kept query): query index, class, score, pixels won, pixels with
    sigmoid >= 0.5, pixels won with sigmoid >= 0.5; `thing` per class.

    Returns:
        segment id per kept query (0 = dropped) and the segments.
    """
    segment_of = [0] * len(queries)
    segments: list[dict] = []
    stuff_ids: dict[int, int] = {}
    for k, query in enumerate(queries):
        if not (won_area[k] > 0 and original_area[k] > 0 and mask_area[k] > 0):
            continue
        if won_area[k] / original_area[k] < overlap_threshold:
            continue
        cls = classes[k]
        if not thing[cls] and cls in stuff_ids:
            segment_of[k] = stuff_ids[cls]
            segments[stuff_ids[cls] - 1]["queries"].append(query)
            continue
        new_id = len(segments) + 1
        if not thing[cls]:
            stuff_ids[cls] = new_id
        segment_of[k] = new_id
        segments.append(
            {
                "id": new_id,
                "class_id": cls,
                "score": float(scores[k]),
                "is_thing": bool(thing[cls]),
                "queries": [query],
            }
        )
    return segment_of, [PanopticSegment(**{**s, "queries": tuple(s["queries"])}) for s in segments]


def semantic_inference(mask_cls: Tensor, mask_logits: Tensor) -> Tensor:
    """Per-class score maps (not normalized), as officially.

    Args:
        mask_cls: (Q, C+1) class logits; mask_logits: (Q, H, W).

    Returns:
        (C, H, W) = einsum(softmax(mask_cls)[:, :C], sigmoid(mask_logits)).
    """
    probs = mask_cls.softmax(-1)[:, :-1]
    return torch.einsum("qc,qhw->chw", probs, mask_logits.sigmoid())


@dataclass
class Instances:
    """Result of `instance_inference` (K kept instances).

    Attributes:
        masks: (K, H, W) bool (mask logit > 0).
        scores: (K,) class score x mean sigmoid inside the mask.
        classes: (K,) long class index.
        queries: (K,) long query index.
    """

    masks: Tensor
    scores: Tensor
    classes: Tensor
    queries: Tensor


def instance_inference(
    mask_cls: Tensor, mask_logits: Tensor, is_thing: Tensor, topk: int = 100
) -> Instances:
    """Top-k (query, class) pairs over the flattened Q x C scores, thing classes only.

    Args:
        mask_cls: (Q, C+1) class logits; mask_logits: (Q, H, W); is_thing: (C,) bool.
        topk: pairs kept before the thing filter (official 100).

    Returns:
        `Instances` sorted by class score (descending).
    """
    num_classes = mask_cls.shape[1] - 1
    scores = mask_cls.softmax(-1)[:, :-1]
    top_scores, top_index = scores.flatten().topk(min(topk, scores.numel()), sorted=True)
    classes = top_index % num_classes
    queries = torch.div(top_index, num_classes, rounding_mode="floor")
    keep = is_thing.to(classes.device)[classes]
    top_scores, classes, queries = top_scores[keep], classes[keep], queries[keep]
    logits = mask_logits[queries]
    masks = logits > 0
    masks_f = masks.flatten(1).float()
    mask_scores = (logits.sigmoid().flatten(1) * masks_f).sum(1) / (masks_f.sum(1) + 1e-6)
    return Instances(masks=masks, scores=top_scores * mask_scores, classes=classes, queries=queries)
