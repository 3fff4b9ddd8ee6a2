"""`--precision`: the autocast context every model call runs in (run, live and bench)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from streamseg.errors import UserError

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
BENCH_PRECISIONS = ("fp32", "tf32", "bf16")  # fp16 autocast is tested, not benchmarked


def check_precision(precision: str, allowed: Sequence[str] = PRECISIONS) -> None:
    """A UserError unless `precision` is one of `allowed` ("must be fp32, bf16 or fp16")."""
    if precision not in allowed:
        choices = " or ".join(filter(None, (", ".join(allowed[:-1]), allowed[-1])))
        raise UserError(f"--precision: must be {choices}, got {precision!r}")


def autocast(device: Any, precision: str) -> contextlib.AbstractContextManager[Any]:
    """`torch.autocast` to bf16 / fp16 on `device`'s type; no context for fp32.

    tf32: fp32 tensors with TensorFloat-32 matrix products and convolutions on CUDA (10-bit
    mantissa products, fp32 sums; what cuDNN convolutions already use by default there);
    elsewhere, where no TF32 exists, the same as fp32.

    Args:
        device: a torch device or its name ("cpu", "cuda:0", ...).
        precision: fp32 | tf32 | bf16 | fp16.
    Raises:
        UserError: another precision.
    """
    check_precision(precision)
    if precision == "fp32":
        # No torch import: stand-in segmenters of the tests run without it.
        return contextlib.nullcontext()
    import torch

    if precision == "tf32":
        if torch.device(device).type != "cuda":
            return contextlib.nullcontext()
        return _tensor_float_32()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@contextlib.contextmanager
def _tensor_float_32() -> Iterator[None]:
    """TF32 matrix products and convolutions on CUDA inside the block; the previous settings
    after (they are process-wide)."""
    import torch

    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
