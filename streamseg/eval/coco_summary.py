"""The 12 numbers of a COCO-style summary (pycocotools' `COCOeval.summarize()` and the
youtube-vis API's copy of it), in their order."""

from __future__ import annotations

STAT_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)  # fmt: skip
