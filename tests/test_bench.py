"""`streamseg bench`: one tiny end-to-end run produces every field with sane types and values
(no timing thresholds: speed lives in docs/BENCHMARKS.md), and the helpers are exact."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch

from streamseg.bench.speed import (
    STAGES,
    BenchConfig,
    count_gflops,
    measure,
    parse_size,
    run_benchmark,
    stage_result,
)
from streamseg.cli import main
from streamseg.errors import UserError


def test_bench_cli_json_has_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["bench", "--model", "tiny-convnext", "--size", "64x64", "--frames", "3"]
        + ["--batch-size", "2", "--repeats", "1", "--device", "cpu", "--json"]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "tiny-convnext-random-seed0"
    assert result["device"] == "cpu" and result["precision"] == "fp32"
    assert result["batch_size"] == 2 and result["frame_size"] == [64, 64]
    assert result["num_classes"] == 5
    assert sorted(result["stages"]) == sorted(STAGES)
    for name, stage in result["stages"].items():
        assert stage["frames"] == 3, name
        assert len(stage["repeats"]) == 1 and stage["seconds"] == stage["repeats"][0] > 0
        assert stage["fps"] == pytest.approx(3 / stage["seconds"])
        assert stage["seconds_per_frame"] == pytest.approx(stage["seconds"] / 3)
    # the tiny preset's parameters: the CLIP is frozen, the head is trained
    assert result["params_frozen_clip"] > 0 and result["params_trained"] > 0
    assert isinstance(result["params_frozen_clip"], int)
    assert result["gflops_per_frame"] > 0 and math.isfinite(result["gflops_per_frame"])
    assert result["forward_seconds_per_frame"] > 0
    achieved = result["gflops_per_frame"] / result["forward_seconds_per_frame"]
    assert result["forward_gflops_per_second"] == pytest.approx(achieved)
    assert result["matmul_gflops_per_second"] > 0
    assert result["forward_share_of_matmul"] == pytest.approx(
        achieved / result["matmul_gflops_per_second"]
    )
    overhead = result["stages"]["end_to_end"]["seconds"] / result["stages"]["model"]["seconds"]
    assert result["pipeline_overhead"] == pytest.approx(overhead)
    assert result["peak_rss_mb"] > 50  # torch alone is bigger than that
    assert len(result["load_average"]) == 3 and result["threads"] >= 1
    # live mode: every received frame is either segmented or dropped before inference
    live = result["live"]
    assert live["size"] == [64, 64] and live["input_fps"] == 25.0
    assert live["processed"] >= 1 and live["processed"] + live["dropped"] == live["received"]
    assert live["processed_fps"] > 0 and live["seconds"] > 0
    assert live["latency_max"] >= live["latency_mean"] > 0


def _tiny_bench(**settings: Any) -> Any:
    """One quick bench of tiny-convnext on the CPU, one thread, batch 1, one repeat."""
    base = dict(model="tiny-convnext", batch_size=1, device="cpu", repeats=1, threads=1)
    return run_benchmark(BenchConfig(**{**base, **settings}))


def test_bench_subset_of_stages_skips_the_others() -> None:
    result = _tiny_bench(size=(64, 96), frames=2, stages=("decode", "track"))
    assert result.threads == 1
    assert sorted(result.stages) == ["decode", "track"]
    assert result.pipeline_overhead is None
    assert result.frame_size == (64, 96) and result.input_size == (128, 192)  # short edge 128


def test_bf16_bench_counts_the_fp32_flops() -> None:
    """--precision bf16: same FLOP count as fp32 (counted in fp32), bf16 matmul as the limit."""
    results = {
        precision: _tiny_bench(size=(64, 64), frames=1, stages=("model",), precision=precision)
        for precision in ("fp32", "bf16")
    }
    assert results["bf16"].precision == "bf16"
    assert results["bf16"].gflops_per_frame == pytest.approx(results["fp32"].gflops_per_frame)
    assert results["bf16"].gflops_per_frame > 0
    assert results["bf16"].matmul_gflops_per_second > 0


def test_count_gflops_of_a_matmul_is_exact() -> None:
    a, b = torch.ones(8, 16), torch.ones(16, 4)
    assert count_gflops(lambda: a @ b) == pytest.approx(2 * 8 * 16 * 4 / 1e9)
    layer = torch.nn.Linear(16, 4)  # parameters that require grad, inside inference mode
    with torch.inference_mode():
        flops = count_gflops(lambda: layer(a), layer)
    assert flops == pytest.approx(2 * 8 * 16 * 4 / 1e9)
    assert layer.weight.requires_grad


def test_measure_and_median() -> None:
    calls: list[int] = []
    seconds = measure(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(seconds) == 3
    stage = stage_result(10, [4.0, 1.0, 2.0])
    assert stage.seconds == 2.0 and stage.fps == 5.0 and stage.seconds_per_frame == 0.2


def test_bad_input_is_a_user_error() -> None:
    assert parse_size("800x1066") == (800, 1066)
    for text in ("800", "801x1066", "axb", "16x16"):
        with pytest.raises(UserError):
            parse_size(text)
    with pytest.raises(UserError, match="stages"):
        run_benchmark(BenchConfig(stages=("decode", "nope")))
    with pytest.raises(UserError, match="threads"):
        run_benchmark(BenchConfig(threads=0))
    with pytest.raises(UserError, match="precision"):
        run_benchmark(BenchConfig(precision="fp8"))
    for rate in (0.0, -5.0, 1000.0):
        with pytest.raises(UserError, match="live-fps"):
            run_benchmark(BenchConfig(live_fps=rate))


def test_live_fps_sets_the_live_streams_rate(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["bench", "--model", "tiny-convnext", "--size", "64x64", "--frames", "1", "--repeats"]
        + ["1", "--device", "cpu", "--threads", "1", "--stages", "live", "--live-fps", "10"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "live: 10 fps input ->" in out
    received = int(out.split(" frames dropped")[0].rsplit(" of ", 1)[1])
    assert 30 <= received <= 40  # 4 s at 10 fps (the bench's LIVE_SECONDS), not at 25


def test_optimized_segment_equals_the_unoptimized_official_path() -> None:
    """`Segmenter.segment` (batched, inference mode, only surviving queries upsampled, chunk by
    chunk) gives the same fp32 panoptic result as the official order on the same network
    outputs: every query's mask upsampled to the padded size, cropped, resized to the output
    size, then `panoptic_inference` over all queries."""
    import warnings

    import numpy as np

    from streamseg.model.postprocess import (
        class_logits_from_probs,
        panoptic_inference,
        resize_mask_logits,
    )
    from streamseg.model.segmenter import Segmenter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        seg = Segmenter.from_pretrained("tiny-convnext", device="cpu")
    seg.set_vocabulary("person,car,dog,tree,sky", cache_dir=None)
    seg.set_test_resize(0)  # frames at their own size: 60x90 pads to 64x96
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (60, 90, 3), dtype=np.uint8) for _ in range(2)]
    output_size = (45, 71)
    fast = seg.segment(frames, output_size=output_size)
    raw = seg.segment_raw(frames)
    compared = 0
    for i, result in enumerate(fast):
        full = resize_mask_logits(
            raw["mask_logits"][i], raw["padded_sizes"][i], raw["image_sizes"][i], output_size
        )
        want_map, want_segments = panoptic_inference(
            class_logits_from_probs(raw["class_probs"][i]), full, seg._is_thing, 0.0, 0.8
        )
        np.testing.assert_array_equal(result.panoptic, want_map.numpy())
        assert [s.id for s in result.segments] == [s.id for s in want_segments]
        assert [s.class_id for s in result.segments] == [s.class_id for s in want_segments]
        for got, want in zip(result.segments, want_segments, strict=True):
            assert got.score == pytest.approx(want.score, abs=1e-6)
        compared += len(want_segments)
    assert compared > 0  # a real comparison, not two empty maps
