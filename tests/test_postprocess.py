"""Panoptic / semantic / instance inference on designed inputs, and the fast path (only the
surviving queries upsampled) against the official order of operations."""

from __future__ import annotations

import math

import torch
from panoptic_reference import boxes_and_areas, panoptic_inference_streamed

from streamseg.model.postprocess import (
    class_logits_from_probs,
    instance_inference,
    panoptic_inference,
    panoptic_keep,
    resize_mask_logits,
    semantic_inference,
)

IS_THING = torch.tensor([True, False, True])  # class 0 thing, 1 stuff, 2 thing


def box_mask(rows: slice, cols: slice, size: int = 8) -> torch.Tensor:
    logits = torch.full((size, size), -8.0)
    logits[rows, cols] = 8.0
    return logits


def designed_queries() -> tuple[torch.Tensor, torch.Tensor]:
    def cls(label: int, score: float) -> list[float]:
        rest = (1 - score) / 3
        return [score if i == label else rest for i in range(4)]

    probs = torch.tensor(
        [
            cls(0, 0.90),  # q0 thing, left half; loses 8 px to q5 -> 24/32 < 0.8: dropped
            cls(1, 0.80),  # q1 stuff, top right
            cls(1, 0.70),  # q2 stuff (same class), bottom right: merged with q1
            [0.1, 0.1, 0.1, 0.7],  # q3 void: never kept
            cls(2, 0.60),  # q4 thing, middle columns: wins nothing
            cls(2, 0.95),  # q5 thing, 2x4 inside q0's area
        ]
    )
    masks = torch.stack(
        [
            box_mask(slice(0, 8), slice(0, 4)),
            box_mask(slice(0, 4), slice(4, 8)),
            box_mask(slice(4, 8), slice(4, 8)),
            box_mask(slice(0, 8), slice(0, 8)),
            box_mask(slice(0, 8), slice(2, 6)),
            box_mask(slice(6, 8), slice(0, 4)),
        ]
    )
    return class_logits_from_probs(probs), masks


def test_panoptic_designed_case() -> None:
    mask_cls, masks = designed_queries()
    panoptic, segments = panoptic_inference(mask_cls, masks, IS_THING, 0.0, 0.8)
    assert panoptic.dtype == torch.int32
    assert [(s.id, s.class_id, s.is_thing, s.queries) for s in segments] == [
        (1, 1, False, (1, 2)),  # stuff merged per class, first query's id
        (2, 2, True, (5,)),
    ]
    assert math.isclose(segments[0].score, 0.8, abs_tol=1e-6)
    assert math.isclose(segments[1].score, 0.95, abs_tol=1e-6)
    want = torch.zeros(8, 8, dtype=torch.int32)
    want[:, 4:] = 1
    want[6:, :4] = 2
    assert torch.equal(panoptic, want)
    boxes, areas = boxes_and_areas(panoptic, [1, 2])
    assert boxes == [(4, 0, 4, 8), (0, 6, 4, 2)] and areas == [32, 8]


def test_panoptic_thresholds_respected() -> None:
    mask_cls, masks = designed_queries()
    _, segments = panoptic_inference(mask_cls, masks, IS_THING, 0.75, 0.8)
    # q2 (0.70) is no longer kept: the stuff segment is q1 alone.
    assert [s.queries for s in segments] == [(1,), (5,)]
    # A lower overlap threshold keeps q0 (24/32 = 0.75 >= 0.7).
    panoptic, segments = panoptic_inference(mask_cls, masks, IS_THING, 0.0, 0.7)
    assert [s.queries for s in segments] == [(0,), (1, 2), (5,)]
    assert int((panoptic == 1).sum()) == 24


def test_panoptic_invariants_on_random_input() -> None:
    generator = torch.Generator().manual_seed(3)
    num_classes, queries = 5, 20
    is_thing = torch.tensor([True, False, True, False, True])
    for _ in range(5):
        mask_cls = torch.randn(queries, num_classes + 1, generator=generator) * 3
        masks = torch.randn(queries, 24, 32, generator=generator) * 4
        panoptic, segments = panoptic_inference(mask_cls, masks, is_thing, 0.3, 0.8)
        scores, labels = mask_cls.softmax(-1).max(-1)
        probs = masks.sigmoid()
        winner = (
            (scores[:, None, None] * probs)
            .where(panoptic_keep(mask_cls, 0.3)[:, None, None], torch.tensor(-1.0))
            .argmax(0)
        )
        assert [s.id for s in segments] == list(range(1, len(segments) + 1))
        assert set(torch.unique(panoptic).tolist()) <= {0, *[s.id for s in segments]}
        stuff_classes = [s.class_id for s in segments if not s.is_thing]
        assert len(stuff_classes) == len(set(stuff_classes))  # stuff merged per class
        for s in segments:
            region = panoptic == s.id
            assert region.any()
            assert s.is_thing == bool(is_thing[s.class_id])
            for q in s.queries:
                assert labels[q] == s.class_id and scores[q] > 0.3
                won = winner == q
                assert won.sum() / (probs[q] >= 0.5).sum() >= 0.8
            # every pixel of the segment was won by one of its queries with sigmoid >= 0.5
            owners = torch.zeros_like(region)
            for q in s.queries:
                owners |= (winner == q) & (probs[q] >= 0.5)
            assert torch.equal(region, owners)


def test_fast_path_equals_official_order() -> None:
    generator = torch.Generator().manual_seed(5)
    mask_cls = torch.randn(12, 4, generator=generator) * 3
    mask_cls[::3, -1] = 10.0  # some void queries
    low = torch.randn(12, 16, 24, generator=generator) * 5
    padded, image, output = (64, 96), (60, 90), (45, 71)
    # Official: every query upsampled to the padded size, cropped, resized; then inference.
    full = torch.nn.functional.interpolate(
        low[None], size=padded, mode="bilinear", align_corners=False
    )
    full = torch.nn.functional.interpolate(
        full[:, :, :60, :90], size=output, mode="bilinear", align_corners=False
    )[0]
    want_map, want_segments = panoptic_inference(mask_cls, full, IS_THING, 0.0, 0.8)
    kept = torch.nonzero(panoptic_keep(mask_cls, 0.0)).flatten()
    assert 0 < kept.numel() < 12
    fast = resize_mask_logits(low[kept], padded, image, output)
    got_map, got_segments = panoptic_inference(mask_cls[kept], fast, IS_THING, 0.0, 0.8)
    assert torch.equal(got_map, want_map)
    remapped = [tuple(int(kept[q]) for q in s.queries) for s in got_segments]
    assert remapped == [s.queries for s in want_segments]
    assert [s.class_id for s in got_segments] == [s.class_id for s in want_segments]


def test_semantic_inference_hand_computed() -> None:
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.7, 0.2]])
    masks = torch.tensor([[[0.0, 100.0]], [[-100.0, 0.0]]])  # sigmoid 0.5/1 and 0/0.5
    got = semantic_inference(torch.log(probs), masks)
    want = torch.tensor([[[0.25, 0.5 + 0.05]], [[0.125, 0.25 + 0.35]]])
    torch.testing.assert_close(got, want)


def test_instance_inference_topk_things_only() -> None:
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])
    masks = torch.tensor([[[2.0, -1.0]], [[3.0, 3.0]], [[-2.0, 1.0]]])  # (Q=3, H=1, W=2)
    out = instance_inference(torch.log(probs), masks, torch.tensor([True, False]), topk=3)
    # top-3 pairs: (q1, c1) 0.7 stuff -> dropped; (q0, c0) 0.6; (q2, c0) 0.5
    assert out.queries.tolist() == [0, 2] and out.classes.tolist() == [0, 0]
    sig = torch.sigmoid
    want = torch.stack([0.6 * sig(torch.tensor(2.0)), 0.5 * sig(torch.tensor(1.0))])
    torch.testing.assert_close(out.scores, want)
    assert out.masks.tolist() == [[[True, False]], [[False, True]]]


def test_no_kept_query_gives_empty_map() -> None:
    mask_cls = torch.tensor([[0.0, 0.0, 5.0]])
    panoptic, segments = panoptic_inference(
        mask_cls, torch.ones(1, 4, 4), torch.tensor([True, True]), 0.0, 0.8
    )
    assert segments == [] and not panoptic.any()


def test_streamed_panoptic_equals_reference() -> None:
    generator = torch.Generator().manual_seed(7)
    is_thing = torch.tensor([True, False, True, False, True])
    blobs = torch.randn(1, 20, 3, 4, generator=generator) * 6 - 2
    low = torch.nn.functional.interpolate(blobs, size=(12, 16), mode="bilinear")[0]
    mask_cls = torch.randn(20, 6, generator=generator) * 3
    # Ties: query 7 repeats query 2 exactly (same class scores, same mask).
    mask_cls[7], low[7] = mask_cls[2], low[2]
    mask_cls[::4, -1] = 9.0  # some void
    padded, image, output = (48, 64), (45, 60), (30, 41)

    def masks_for(index: torch.Tensor) -> torch.Tensor:
        return resize_mask_logits(low[index], padded, image, output)

    want_map, want = panoptic_inference(mask_cls, masks_for(torch.arange(20)), is_thing, 0.2, 0.5)
    assert len(want) > 2
    for chunk in (1, 3, 100):
        got_map, got = panoptic_inference_streamed(
            mask_cls, masks_for, output, is_thing, 0.2, 0.5, chunk=chunk
        )
        assert torch.equal(got_map, want_map)
        assert got == want
