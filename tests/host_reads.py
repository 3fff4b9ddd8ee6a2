"""Counting what would make a CUDA run wait for the device, on the CPU, so that CI (which has no
GPU) keeps the hot loop free of it. Two levels, since neither sees everything:
- Python calls that read a tensor on the host (`.item()`, `.tolist()`, `.cpu()`, `int(t)`,
  `if t:` ...), whose output size depends on the values (`nonzero`, `unique`, bool indexing),
  or that copy Python data to the device with a blocking copy (`torch.tensor(data, device=...)`,
  indexing by a Python list; pytorch/pytorch#120996); CPU tensors answer these without reaching
  torch's dispatcher, so only a function mode sees them;
- aten operators with a data-dependent output size, or a scalar read, called from anywhere (a
  library function, a kernel's Python decomposition): on CUDA each must copy a count back first.
torch's own check, `torch.cuda.set_sync_debug_mode("error")`, runs in tests/test_cuda.py and
`.ci/gpu.sh` where there is a GPU.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

# Python-level calls that read a tensor on the host (or, like bool indexing and bincount on
# CUDA, do so internally). `.numpy()` is not listed: it refuses accelerator tensors outright.
SYNCING_CALLS = frozenset(
    {
        "cpu",
        "item",
        "tolist",
        "nonzero",
        "argwhere",
        "__bool__",
        "__int__",
        "__float__",
        "__index__",
        "bincount",
        "unique",
        "unique_consecutive",
        "masked_select",
        "repeat_interleave",
    }
)
# aten operators whose output size depends on the values, or that read a scalar on the host.
SYNCING_OPS = frozenset(
    {
        "_local_scalar_dense",
        "nonzero",
        "nonzero_static",
        "masked_select",
        "masked_scatter",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "bincount",
        "histc",
        "repeat_interleave",
        "is_nonzero",
        "equal",
        "allclose",
        "_assert_async",
    }
)
_PACKAGE = str(Path(__file__).resolve().parents[1] / "streamseg")


def _bool_index(indices: Any) -> bool:
    """A bool or uint8 mask among an indexing call's indices (bool indexing calls `nonzero`)."""
    items = indices if isinstance(indices, (list, tuple)) else (indices,)
    return any(
        isinstance(item, torch.Tensor) and item.dtype in (torch.bool, torch.uint8) for item in items
    )


def _host_index(indices: Any) -> bool:
    """A Python list among an indexing call's indices: torch makes a host tensor of it, which
    a device tensor's indexing then copies over with a synchronising copy."""
    items = indices if isinstance(indices, tuple) else (indices,)
    return any(isinstance(item, list) for item in items)


def _place() -> str:
    """'model/x.py:12', the innermost frame of streamseg on the stack ('?' when none)."""
    ours = [f for f in traceback.extract_stack() if f.filename.startswith(_PACKAGE)]
    if not ours:
        return "?"
    return f"{Path(ours[-1].filename).relative_to(_PACKAGE)}:{ours[-1].lineno}"


class _Calls(TorchFunctionMode):
    def __init__(self, found: Counter[str]) -> None:
        super().__init__()
        self.found = found

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        indexing = name in ("__getitem__", "__setitem__")
        reads_index = indexing and (_bool_index(args[1]) or _host_index(args[1]))
        # A tensor made from Python data straight on a device: a blocking host-to-device copy,
        # which waits for the device's queue (torch.full or arange make one without a copy).
        from_host = name in ("tensor", "as_tensor") and kwargs.get("device") is not None
        # Written out as "cpu": a `torch.device` is the model's own device in these CPU runs.
        to_host = name == "to" and any(
            isinstance(a, str) and a.startswith("cpu") for a in (*args[1:], kwargs.get("device"))
        )
        if name in SYNCING_CALLS or reads_index or to_host or from_host:
            self.found[f"{name} at {_place()}"] += 1
        return func(*args, **kwargs)


class _Ops(TorchDispatchMode):
    def __init__(self, found: Counter[str]) -> None:
        super().__init__()
        self.found = found

    def __torch_dispatch__(
        self,
        func: Any,
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        name = func._schema.name.split("::")[-1]
        bool_index = name.startswith("index") and len(args) > 1 and _bool_index(args[1])
        if name in SYNCING_OPS or bool_index:
            self.found[f"aten.{name} at {_place()}"] += 1
        return func(*args, **(kwargs or {}))


class HostReads:
    """`with HostReads() as reads:` counts, inside the block, the Python calls (`reads.calls`)
    and the aten operators (`reads.ops`) that would synchronise a CUDA device, each as
    "name at file:line" -> count."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.ops: Counter[str] = Counter()
        self._modes = (_Calls(self.calls), _Ops(self.ops))

    def __enter__(self) -> HostReads:
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
