"""The batched panoptic post-processing (streamseg/model/panoptic_frames.py) equals the former
frame-by-frame path (tests/panoptic_reference.py) on designed corner cases and on the real
tiny models, and reads the device a fixed number of times per batch."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from host_reads import HostReads
from panoptic_reference import (
    boxes_and_areas,
    panoptic_inference_streamed,
    raw_frames,
    reference_frame_segmentation,
)

from streamseg.model import host_copy, panoptic_batch
from streamseg.model.code_stats import (
    code_stats_from_lines,
    code_stats_from_runs,
    lookup,
    lookup_gather,
    merged_boxes,
)
from streamseg.model.host_copy import to_host
from streamseg.model.outputs import FrameSegmentation
from streamseg.model.panoptic_batch import MaskSizes, count_true, keep_queries, label_dtype
from streamseg.model.panoptic_frames import (
    PanopticSettings,
    device_table,
    frame_segmentations,
    host_frames,
)
from streamseg.model.postprocess import class_logits_from_probs, resize_mask_logits
from streamseg.model.segmenter import Segmenter

SAMPLE = Path(__file__).resolve().parents[1] / "weights" / "shapes-tiny" / "sample.mp4"


# ----------------------------------------------------------------------------- helpers
def assert_same(got: list[FrameSegmentation], want: list[FrameSegmentation]) -> None:
    """Identical maps and segment tables; scores and embeddings within float rounding."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.panoptic.dtype == np.int32 and g.panoptic.shape == w.panoptic.shape
        np.testing.assert_array_equal(g.panoptic, w.panoptic)
        table = [(s.id, s.class_id, s.area, s.bbox, s.is_thing) for s in g.segments]
        assert table == [(s.id, s.class_id, s.area, s.bbox, s.is_thing) for s in w.segments]
        np.testing.assert_allclose(
            [s.score for s in g.segments], [s.score for s in w.segments], rtol=0, atol=1e-6
        )
        assert g.embeddings.dtype == np.float32 and g.embeddings.shape == w.embeddings.shape
        np.testing.assert_allclose(g.embeddings, w.embeddings, rtol=0, atol=1e-6)


def run_both(
    probs: torch.Tensor,
    low: torch.Tensor,
    sizes: MaskSizes,
    is_thing: torch.Tensor,
    thresholds: tuple[float, float] = (0.0, 0.8),
    dim: int = 8,
    valid: torch.Tensor | None = None,
    embeddings: torch.Tensor | None = None,
) -> tuple[list[FrameSegmentation], list[FrameSegmentation]]:
    """The batched path on (B, Q, C+1) probabilities and (B, Q, h, w) logits, and the
    reference frame by frame; embeddings are random unit rows unless given; `valid` (B, Q)
    bool: FC-CLIP's per-query flag (None: all valid)."""
    if embeddings is None:
        generator = torch.Generator().manual_seed(1)
        embeddings = F.normalize(torch.randn(*probs.shape[:2], dim, generator=generator), dim=-1)
    settings = PanopticSettings(is_thing, *thresholds)
    got = frame_segmentations(probs, list(low), embeddings, sizes, settings, valid)
    want = [
        reference_frame_segmentation(
            {
                "class_probs": probs[b],
                "mask_logits": low[b],
                "embeddings": embeddings[b],
                "valid": None if valid is None else valid[b],
                "image_size": sizes.image,
                "padded_size": sizes.padded,
            },
            sizes.output,
            is_thing,
            *thresholds,
        )
        for b in range(probs.shape[0])
    ]
    return got, want


def one_hot_probs(label: int, score: float, classes: int = 4) -> list[float]:
    rest = (1 - score) / (classes - 1)
    return [score if i == label else rest for i in range(classes)]


def box(rows: slice, cols: slice, size: int = 8) -> torch.Tensor:
    logits = torch.full((size, size), -8.0)
    logits[rows, cols] = 8.0
    return logits


VOID = [0.1, 0.1, 0.1, 0.7]
IS_THING = torch.tensor([True, False, True])  # class 0 thing, 1 stuff, 2 thing
SAME_SIZE = MaskSizes((8, 8), (8, 8), (8, 8))


def designed_frames() -> tuple[torch.Tensor, torch.Tensor]:
    """Four 8 x 8 frames of six queries (C = 3 + void), each a corner case."""
    dropped_and_merged = (  # the case of tests/test_postprocess.py
        [
            one_hot_probs(0, 0.90),  # thing, left half; loses 8 px to q5: 24/32 < 0.8, dropped
            one_hot_probs(1, 0.80),  # stuff, top right
            one_hot_probs(1, 0.70),  # the same stuff class, bottom right: merged into q1
            VOID,  # never kept
            one_hot_probs(2, 0.60),  # thing, middle columns: wins nothing
            one_hot_probs(2, 0.95),  # thing, 2 x 4 inside q0
        ],
        [
            box(slice(0, 8), slice(0, 4)),
            box(slice(0, 4), slice(4, 8)),
            box(slice(4, 8), slice(4, 8)),
            box(slice(0, 8), slice(0, 8)),
            box(slice(0, 8), slice(2, 6)),
            box(slice(6, 8), slice(0, 4)),
        ],
    )
    empty = ([VOID] * 6, [box(slice(0, 8), slice(0, 8))] * 6)
    ties = (  # q2 repeats q0 exactly (class scores and mask): the earlier query wins
        [
            one_hot_probs(0, 0.60),
            one_hot_probs(1, 0.90),
            one_hot_probs(0, 0.60),
            one_hot_probs(1, 0.50),  # stuff again, beside q1: merged, the segment keeps 0.9
            VOID,
            VOID,
        ],
        [
            box(slice(0, 4), slice(0, 8)),
            box(slice(4, 8), slice(0, 4)),
            box(slice(0, 4), slice(0, 8)),
            box(slice(4, 8), slice(4, 8)),
            box(slice(0, 8), slice(0, 8)),
            box(slice(0, 8), slice(0, 8)),
        ],
    )
    one_kept = ([one_hot_probs(2, 0.99)] + [VOID] * 5, [box(slice(2, 5), slice(1, 7))] * 6)
    frames = [dropped_and_merged, empty, ties, one_kept]
    probs = torch.tensor([f[0] for f in frames])
    low = torch.stack([torch.stack(f[1]) for f in frames])
    return probs, low


# ----------------------------------------------------------------------------- designed
def test_designed_corner_cases_equal_reference() -> None:
    probs, low = designed_frames()
    got, want = run_both(probs, low, SAME_SIZE, IS_THING)
    assert_same(got, want)
    dropped_and_merged, empty, ties, one_kept = got
    map0 = np.zeros((8, 8), np.int32)
    map0[:, 4:] = 1
    map0[6:, :4] = 2
    np.testing.assert_array_equal(dropped_and_merged.panoptic, map0)
    assert [
        (s.id, s.class_id, s.is_thing, s.area, s.bbox) for s in dropped_and_merged.segments
    ] == [
        (1, 1, False, 32, (4, 0, 4, 8)),
        (2, 2, True, 8, (0, 6, 4, 2)),
    ]
    assert empty.segments == [] and not empty.panoptic.any() and empty.embeddings.shape == (0, 8)
    assert [(s.id, s.class_id, s.area) for s in ties.segments] == [(1, 0, 32), (2, 1, 32)]
    assert ties.segments[1].score == pytest.approx(0.9)
    assert [(s.area, s.bbox) for s in one_kept.segments] == [(18, (1, 2, 6, 3))]


def test_designed_thresholds_equal_reference() -> None:
    probs, low = designed_frames()
    for thresholds in ((0.75, 0.8), (0.0, 0.7), (0.0, 0.0), (0.65, 1.0)):
        got, want = run_both(probs, low, SAME_SIZE, IS_THING, thresholds)
        assert_same(got, want)
    # overlap 0.7 keeps q0 (24/32 = 0.75): three segments in the first frame
    got, _ = run_both(probs, low, SAME_SIZE, IS_THING, (0.0, 0.7))
    assert [s.area for s in got[0].segments] == [24, 32, 8]


def test_invalid_queries_give_zero_or_valid_only_embeddings() -> None:
    """FC-CLIP's `valid` false (the mask covered no cell of the stride-32 CLIP map): the query's
    embedding is the CLIP head's output for an empty pooling, so it must not reach the
    segment. First frame of `designed_frames`: segment 1 = stuff q1 + q2 merged, segment 2 =
    thing q5. Embeddings are basis vectors, so every expected row is written by hand."""
    probs, low = designed_frames()
    dim = 8
    embeddings = torch.zeros(4, 6, dim)
    for q in range(6):
        embeddings[:, q, q] = 1.0  # query q's embedding: basis vector e_q
    all_valid = torch.ones(4, 6, dtype=torch.bool)
    invalid_thing = all_valid.clone()
    invalid_thing[0, 5] = False
    invalid_stuff_part = all_valid.clone()
    invalid_stuff_part[0, 2] = False
    invalid_stuff = all_valid.clone()
    invalid_stuff[0, 1:3] = False
    half = 2**-0.5
    cases = [
        (None, {1: half, 2: half}, {5: 1.0}),
        (all_valid, {1: half, 2: half}, {5: 1.0}),
        (invalid_thing, {1: half, 2: half}, {}),  # a thing of one invalid query: zero row
        (invalid_stuff_part, {1: 1.0}, {5: 1.0}),  # merged stuff: the valid query alone
        (invalid_stuff, {}, {5: 1.0}),
    ]
    for valid, stuff, thing in cases:
        got, want = run_both(
            probs, low, SAME_SIZE, IS_THING, valid=valid, embeddings=embeddings, dim=dim
        )
        assert_same(got, want)
        rows = got[0].embeddings
        assert [s.id for s in got[0].segments] == [1, 2]
        expected = np.zeros((2, dim), np.float32)
        for row, weights in enumerate((stuff, thing)):
            for q, value in weights.items():
                expected[row, q] = value
        np.testing.assert_allclose(rows, expected, rtol=0, atol=1e-6)
        # the maps and the segment tables do not depend on `valid`
        reference, _ = run_both(probs, low, SAME_SIZE, IS_THING, embeddings=embeddings)
        np.testing.assert_array_equal(got[0].panoptic, reference[0].panoptic)
        assert got[0].segments == reference[0].segments


def test_random_invalid_queries_equal_reference() -> None:
    """Random per-query `valid` flags on many overlapping blobs: the batched path equals the
    reference, and every all-invalid segment has a zero row."""
    generator = torch.Generator().manual_seed(11)
    batch, queries, classes = 2, 24, 3
    is_thing = torch.tensor([True, False, True])
    yy, xx = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    centers = torch.rand(batch, queries, 2, generator=generator) * torch.tensor([12.0, 16.0])
    radius = 1.5 + 3 * torch.rand(batch, queries, 1, 1, generator=generator)
    dist2 = (yy - centers[..., :1, None]) ** 2 + (xx - centers[..., 1:, None]) ** 2
    low = 8 * (1 - dist2 / radius**2)
    probs = (torch.randn(batch, queries, classes + 1, generator=generator) * 3).softmax(-1)
    valid = torch.rand(batch, queries, generator=generator) > 0.4
    sizes = MaskSizes((48, 64), (45, 60), (30, 41))
    got, want = run_both(probs, low, sizes, is_thing, (0.0, 0.8), valid=valid)
    assert_same(got, want)
    zero_rows = sum(int((~r.embeddings.any(1)).sum()) for r in got)
    unit_rows = sum(int(np.isclose(np.linalg.norm(r.embeddings, axis=1), 1).sum()) for r in got)
    assert zero_rows > 0 and unit_rows > 0
    assert zero_rows + unit_rows == sum(len(r.segments) for r in got)


def test_batch_of_frames_without_kept_queries() -> None:
    probs = torch.tensor([[VOID] * 3] * 2)
    low = torch.zeros(2, 3, 8, 8)
    got, want = run_both(probs, low, MaskSizes((8, 8), (8, 8), (5, 7)), IS_THING)
    assert_same(got, want)
    assert all(r.panoptic.shape == (5, 7) and r.segments == [] for r in got)


@pytest.mark.parametrize(
    "sizes",
    [
        MaskSizes((48, 64), (45, 60), (30, 41)),  # both resizes, downscaled output
        MaskSizes((48, 64), (45, 60), (45, 60)),  # output = input: crop only
        MaskSizes((48, 64), (45, 60), (97, 133)),  # upscaled output
    ],
)
def test_random_queries_equal_reference(sizes: MaskSizes) -> None:
    """Many kept queries (several chunks of 16) as overlapping blobs, stuff merged per class,
    some void, a copy of a query (an exact tie), frames with different kept counts."""
    generator = torch.Generator().manual_seed(7)
    batch, queries, classes = 3, 40, 5
    is_thing = torch.tensor([True, False, True, False, True])
    yy, xx = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    centers = torch.rand(batch, queries, 2, generator=generator) * torch.tensor([12.0, 16.0])
    radius = 1.5 + 3 * torch.rand(batch, queries, 1, 1, generator=generator)
    dist2 = (yy - centers[..., :1, None]) ** 2 + (xx - centers[..., 1:, None]) ** 2
    low = 8 * (1 - dist2 / radius**2)
    logits = torch.randn(batch, queries, classes + 1, generator=generator) * 3
    logits[:, 7], low[:, 7] = logits[:, 2], low[:, 2]
    logits[0, ::4, -1] = 9.0
    logits[2, ::2, -1] = 9.0
    probs = logits.softmax(-1)
    for thresholds in ((0.2, 0.5), (0.0, 0.8)):
        got, want = run_both(probs, low, sizes, is_thing, thresholds)
        assert_same(got, want)
        assert sum(len(r.segments) for r in got) >= 6
        merged = 0
        for b in range(batch):
            _, segments = panoptic_inference_streamed(
                class_logits_from_probs(probs[b]),
                lambda q, b=b: resize_mask_logits(
                    low[b][q], sizes.padded, sizes.image, sizes.output
                ),
                sizes.output,
                is_thing,
                *thresholds,
            )
            merged += sum(len(s.queries) > 1 for s in segments)
        assert merged > 0  # stuff segments of several queries are part of the comparison


def test_more_than_255_segments_use_int16_labels() -> None:
    """300 things, one pixel each: ids above 255 travel as int16 and come back equal."""
    count, side = 300, 20
    low = torch.full((1, count, side, side), -8.0)
    low[0, torch.arange(count), torch.arange(count) // side, torch.arange(count) % side] = 8.0
    probs = torch.tensor([one_hot_probs(0, 0.9 - 0.001 * (q % 7)) for q in range(count)])[None]
    sizes = MaskSizes((side, side), (side, side), (side, side))
    got, want = run_both(probs, low, sizes, IS_THING)
    assert_same(got, want)
    assert len(got[0].segments) == count
    kept = keep_queries(class_logits_from_probs(probs), 0.0)
    table = device_table(
        kept,
        kept.count.tolist(),
        list(low),
        torch.zeros(1, count, 4),
        sizes,
        PanopticSettings(IS_THING, 0.0, 0.8),
    )
    assert table["labels"].dtype == torch.int16


def test_count_true_equals_a_plain_sum() -> None:
    generator = torch.Generator().manual_seed(4)
    for shape in [(3, 7, 11), (2, 255), (2, 256), (2, 0), (2, 600, 700)]:
        mask = torch.rand(shape, generator=generator) > 0.3
        assert torch.equal(count_true(mask), mask.reshape(shape[0], -1).sum(1))
    assert count_true(torch.ones(2, 1000, dtype=torch.bool)).tolist() == [1000, 1000]


def test_label_dtype_is_the_smallest_that_holds_the_ids() -> None:
    assert label_dtype(1) == label_dtype(255) == torch.uint8
    assert label_dtype(256) == label_dtype(32767) == torch.int16
    assert label_dtype(32768) == torch.int32


@pytest.mark.parametrize("stats", [code_stats_from_lines, code_stats_from_runs])
def test_areas_and_boxes_equal_reference_per_id(stats) -> None:
    generator = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 4, (3, 9, 13), generator=generator, dtype=torch.uint8)
    labels[1][labels[1] == 2] = 0  # an absent id
    labels[2] = 0
    labels[2, 4, 5] = 3
    codes = stats(labels, 6)
    owner = torch.arange(6).expand(3, 6)  # each id its own code; code 0 is background
    areas, boxes = merged_boxes(codes, owner, 5)
    for b in range(3):
        want_boxes, want_areas = boxes_and_areas(labels[b].int(), [1, 2, 3, 4, 5])
        assert areas[b].tolist() == want_areas
        assert [tuple(x) for x in boxes[b].tolist()] == want_boxes


def test_boxes_of_ids_made_of_several_codes() -> None:
    # Codes 1 and 3 form id 1, code 2 is id 2, codes 0 and 4 belong to no id.
    code = torch.zeros(1, 6, 8, dtype=torch.uint8)
    code[0, 1, 2] = 1
    code[0, 4, 6:8] = 3
    code[0, 2:4, 0:2] = 2
    code[0, 5, 5] = 4
    owner = torch.tensor([[0, 1, 2, 1, 0]])
    areas, boxes = merged_boxes(code_stats_from_runs(code, 5), owner, 2)
    assert areas.tolist() == [[3, 4]]
    # id 1 spans rows 1..4 and columns 2..7; id 2 rows 2..3, columns 0..1.
    assert boxes.tolist() == [[[2, 1, 6, 4], [0, 2, 2, 2]]]


@pytest.mark.parametrize("shape", [(2, 5, 1), (1, 1, 7), (3, 40, 33)])
def test_run_and_line_stats_agree(shape) -> None:
    generator = torch.Generator().manual_seed(sum(shape))
    for bins in (2, 9):
        small = torch.randint(0, bins, shape, generator=generator, dtype=torch.uint8)
        blocky = small.repeat_interleave(3, 2)
        for code in (small, blocky, torch.zeros_like(small)):
            runs, lines = code_stats_from_runs(code, bins), code_stats_from_lines(code, bins)
            for name in ("count", "y0", "y1", "x0", "x1"):
                assert torch.equal(getattr(runs, name), getattr(lines, name)), name
            assert runs.count.sum().item() == code.numel()


def test_lookup_reads_each_maps_table() -> None:
    table = torch.tensor([[0, 5, 6], [0, 7, 0]], dtype=torch.uint8)
    code = torch.tensor([[[0, 1], [2, 2]], [[1, 1], [2, 0]]], dtype=torch.uint8)
    assert lookup(table, code).tolist() == [[[0, 5], [6, 6]], [[7, 7], [0, 0]]]


@pytest.mark.parametrize("packed", [False, True])  # CPU views; the accelerators' one copy
def test_to_host_round_trips_mixed_dtypes(monkeypatch, packed: bool) -> None:
    if packed:
        monkeypatch.setattr(host_copy, "on_host", lambda tensors: False)
    tensors = {
        "bytes": torch.arange(7, dtype=torch.uint8),
        "shorts": torch.arange(-3, 2, dtype=torch.int16).view(5, 1),
        "ints": torch.arange(6, dtype=torch.int32).view(2, 3).t(),  # not contiguous
        "floats": torch.linspace(0, 1, 3),
        "longs": torch.tensor([2**40, -1]),
        "flags": torch.tensor([True, False, True]),
    }
    arrays = to_host(tensors)
    for name, tensor in tensors.items():
        assert arrays[name].dtype == tensor.numpy().dtype
        np.testing.assert_array_equal(arrays[name], tensor.numpy())


# ----------------------------------------------------------------------------- real models
def sample_frames(count: int) -> list[np.ndarray]:
    av = pytest.importorskip("av")
    if not SAMPLE.is_file():
        pytest.skip("weights/shapes-tiny/sample.mp4 is not in this checkout")
    frames = []
    with av.open(str(SAMPLE)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 20 == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return frames


@pytest.fixture(scope="module")
def shapes_tiny() -> Segmenter:
    if not (SAMPLE.parent / "model.safetensors").is_file():
        pytest.skip("weights/shapes-tiny is not in this checkout")
    seg = Segmenter.from_pretrained("shapes-tiny", device="cpu")
    seg.set_vocabulary(seg.default_vocabulary, cache_dir=None)
    return seg


@pytest.fixture(scope="module")
def tiny_convnext() -> Segmenter:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        seg = Segmenter.from_pretrained("tiny-convnext", device="cpu")
    generator = torch.Generator().manual_seed(0)
    text = SimpleNamespace(
        embeddings=F.normalize(torch.randn(6, seg.model.backbone.embed_dim, generator=generator)),
        class_index=torch.tensor([0, 0, 1, 2, 3, 3]),
        num_classes=4,
    )
    vocabulary = SimpleNamespace(is_thing=[True, False, True, False])
    seg.set_text_classifier(vocabulary, text, seen=torch.tensor([True, True, False, False]))
    return seg


def reference_segment(
    seg: Segmenter, frames: list[np.ndarray], output_size: tuple[int, int] | None
) -> list[FrameSegmentation]:
    """The former `Segmenter.segment`: the same network outputs, post-processed frame by frame."""
    raws = raw_frames(seg.segment_raw(frames))
    return [
        reference_frame_segmentation(
            raw,
            output_size or frame.shape[:2],
            seg._is_thing,
            seg.config.object_mask_threshold,
            seg.config.overlap_threshold,
        )
        for raw, frame in zip(raws, frames, strict=True)
    ]


@pytest.mark.parametrize("model", ["shapes_tiny", "tiny_convnext"])
@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("output_size", [None, (270, 480)])
def test_real_model_segment_equals_reference(
    request: pytest.FixtureRequest,
    model: str,
    batch_size: int,
    output_size: tuple[int, int] | None,
) -> None:
    seg = request.getfixturevalue(model)
    frames = sample_frames(5)[1 : 1 + batch_size]  # the random model finds nothing in 0
    got = seg.segment(frames, output_size=output_size)
    assert_same(got, reference_segment(seg, frames, output_size))
    assert sum(len(r.segments) for r in got) > 0  # a real comparison, not two empty maps


def test_full_hd_output_equals_reference(shapes_tiny: Segmenter) -> None:
    """The bench's case: 1080p maps from a batch of 4 (multi-threaded kernels, many chunks)."""
    frames = sample_frames(4)
    got = shapes_tiny.segment(frames, output_size=(1080, 1920))
    assert_same(got, reference_segment(shapes_tiny, frames, (1080, 1920)))
    assert all(r.segments for r in got)


def test_bf16_autocast_equals_reference(shapes_tiny: Segmenter) -> None:
    """`--precision bf16` runs `segment` under autocast: post-processing still equals the
    frame-by-frame path under the same autocast."""
    frames = sample_frames(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = shapes_tiny.segment(frames, output_size=(270, 480))
        want = reference_segment(shapes_tiny, frames, (270, 480))
    assert_same(got, want)
    assert all(r.segments for r in got)


def test_mixed_sizes_in_one_call_equal_reference(tiny_convnext: Segmenter) -> None:
    """Frames of two sizes in one call: two groups, each batched, results in input order."""
    frames = sample_frames(3)
    frames[1] = np.ascontiguousarray(frames[1][:200, :160])
    got = tiny_convnext.segment(frames)
    assert [r.panoptic.shape for r in got] == [(256, 256), (200, 160), (256, 256)]
    assert_same(got, reference_segment(tiny_convnext, frames, None))


# ----------------------------------------------------------------------------- host syncs
# Counted by tests/host_reads.py: what would make a CUDA run wait for the device.


def separate_things(
    segments: int, queries: int = 32, side: int = 32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two frames whose first `segments` queries are things owning one row each; the other
    queries are void."""
    probs = torch.tensor(
        [one_hot_probs(q % 3, 0.9) if q < segments else VOID for q in range(queries)]
    )
    low = torch.full((queries, side, side), -8.0)
    low[torch.arange(queries), torch.arange(queries) % side] = 8.0
    is_thing = torch.tensor([True, True, True])
    return probs[None].expand(2, -1, -1), low[None].expand(2, -1, -1, -1), is_thing


def count_syncs(segments: int, reference: bool = False) -> int:
    """Host reads while post-processing two frames of `segments` segments each."""
    probs, low, is_thing = separate_things(segments)
    sizes = MaskSizes((32, 32), (32, 32), (32, 32))
    embeddings = F.normalize(torch.ones(2, probs.shape[1], 4), dim=-1)
    with HostReads() as reads:
        if reference:
            results = [
                reference_frame_segmentation(raw, (32, 32), is_thing)
                for raw in raw_frames(
                    {
                        "class_probs": probs,
                        "mask_logits": list(low),
                        "embeddings": embeddings,
                        "image_sizes": [sizes.image] * 2,
                        "padded_sizes": [sizes.padded] * 2,
                    }
                )
            ]
        else:
            settings = PanopticSettings(is_thing, 0.0, 0.8)
            results = frame_segmentations(probs, list(low), embeddings, sizes, settings)
    assert [len(r.segments) for r in results] == [segments, segments]
    if not reference:  # its two reads are Python calls; no operator sizes itself by values
        assert dict(reads.ops) == {}
    return sum(reads.calls.values())


def test_host_reads_per_batch_do_not_grow_with_segments(monkeypatch) -> None:
    # The accelerator path: on the CPU, stats and lookup go through numpy, which has no
    # device to synchronise with.
    monkeypatch.setattr(panoptic_batch, "code_stats", code_stats_from_lines)
    monkeypatch.setattr(panoptic_batch, "lookup", lookup_gather)
    monkeypatch.setattr(host_copy, "on_host", lambda tensors: False)
    few, many = count_syncs(3), count_syncs(30)
    assert few == many == 2  # the kept counts, then the one copy of maps and table
    # The counter sees per-segment reads: the former path makes more of them per segment.
    assert count_syncs(30, reference=True) > count_syncs(3, reference=True) > many


@pytest.mark.cuda  # skipped without CUDA (tests/conftest.py); .ci/gpu.sh runs it
def test_no_cuda_synchronisation_between_the_two_reads() -> None:
    """On CUDA, the device work between the kept-count read and the copy never synchronises
    (torch's sync debug mode raises on any synchronising call)."""
    device = torch.device("cuda")
    probs, low = designed_frames()
    is_thing = IS_THING.to(device)
    embeddings = F.normalize(torch.randn(*probs.shape[:2], 8), dim=-1)
    settings = PanopticSettings(is_thing, 0.0, 0.8)
    sizes = MaskSizes((8, 8), (8, 8), (12, 10))
    kept = keep_queries(class_logits_from_probs(probs.to(device)), 0.0)
    counts = kept.count.tolist()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        table = device_table(
            kept, counts, list(low.to(device)), embeddings.to(device), sizes, settings
        )
    finally:
        torch.cuda.set_sync_debug_mode(0)
    got = host_frames(to_host(table))
    want = frame_segmentations(
        probs, list(low), embeddings, sizes, PanopticSettings(IS_THING, 0.0, 0.8)
    )
    assert_same(got, want)
