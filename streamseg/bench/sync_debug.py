"""Host synchronisations of a hot loop, found by `torch.cuda.set_sync_debug_mode`.

A CUDA device is kept busy only while the host queues work ahead of it; every operation that
waits for the device (`.item()`, `.tolist()`, `nonzero`, a copy to pageable host memory,
`torch.cuda.synchronize`) drains that queue. `check_syncs` runs a function twice:
- once in mode "warn", counting the synchronising calls and where in streamseg they happen;
- once in mode "error", which turns the first of them into a RuntimeError (the brief's
  test: a loop without any synchronisation raises nothing).
The mode is process-wide; it is restored afterwards whatever happens. On a device that is not
CUDA there is nothing to check and the result says so.
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Frames of these files are reported as the place of a synchronisation.
_PACKAGE = str(Path(__file__).resolve().parents[1])
# torch's warning text for a synchronising call in mode "warn".
_SYNC_WARNING = "synchronizing"


@dataclass(frozen=True)
class SyncCheck:
    """What `check_syncs` found.

    Attributes:
        checked: False when the device is not CUDA (then nothing else is set).
        raised: mode "error" raised (a synchronisation inside the loop).
        error: its message and innermost streamseg frame ("file:line in function").
        warn_syncs: synchronising calls counted in mode "warn".
        places: "file:line" -> count, the innermost streamseg frame of each warning.
        error_seconds, warn_seconds: wall time of each run (mode "error" stops early when it
            raises).
        note: why nothing was checked.
    """

    checked: bool
    raised: bool = False
    error: str | None = None
    warn_syncs: int | None = None
    places: dict[str, int] = field(default_factory=dict)
    error_seconds: float | None = None
    warn_seconds: float | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_syncs(function: Callable[[], Any], device: Any) -> SyncCheck:
    """Run `function` under sync debug modes "warn" then "error" on a CUDA `device`."""
    import torch

    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return SyncCheck(checked=False, note=f"{device}: not a CUDA device, nothing to check")
    torch.cuda.synchronize(device)  # work queued before is not the loop's
    places: Counter[str] = Counter()
    began = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with sync_debug_mode("warn"):
            function()
        torch.cuda.synchronize(device)
    warn_seconds = time.perf_counter() - began
    syncs = [w for w in caught if _SYNC_WARNING in str(w.message)]
    for warning in syncs:
        places[_place(warning.filename, warning.lineno)] += 1
    error = None
    began = time.perf_counter()
    try:
        with sync_debug_mode("error"):
            function()
    except Exception as exc:  # the sync error is a RuntimeError; report any other failure too
        error = _describe(exc)
    torch.cuda.synchronize(device)
    return SyncCheck(
        checked=True,
        raised=error is not None,
        error=error,
        warn_syncs=len(syncs),
        places=dict(places.most_common()),
        error_seconds=time.perf_counter() - began,
        warn_seconds=warn_seconds,
    )


@contextmanager
def sync_debug_mode(mode: str) -> Iterator[None]:
    """`torch.cuda.set_sync_debug_mode(mode)` inside the block, the previous mode after."""
    import torch

    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def _place(filename: str, lineno: int) -> str:
    """'streamseg/model/x.py:12' for a file of the package, else the file's name and line."""
    path = Path(filename)
    try:
        return f"{path.resolve().relative_to(Path(_PACKAGE).parent)}:{lineno}"
    except ValueError:
        return f"{path.name}:{lineno}"


def _describe(error: BaseException) -> str:
    """First line of the error, and the innermost frame of the package in its traceback."""
    lines = str(error).strip().splitlines()
    message = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    ours = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(_PACKAGE)]
    if ours:
        frame = ours[-1]
        message += f" (at {_place(frame.filename, frame.lineno or 0)} in {frame.name})"
    return message
