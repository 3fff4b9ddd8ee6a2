"""`streamseg tracking`: the tracker on shapes-world videos with exact track ground truth.

For each detection source (`oracle`, `model`; bench/tracking_data.py) and each variant
(plain, stride 2 and 4, live-like drops, long occlusion, camera cuts, same-class crowd), every
tracker configuration given runs over the same detections, and is scored with
- `streamseg.eval.video.VideoEvaluation` (VPQ by window over processed frames, STQ, AQ, SQ:
  the evaluator of `streamseg eval video` and `streamseg measure`), and
- `bench/tracking_metrics.IdentityMetrics` (IDF1, identity switches, fragmentations, tracks
  crossing a cut).
The tracker's own cost (`Tracker.step`, reading the label map included) is timed per frame on
these videos and on their oracle label maps scaled to 1080p.

The tracker from before issue 18 (`before`) reads its detections "unmarked" (the constant
vector of an empty CLIP pooling where the appearance is unknown, as the model gave them then);
the others read them "marked" (zero rows there, as the model gives them now): each is scored
on the detections it was built for (bench/tracking_data.py `Detections`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.bench.tracking_data import (
    VARIANTS,
    Detections,
    TrackingVideo,
    category_maps,
    model_detections,
    oracle_detections,
    processed_frames,
    render_kind,
)
from streamseg.bench.tracking_metrics import IdentityMetrics
from streamseg.config import TrackerConfig
from streamseg.errors import UserError
from streamseg.model.outputs import FrameSegmentation
from streamseg.video.track import LEFTOVERS_TRACKER, LEGACY_TRACKER, Tracker

SOURCES = ("oracle", "model")
FULL_HD = (1080, 1920)
UNMARKED_TRACKERS = ("before",)  # trackers that read unknown appearance as the old constant


@dataclass(frozen=True)
class TrackingBenchSettings:
    """What the benchmark runs."""

    videos: int = 16  # videos per scene kind (seeds seed .. seed + videos - 1)
    frames: int = 96  # frames per video
    size: int = 256  # square frame side in pixels
    seed: int = 200000  # first seed (the tracker was tuned on seeds 300000..)
    fps: float = 12.0  # the videos' frame rate (frame time = index / fps), as `streamseg synth`
    variants: tuple[str, ...] = tuple(VARIANTS)
    sources: tuple[str, ...] = SOURCES
    windows: tuple[int, ...] = (1, 2, 4, 6, 8)  # VPQ window lengths in processed frames
    cost_frames: int = 48  # frames of one video timed at 1080p (0: no 1080p timing)
    batch_size: int = 8  # frames per model call


@dataclass
class _Scores:
    evaluation: Any
    identity: IdentityMetrics = field(default_factory=IdentityMetrics)
    seconds: float = 0.0
    steps: int = 0


def compared_trackers() -> dict[str, TrackerConfig]:
    """The report's trackers: the one before issue 18, today's default, and the default with
    round 4's leftover stages (not the default: docs/TRACKING.md)."""
    return {"before": LEGACY_TRACKER, "default": TrackerConfig(), "leftovers": LEFTOVERS_TRACKER}


def check_settings(settings: TrackingBenchSettings) -> None:
    """Raises UserError on settings the benchmark cannot run."""
    unknown = [v for v in settings.variants if v not in VARIANTS]
    if unknown:
        raise UserError(f"--variants {','.join(unknown)}: not among {', '.join(VARIANTS)}")
    bad = [s for s in settings.sources if s not in SOURCES]
    if bad or not settings.sources:
        raise UserError(f"--sources: each of {', '.join(SOURCES)}, got {list(settings.sources)}")
    if settings.videos < 1 or settings.frames < 8 or settings.size < 32:
        raise UserError("--videos >= 1, --frames >= 8 and --size >= 32 are needed")
    if settings.fps <= 0:
        raise UserError(f"--fps {settings.fps}: must be positive")


def shapes_category_table() -> dict[int, dict[str, Any]]:
    """{category id: {"id", "name", "isthing"}} of the shapes world (the evaluator's input)."""
    from streamseg.synthetic.categories import shapes_categories

    return {
        c.id: {"id": c.id, "name": c.name, "isthing": int(c.isthing)} for c in shapes_categories()
    }


def run_tracking_bench(
    settings: TrackingBenchSettings,
    trackers: Mapping[str, TrackerConfig],
    segmenter: Any = None,
    unmarked: Collection[str] = UNMARKED_TRACKERS,
) -> dict[str, Any]:
    """Score every tracker on every (source, variant).

    Args:
        trackers: {name: config}, run over the same segments.
        unmarked: names of trackers given the "unmarked" form of the detections (the constant
            vector for unknown appearance); the others get the "marked" form (zero rows).
        segmenter: a `Segmenter` with the shapes vocabulary; needed for the `model` source and
            for the oracle's embeddings (without one the oracle has no embeddings).
    Returns:
        {"settings", "trackers": {name: config dict}, "detections": {name: "marked" or
        "unmarked"}, "results": {source: {variant: {tracker: scores}}}, "cost_1080p":
        {tracker: ms per frame}, "seconds"}.
    """
    from streamseg.eval.video import VideoEvaluation
    from streamseg.model.vocab import parse_vocab

    check_settings(settings)
    if "model" in settings.sources and segmenter is None:
        raise UserError("the model source needs a model")
    began = time.monotonic()
    vocabulary = segmenter.vocabulary if segmenter is not None else parse_vocab("shapes")
    category_of, class_of = category_maps(vocabulary)
    categories = shapes_category_table()
    scores = {
        (source, variant, name): _Scores(VideoEvaluation(categories, settings.windows))
        for source in settings.sources
        for variant in settings.variants
        for name in trackers
    }
    cost_sample: Detections | None = None
    kinds = dict.fromkeys(VARIANTS[v] for v in settings.variants)
    for kind in kinds:
        variants = [v for v in settings.variants if VARIANTS[v] == kind]
        for number in range(settings.videos):
            seed = settings.seed + number
            video = render_kind(kind, seed, settings.frames, settings.size, settings.fps)
            for source in settings.sources:
                if source == "model":
                    detections = model_detections(segmenter, video.scenes, settings.batch_size)
                else:
                    detections = oracle_detections(
                        video.scenes, class_of, segmenter, settings.batch_size
                    )
                    if cost_sample is None:
                        cost_sample = Detections(
                            detections.marked[: settings.cost_frames],
                            detections.unmarked[: settings.cost_frames],
                        )
                for variant in variants:
                    frames = processed_frames(variant, len(video.scenes), seed)
                    for name, config in trackers.items():
                        _score_video(
                            scores[(source, variant, name)],
                            video,
                            detections.form(name not in unmarked),
                            frames,
                            config,
                            settings.fps,
                            category_of,
                            categories,
                        )
    results: dict[str, Any] = {}
    for (source, variant, name), score in scores.items():
        results.setdefault(source, {}).setdefault(variant, {})[name] = _summary(score)
    cost = {}
    if settings.cost_frames > 0 and cost_sample is not None and cost_sample.marked:
        scaled = {
            marked: [scale_segmentation(d, FULL_HD) for d in cost_sample.form(marked)]
            for marked in (True, False)
        }
        cost = {
            name: _time_tracker(scaled[name not in unmarked], config, settings.fps)
            for name, config in trackers.items()
        }
    return {
        "settings": {
            **asdict(settings),
            "seeds": [settings.seed, settings.seed + settings.videos - 1],
            "model": None if segmenter is None else segmenter.model_id,
        },
        "trackers": {name: asdict(config) for name, config in trackers.items()},
        "detections": {name: "unmarked" if name in unmarked else "marked" for name in trackers},
        "results": results,
        "cost_1080p_ms": cost,
        "seconds": round(time.monotonic() - began, 1),
    }


def _score_video(
    score: _Scores,
    video: TrackingVideo,
    detections: Sequence[FrameSegmentation],
    frames: Sequence[int],
    config: TrackerConfig,
    fps: float,
    category_of: Sequence[int],
    categories: Mapping[int, Mapping[str, Any]],
) -> None:
    tracker = Tracker(config)
    score.evaluation.start_video(video.name)
    score.identity.start_video(video.cuts)
    for index in frames:
        scene = video.scenes[index]
        began = time.perf_counter()
        result = tracker.step(index, detections[index], time=index / fps)
        score.seconds += time.perf_counter() - began
        score.steps += 1
        pred_segments = {t: {"category_id": category_of[c]} for t, c in result.classes.items()}
        gt_segments = {
            s.id: {"category_id": s.category_id, "iscrowd": 0, "area": s.area}
            for s in scene.segments
        }
        score.evaluation.update(scene.panoptic, gt_segments, result.labels, pred_segments)
        pred_things = [
            t for t, info in pred_segments.items() if categories[info["category_id"]]["isthing"]
        ]
        gt_things = [s.id for s in scene.segments if s.isthing]
        score.identity.update(index, scene.panoptic, gt_things, result.labels, pred_things)


def _summary(score: _Scores) -> dict[str, Any]:
    report = score.evaluation.result()
    vpq = report["vpq"]
    identity = asdict(score.identity.result())
    return {
        **identity,
        "vpq": vpq["mean"]["All"]["pq"],
        "vpq_by_window": {k: v["All"]["pq"] for k, v in vpq.items() if k != "mean"},
        "stq": report["stq"]["stq"],
        "aq": report["stq"]["aq"],
        "sq": report["stq"]["sq"],
        "frames": score.steps,
        "tracker_ms_per_frame": 1000 * score.seconds / max(score.steps, 1),
    }


def scale_segmentation(seg: FrameSegmentation, size: tuple[int, int]) -> FrameSegmentation:
    """`seg` with its map scaled to `size` (nearest), boxes and areas to match."""
    height, width = seg.panoptic.shape
    rows = np.arange(size[0]) * height // size[0]
    cols = np.arange(size[1]) * width // size[1]
    panoptic = np.ascontiguousarray(seg.panoptic[rows][:, cols])
    top = max((s.id for s in seg.segments), default=0)
    areas = np.bincount(panoptic.ravel(), minlength=top + 1)
    sy, sx = size[0] / height, size[1] / width
    segments = [
        replace(
            s,
            area=int(areas[s.id]),
            bbox=(
                int(s.bbox[0] * sx),
                int(s.bbox[1] * sy),
                int(round(s.bbox[2] * sx)),
                int(round(s.bbox[3] * sy)),
            ),
        )
        for s in seg.segments
    ]
    return FrameSegmentation(panoptic=panoptic, segments=segments, embeddings=seg.embeddings)


def _time_tracker(frames: Sequence[FrameSegmentation], config: TrackerConfig, fps: float) -> float:
    """Mean ms per `Tracker.step` over `frames` (one warm-up pass first)."""
    best = float("inf")
    for _ in range(2):  # the second pass is measured warm
        tracker = Tracker(config)
        began = time.perf_counter()
        for index, seg in enumerate(frames):
            tracker.step(index, seg, time=index / fps)
        best = min(best, time.perf_counter() - began)
    return 1000 * best / len(frames)


def write_report(result: Mapping[str, Any], out: str | Path) -> Path:
    """OUT/tracking.json (written whole, then renamed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "tracking.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    path = out / "tracking.json"
    tmp.replace(path)
    return path


def format_report(result: Mapping[str, Any]) -> str:
    """A table: one row per source, variant and tracker."""
    settings = result["settings"]
    lines = [
        f"{settings['videos']} videos x {settings['frames']} frames of {settings['size']} px, "
        f"seeds {settings['seeds'][0]}..{settings['seeds'][1]}, {settings['fps']} fps, "
        f"model {settings['model']}",
        f"{'source':7s} {'variant':9s} {'tracker':10s}|  IDF1  IDsw  Frag Cross |   AQ  STQ "
        f" VPQ1  VPQ8 | ms/frame",
    ]
    lines.append("-" * len(lines[-1]))
    for source, variants in result["results"].items():
        for variant, trackers in variants.items():
            for name, r in trackers.items():
                windows = r["vpq_by_window"]
                first, last = windows[min(windows, key=int)], windows[max(windows, key=int)]
                lines.append(
                    f"{source:7s} {variant:9s} {name:10s}| {100 * r['idf1']:5.1f} "
                    f"{r['id_switches']:5d} {r['fragmentations']:5d} {r['cut_crossings']:5d} | "
                    f"{100 * r['aq']:4.1f} {100 * r['stq']:4.1f} {100 * first:5.1f} "
                    f"{100 * last:5.1f} | {r['tracker_ms_per_frame']:6.2f}"
                )
    for name, ms in result["cost_1080p_ms"].items():
        lines.append(f"tracker {name}: {ms:.2f} ms per frame at 1080p labels")
    lines.append(f"{result['seconds']:.1f} s")
    return "\n".join(lines)
