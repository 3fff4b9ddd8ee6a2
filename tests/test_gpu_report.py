"""`.ci/gpu.sh` and its report, without a GPU: the script parses, its dry run prints every step
and writes a "pending" report, and the report reads bench JSON (and failed benches) exactly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamseg.bench.gpu_report import RESULTS_JSON, RESULTS_MD, bench_row, main, write_report

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "gpu.sh"

BENCH = {
    "model": "fcclip-convnext-large-random-seed0",
    "device": "cuda:0",
    "device_name": "NVIDIA H100",
    "precision": "bf16",
    "frame_size": [1080, 1920],
    "input_size": [800, 1422],
    "batch_size": 4,
    "stages": {
        "end_to_end": {"fps": 20.0},
        "end_to_end_overlay": {"fps": 10.0},
        "capacity": {"fps": 40.0},
        "capacity_overlay": {"fps": 12.5},
    },
    "forward_seconds_per_frame": 0.04,
    "gflops_per_frame": 2000.0,
    "forward_gflops_per_second": 50000.0,
    "live": {"processed_fps": 24.0},
    "live_capacity": {"processed_fps": 25.0},
    "capacity": {"bound": "model"},
    "sync_debug": {
        "checked": True,
        "raised": True,
        "error": "RuntimeError: called a synchronizing CUDA operation (at x.py:3 in f)",
        "warn_syncs": 8,
        "places": {"streamseg/model/panoptic_frames.py:66": 4},
    },
    "torch_version": "2.11.0+cu128",
}


def test_script_parses_and_dry_runs(tmp_path: Path) -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "PRECISIONS": "fp32 bf16"}
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    shown = [line for line in done.stderr.splitlines() if line.startswith("+ ")]
    pytest_line = next(line for line in shown if "pytest -q -m cuda" in line)
    # Every test that needs CUDA is marked `cuda`: a test skipped by its own CUDA check would
    # be run neither here nor by the script.
    tests = sorted((SCRIPT.parents[1] / "tests").glob("test_*.py"))
    own_checks = [
        f"{path.name}:{number}"
        for path in tests
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"skipif\(\s*not\s+torch\.cuda\.is_available", line)
    ]
    assert own_checks == []
    marked = {f"tests/{path.name}" for path in tests if "pytest.mark.cuda" in path.read_text()}
    assert {"tests/test_cuda.py", "tests/test_postprocess_batched.py"} <= marked
    assert marked == {word for word in pytest_line.split() if word.startswith("tests/")}
    for precision in ("fp32", "bf16"):
        assert any(
            "bench --model fcclip-convnext-large --size 1080x1920 --device cuda" in line
            and f"--precision {precision}" in line
            and "--capacity --live --sync-debug --json" in line
            for line in shown
        ), precision
        assert any(
            "streamseg.bench.memory_format --model fcclip-convnext-large" in line
            and f"--precision {precision}" in line
            for line in shown
        ), precision
    # nothing ran: only the report of nothing, saying so
    assert sorted(p.name for p in out.iterdir()) == [RESULTS_JSON, RESULTS_MD]
    assert "pending" in (out / RESULTS_MD).read_text()


def test_script_refuses_bad_usage(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    for args in ([], ["--nope", str(tmp_path)], ["--wheels", str(tmp_path / "no"), str(tmp_path)]):
        done = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True)
        assert done.returncode == 2, args


def test_report_of_benches_and_a_failed_one(tmp_path: Path) -> None:
    (tmp_path / "bench-a-bf16.json").write_text(json.dumps(BENCH))
    (tmp_path / "bench-b-fp32.json").write_text("")  # the bench died before printing
    (tmp_path / "bench-b-fp32.log").write_text("bench: building\nOutOfMemoryError: CUDA\n")
    (tmp_path / "steps.tsv").write_text("pytest-cuda\t0\t61\nbench-b-fp32\t1\t30\n")
    (tmp_path / "pytest-cuda.txt").write_text("......\n6 passed in 60.00s\n")
    assert main([str(tmp_path)]) == 0
    report = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert report["failed_steps"] == ["bench-b-fp32"]
    assert report["pytest_cuda"] == "6 passed in 60.00s"
    good, bad = report["benches"]
    assert good["ok"] and good["forward_fps"] == 25.0 and good["capacity_fps"] == 40.0
    assert good["end_to_end_overlay_fps"] == 10.0 and good["live_capacity_fps"] == 25.0
    assert good["sync_raised"] and good["warn_syncs"] == 8 and good["model_fps"] is None
    assert not bad["ok"] and bad["error"] == "OutOfMemoryError: CUDA"
    table = (tmp_path / RESULTS_MD).read_text()
    assert "NVIDIA H100 (cuda:0)" in table and "| 40.00 |" in table and "failed: OutOf" in table
    assert "panoptic_frames.py:66` x4" in table


def test_report_of_the_memory_format_comparison(tmp_path: Path) -> None:
    result = {
        "precision": "bf16",
        "contiguous_seconds_per_frame": 0.05,
        "channels_last_seconds_per_frame": 0.04,
        "speedup": 1.25,
        "max_abs_diff_class_probs": 0.001,
        "max_abs_diff_mask_logits": 0.02,
    }
    (tmp_path / "memory-format-bf16.json").write_text(json.dumps(result))
    (tmp_path / "memory-format-fp32.json").write_text("{")  # cut off
    report = write_report(tmp_path)
    good, bad = report["memory_formats"]
    assert good["speedup"] == 1.25 and "error" in bad
    table = (tmp_path / RESULTS_MD).read_text()
    assert "| memory-format-bf16.json | bf16 | 0.0500 | 0.0400 | 1.25 | 0.02 |" in table
    assert "| memory-format-fp32.json | failed:" in table


def test_memory_format_comparison_runs_on_the_cpu(tmp_path: Path) -> None:
    from streamseg.bench.memory_format import main as compare

    out = tmp_path / "formats.json"
    assert compare(["--size", "64x96", "--frames", "1", "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["batch_size"] == 1 and result["precision"] == "fp32"
    assert result["speedup"] == pytest.approx(
        result["contiguous_seconds_per_frame"] / result["channels_last_seconds_per_frame"]
    )
    # The same network in another memory layout: float rounding apart, the same outputs.
    assert result["max_abs_diff_class_probs"] < 1e-4
    assert result["max_abs_diff_mask_logits"] < 1e-2


def test_report_row_of_missing_parts() -> None:
    row = bench_row(Path("/nonexistent/bench-x.json"))
    assert not row.ok and row.error
    assert main(["/nonexistent"]) == 2


def test_report_of_an_empty_folder(tmp_path: Path) -> None:
    report = write_report(tmp_path)
    assert report["benches"] == [] and report["steps"] == []
