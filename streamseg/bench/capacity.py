"""Capacity mode of `streamseg bench`: how fast the pipeline runs when the network costs nothing.

One batch of real model outputs is recorded (bench/replay.py) and replayed in place of the
network through the unchanged `run_video` path: decode (at the model's input size), filter,
track, store write and, with an overlay, source-size decoding, drawing and H.264 encoding.
The replay stands in for the segmenter's whole call, network and panoptic post-processing;
its frames per second are the ceiling an accelerator can be fed at. Next to the real model's
rate (same run) they say which of the two bounds a real run:

    end to end  ~=  1 / (1 / model + 1 / capacity)   when nothing overlaps (one CPU busy)
    end to end  ~=  min(model, capacity)              when decode / store threads overlap the
                                                      device (a GPU)

Stage names (`--stages`, and the keys of `stages` in the JSON): `end_to_end_overlay` (the real
model, with an overlay), `capacity` and `capacity_overlay` (replayed); `live_capacity` is the
live bench (bench/live.py) with the replay.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

END_TO_END_OVERLAY = "end_to_end_overlay"
CAPACITY = "capacity"
CAPACITY_OVERLAY = "capacity_overlay"
LIVE_CAPACITY = "live_capacity"
CAPACITY_STAGES = (END_TO_END_OVERLAY, CAPACITY, CAPACITY_OVERLAY)
# Stages that need a recorded batch.
REPLAY_STAGES = (CAPACITY, CAPACITY_OVERLAY, LIVE_CAPACITY)


def capacity_stages(live: bool = False) -> tuple[str, ...]:
    """What `--capacity` runs: the real model end to end without and with an overlay, the same
    replayed; with `--live` also the live bench with the model and with the replay."""
    stages: tuple[str, ...] = ("end_to_end", *CAPACITY_STAGES)
    return (*stages, "live", LIVE_CAPACITY) if live else stages


def video_run(
    video: Path,
    folder: Path,
    *,
    segmenter: Any,
    vocabulary: Any,
    config: Any,
    overlay: bool,
    prefix: str,
) -> Callable[[], Any]:
    """A function that runs `run_video` on `video` into a new store (and overlay) in `folder`
    on each call: one timed repeat of an end-to-end stage."""
    from streamseg.video.pipeline import run_video

    runs = itertools.count()

    def run() -> Any:
        index = next(runs)
        return run_video(
            video,
            folder / f"{prefix}-{index}.zarr",
            config=config,
            segmenter=segmenter,
            vocabulary=vocabulary,
            overlay=folder / f"{prefix}-{index}.mp4" if overlay else None,
        )

    return run


@dataclass(frozen=True)
class CapacitySummary:
    """The capacity report (`capacity` in the JSON); rates in frames per second, None when
    that stage did not run.

    Attributes:
        recorded_frames: frames of the recorded batch (the batch size).
        segments_per_frame: segments of each recorded frame (what track / store / render see).
        forward_fps: the real network's forward only (`segment_raw`), batch of batch size.
        model_fps: the real segmenter's whole call (forward + panoptic post-processing at the
            frame size), what the replay stands in for.
        end_to_end_fps, end_to_end_overlay_fps: `run_video` with the real model.
        capacity_fps, capacity_overlay_fps: `run_video` with the replay: the pipeline ceiling.
        live_fps, live_capacity_fps: live bench (input at `--live-fps`) with the model / replay.
        bound: "model" when the model (forward + post-processing; the forward alone if that
            was not measured) is slower than the pipeline ceiling (no overlay), else
            "pipeline".
    """

    recorded_frames: int
    segments_per_frame: list[int]
    forward_fps: float
    model_fps: float | None
    end_to_end_fps: float | None
    end_to_end_overlay_fps: float | None
    capacity_fps: float | None
    capacity_overlay_fps: float | None
    live_fps: float | None
    live_capacity_fps: float | None
    bound: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    recorded: list[Any],
    forward_fps: float,
    stage_fps: Mapping[str, float],
    live: Mapping[str, Any] | None,
    live_capacity: Mapping[str, Any] | None,
) -> CapacitySummary:
    """The `CapacitySummary` of a run.

    Args:
        recorded: the recorded `FrameSegmentation`s.
        stage_fps: stage name -> fps of the stages that ran.
        live, live_capacity: `LiveRate.to_dict()` of the live runs (None if not run).
    """
    capacity = stage_fps.get(CAPACITY)
    model = stage_fps.get("model", forward_fps)
    bound = None
    if capacity is not None:
        bound = "model" if model < capacity else "pipeline"
    return CapacitySummary(
        recorded_frames=len(recorded),
        segments_per_frame=[len(s.segments) for s in recorded],
        forward_fps=forward_fps,
        model_fps=stage_fps.get("model"),
        end_to_end_fps=stage_fps.get("end_to_end"),
        end_to_end_overlay_fps=stage_fps.get(END_TO_END_OVERLAY),
        capacity_fps=capacity,
        capacity_overlay_fps=stage_fps.get(CAPACITY_OVERLAY),
        live_fps=float(live["processed_fps"]) if live else None,
        live_capacity_fps=float(live_capacity["processed_fps"]) if live_capacity else None,
        bound=bound,
    )
