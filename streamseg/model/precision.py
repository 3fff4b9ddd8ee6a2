"""`--precision`: the autocast context every model call runs in (run, live and bench)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from streamseg.errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")


def check_precision(precision: str, allowed: Sequence[str] = PRECISIONS) -> None:
    """A UserError unless `precision` is one of `allowed` ("must be fp32, bf16 or fp16")."""
    if precision not in allowed:
        choices = " or ".join(filter(None, (", ".join(allowed[:-1]), allowed[-1])))
        raise UserError(f"--precision: must be {choices}, got {precision!r}")


def autocast(device: Any, precision: str) -> contextlib.AbstractContextManager[Any]:
    """`torch.autocast` to bf16 / fp16 on `device`'s type; no context for fp32.

    Args:
        device: a torch device or its name ("cpu", "cuda:0", ...).
        precision: fp32 | bf16 | fp16.
    Raises:
        UserError: another precision.
    """
    check_precision(precision)
    if precision == "fp32":
        # No torch import: stand-in segmenters of the tests run without it.
        return contextlib.nullcontext()
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
