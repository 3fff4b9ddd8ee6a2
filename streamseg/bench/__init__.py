"""Measurement: the speed bench (`speed`), the live bench (`live`) and the quality harness
(`quality`, `streamseg measure`).

A package face: `from streamseg.bench import run_benchmark, BenchConfig` keeps working.
"""

from streamseg.bench.speed import (
    BenchConfig,
    BenchResult,
    StageResult,
    count_gflops,
    matmul_gflops,
    measure,
    parse_size,
    run_benchmark,
)

__all__ = [
    "BenchConfig",
    "BenchResult",
    "StageResult",
    "count_gflops",
    "matmul_gflops",
    "measure",
    "parse_size",
    "run_benchmark",
]
