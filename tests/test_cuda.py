"""CUDA only (marked `cuda`: skipped without a device; `.ci/gpu.sh` runs them): the model on a
GPU agrees with the CPU, bf16 autocast runs, the forward and the batched post-processing queue
their device work without reading anything back, and the bench's capacity and sync-debug
parts work there."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.cuda

SAMPLE = Path(__file__).resolve().parents[1] / "streamseg" / "data" / "samples" / "shapes.png"


def _segmenter(device: str) -> object:
    from streamseg.model.embedded import DEFAULT_MODEL
    from streamseg.model.load import load_segmenter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        segmenter = load_segmenter(DEFAULT_MODEL, device=device)
    from streamseg.model.default_vocab import default_vocabulary

    segmenter.set_vocabulary(
        default_vocabulary(segmenter, DEFAULT_MODEL) or "person,car,sky", cache_dir=None
    )
    return segmenter


def _sample() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(SAMPLE).convert("RGB"))


def _class_map(segmentation: object) -> np.ndarray:
    """Per pixel the class of its segment (-1 = none): ids may be numbered differently."""
    panoptic = segmentation.panoptic  # type: ignore[attr-defined]
    lookup = np.full(int(panoptic.max()) + 1, -1, np.int64)
    for segment in segmentation.segments:  # type: ignore[attr-defined]
        lookup[segment.id] = segment.class_id
    return lookup[panoptic]


def test_default_model_segments_the_same_on_cuda_as_on_cpu() -> None:
    image = _sample()
    cpu, gpu = _segmenter("cpu"), _segmenter("cuda")
    raw_cpu, raw_gpu = cpu.segment_raw([image]), gpu.segment_raw([image])  # type: ignore[attr-defined]
    # cuDNN convolutions may use TF32: close, not bit-equal
    torch.testing.assert_close(
        raw_gpu["class_probs"].cpu(), raw_cpu["class_probs"], atol=2e-2, rtol=0
    )
    want = cpu.segment([image])[0]  # type: ignore[attr-defined]
    got = gpu.segment([image])[0]  # type: ignore[attr-defined]
    assert got.panoptic.shape == want.panoptic.shape and got.panoptic.dtype == np.int32
    assert {s.class_id for s in got.segments} == {s.class_id for s in want.segments}
    agreement = float(np.mean(_class_map(got) == _class_map(want)))
    assert agreement > 0.98, agreement


def test_bf16_autocast_on_cuda_runs() -> None:
    from streamseg.model.precision import autocast

    segmenter = _segmenter("cuda")
    image = _sample()
    with autocast("cuda", "bf16"):
        results = segmenter.segment([image, image], output_size=(100, 120))  # type: ignore[attr-defined]
    for result in results:
        assert result.panoptic.shape == (100, 120) and result.panoptic.dtype == np.int32
        assert result.embeddings.dtype == np.float32
        assert np.isfinite(result.embeddings).all()
        assert len(result.segments) == result.embeddings.shape[0]


def test_forward_does_not_synchronise() -> None:
    """The network's forward, from the pinned upload to its outputs, queues everything on the
    device (sync debug mode "error"; tests/test_forward_host_reads.py counts the same on the
    CPU)."""
    from streamseg.bench.sync_debug import sync_debug_mode

    segmenter = _segmenter("cuda")
    images = [_sample(), _sample()]
    segmenter.run_network(images)  # type: ignore[attr-defined]  # warm-up (cuDNN's search)
    torch.cuda.synchronize()
    with sync_debug_mode("error"):
        out = segmenter.run_network(images)  # type: ignore[attr-defined]
    torch.cuda.synchronize()
    assert out.frames[0]["mask_logits"].is_cuda and len(out.frames) == 2


def test_post_processing_between_its_two_reads_does_not_synchronise() -> None:
    """panoptic_frames: the kept-query counts are read, then everything up to the one copy to
    the host is queued on the device with no synchronisation (sync debug mode "error")."""
    from streamseg.bench.sync_debug import sync_debug_mode
    from streamseg.model.panoptic_batch import MaskSizes, keep_queries
    from streamseg.model.panoptic_frames import PanopticSettings, device_table
    from streamseg.model.postprocess import class_logits_from_probs

    segmenter = _segmenter("cuda")
    image = _sample()
    raw = segmenter.segment_raw([image, image])  # type: ignore[attr-defined]
    settings = PanopticSettings(
        is_thing=segmenter._is_thing,  # type: ignore[attr-defined]
        object_mask_threshold=segmenter.config.object_mask_threshold,  # type: ignore[attr-defined]
        overlap_threshold=segmenter.config.overlap_threshold,  # type: ignore[attr-defined]
    )
    sizes = MaskSizes(raw["padded_sizes"][0], raw["image_sizes"][0], image.shape[:2])
    kept = keep_queries(class_logits_from_probs(raw["class_probs"]), settings.object_mask_threshold)
    counts = kept.count.tolist()  # the first read, outside the check
    assert max(counts) > 0
    torch.cuda.synchronize()
    with sync_debug_mode("error"):
        table = device_table(kept, counts, raw["mask_logits"], raw["embeddings"], sizes, settings)
    torch.cuda.synchronize()
    assert table["labels"].shape == (2, *image.shape[:2])


def test_tf32_turns_on_tensor_float_32_inside_its_block_only() -> None:
    from streamseg.model.precision import autocast

    torch.backends.cuda.matmul.allow_tf32 = False
    with autocast("cuda", "tf32"):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        product = torch.ones(64, 64, device="cuda") @ torch.ones(64, 64, device="cuda")
    assert product.dtype == torch.float32
    assert torch.backends.cuda.matmul.allow_tf32 is False


def test_code_stats_and_lookup_on_cuda_equal_the_cpu_runs() -> None:
    """model/code_stats.py: the accelerator path (scatters, gather) gives what the CPU path
    (row runs, numpy lookup) gives, without synchronising."""
    from streamseg.bench.sync_debug import sync_debug_mode
    from streamseg.model.code_stats import code_stats, lookup

    generator = torch.Generator().manual_seed(0)
    small = torch.randint(0, 9, (3, 27, 48), generator=generator, dtype=torch.uint8)
    code = small.repeat_interleave(40, 1).repeat_interleave(40, 2)  # 1080 x 1920 blocks
    table = torch.randint(0, 200, (3, 9), generator=generator, dtype=torch.uint8)
    want_stats, want_labels = code_stats(code, 9), lookup(table, code)
    on_device, table_on_device = code.cuda(), table.cuda()
    torch.cuda.synchronize()
    with sync_debug_mode("error"):
        stats = code_stats(on_device, 9)
        labels = lookup(table_on_device, on_device)
    torch.cuda.synchronize()
    for name in ("count", "y0", "y1", "x0", "x1"):
        assert torch.equal(getattr(stats, name).cpu(), getattr(want_stats, name)), name
    assert torch.equal(labels.cpu(), want_labels)


def test_sync_check_finds_a_read_and_passes_a_clean_loop() -> None:
    from streamseg.bench.sync_debug import check_syncs

    def reads() -> None:
        torch.ones(3, device="cuda").sum().item()

    def queues() -> None:
        (torch.ones(3, device="cuda") * 2).sum()

    found = check_syncs(reads, "cuda")
    assert found.checked and found.raised and found.warn_syncs and found.warn_syncs >= 1
    assert "RuntimeError" in (found.error or "")
    clean = check_syncs(queues, "cuda")
    assert clean.checked and not clean.raised and clean.warn_syncs == 0
    assert torch.cuda.get_sync_debug_mode() == 0  # restored


def test_capacity_bench_and_sync_debug_on_cuda() -> None:
    from streamseg.bench.capacity import capacity_stages
    from streamseg.bench.speed import BenchConfig, run_benchmark

    result = run_benchmark(
        BenchConfig(
            model="tiny-convnext",
            device="cuda",
            size=(64, 64),
            frames=2,
            batch_size=2,
            repeats=1,
            stages=capacity_stages(),
            sync_debug=True,
        )
    )
    assert result.device.startswith("cuda")
    assert result.capacity is not None and result.capacity["capacity_fps"] > 0
    assert result.sync_debug is not None and result.sync_debug["checked"]
    assert result.sync_debug["warn_syncs"] is not None


def test_gpu_workers_each_see_one_gpu() -> None:
    from streamseg.batch.cluster import cuda_device_count, local_gpu_ids, open_client

    gpus = local_gpu_ids("cuda")
    assert len(gpus) == torch.cuda.device_count()
    with open_client(gpus=gpus, dashboard=False) as client:
        client.wait_for_workers(len(gpus), timeout=120)
        counts = client.run(cuda_device_count)
    assert sorted(counts.values()) == [1] * len(gpus)
