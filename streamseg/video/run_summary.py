"""What a run did: `RunSummary` (every run) and `LiveSummary` (live sources)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunSummary:
    """What a run did (`--json` prints `to_dict()`)."""

    source: str
    store: str
    status: str  # "done" | "already done" (live: "done" | "stopped")
    frames: int  # frames in the store
    resumed_from: int  # frames committed before this run started
    segments: int
    tracks: int
    seconds: float
    fps: float  # frames segmented per second in this run (model loading not counted)
    label_size: tuple[int, int]
    corrupt_packets: int = 0
    corrupt_frames: int = 0
    overlay: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["label_size"] = list(self.label_size)
        return data


@dataclass
class LiveSummary(RunSummary):
    """`RunSummary` plus what only a live run has."""

    received: int = 0  # frames decoded from the source
    dropped: int = 0  # frames dropped before inference (too old)
    connects: int = 0  # connections made (1 + reconnects)
    stores: list[str] = field(default_factory=list)  # every store written (rollover)
    latency_max: float = 0.0  # seconds from a frame's arrival to the end of its segmentation
    latency_mean: float = 0.0
    ended: str = ""  # "end of stream", "interrupted", "max frames", or the error
