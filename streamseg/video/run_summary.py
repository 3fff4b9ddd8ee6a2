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
    decoder_errors: int = 0  # error messages FFmpeg logged while decoding the source
    gaps: int = 0  # jumps in the source's frame times (frames lost to damage)
    still_image: bool = False  # the source was one picture
    damage: str | None = None  # the one line that says the source is damaged (None: intact)
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


def decode_record_lines(record: dict[str, Any]) -> list[str]:
    """What a store's decode record says about its source, as lines for `streamseg info`
    (none for an intact video)."""
    lines = []
    if record.get("damaged"):
        gaps = int(record.get("gaps", 0))
        where = ""
        if gaps:
            where = (
                f" (longest {float(record.get('longest_gap', 0.0)):.1f} s"
                f" at {float(record.get('longest_gap_at', 0.0)):.1f} s)"
            )
        lines.append(
            f"damaged input: {int(record.get('decoder_errors', 0))} decoder errors, "
            f"{gaps} gaps{where}, {int(record.get('corrupt_packets', 0))} corrupt packets"
            f"{', cut short' if record.get('truncated') else ''}"
            "; frames may be missing or corrupted"
        )
        lines.extend(f"  {sample}" for sample in record.get("error_samples") or [])
    if record.get("still_image"):
        lines.append("still image: the source is one picture, processed as one frame")
    return lines
