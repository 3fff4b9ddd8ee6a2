"""Shared pytest setup: the --runslow option and a small torch thread count.

Slow tests (minutes each) are skipped by default and run by `.ci/run` with --runslow.
Tests marked `cuda` are skipped where torch sees no CUDA device (`.ci/gpu.sh` runs them).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _skip_cuda_without_cuda(items)
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def _skip_cuda_without_cuda(items: list[pytest.Item]) -> None:
    """Skip `cuda`-marked tests when CUDA is not available (torch imported only if any)."""
    marked = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="cuda: no CUDA device here (.ci/gpu.sh runs these)")
    for item in marked:
        item.add_marker(skip_cuda)
