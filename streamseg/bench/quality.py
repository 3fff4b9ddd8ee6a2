"""`streamseg measure`: a model's quality on freshly generated shapes-world validation data.

FC-CLIP's ablation in miniature (Yu et al., NeurIPS 2023, "Convolutions Die Hard", table of
in-vocabulary / out-of-vocabulary / ensemble classifiers): the same validation images are
segmented three times with the whole shapes vocabulary, changing only the geometric ensemble
(`streamseg.model.ensemble`):
- `in-vocab`: alpha = beta = 0, the in-vocabulary classifier alone;
- `out-of-vocab`: alpha = beta = 1, the frozen CLIP's mask-pooled classifier alone (queries
  with an empty pooling mask keep the in-vocabulary scores when the model's
  `ensemble_on_valid_mask` is on, as the official code does);
- `ensemble`: the model's own `ensemble_alpha` / `ensemble_beta`.
Each mode's predictions are written as COCO panoptic (JSON + PNGs) and scored from those files
with the project's evaluator (`streamseg.eval.panoptic`), so `streamseg eval panoptic` on the
same files gives the same numbers. PQ / SQ / RQ are reported over all classes and over the
seen and the unseen classes (mean of per-class values over the classes of the group that occur,
panopticapi's averaging). A class is seen when any of its synonyms is in the model config's
`train_vocabulary` (the rule the ensemble itself uses); a model without one counts every class
as seen and says so.

Videos run through `streamseg.video.pipeline.run_video` (the code path of `streamseg run`)
into label stores, scored with `streamseg.eval.video` (VPQ, STQ / AQ / SQ) as
`streamseg eval video --pred-store` does, accumulated over all videos.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from streamseg.errors import UserError

# Mode -> (alpha, beta); None = the model's own ensemble weights.
MODES: dict[str, tuple[float, float] | None] = {
    "in-vocab": (0.0, 0.0),
    "out-of-vocab": (1.0, 1.0),
    "ensemble": None,
}
NO_TRAIN_VOCABULARY = "the model records no train_vocabulary: every class counts as seen"


def class_split(vocabulary: Any, train_vocabulary: Sequence[str]) -> tuple[list[bool], str | None]:
    """Seen flag per vocabulary class (any synonym in `train_vocabulary`) and a note.

    Returns:
        ([seen] * C, None), or all True and `NO_TRAIN_VOCABULARY` when the list is empty.
    """
    if not train_vocabulary:
        return [True] * len(vocabulary.classes), NO_TRAIN_VOCABULARY
    from streamseg.model.vocab import seen_classes

    return [bool(v) for v in seen_classes(vocabulary, set(train_vocabulary)).tolist()], None


def _data_paths(data: str | Path) -> tuple[Path, Path]:
    """(ground-truth JSON, its folder) from a writer's output folder or its panoptic.json."""
    path = Path(data)
    json_path = path / "panoptic.json" if path.is_dir() else path
    if not json_path.is_file():
        raise UserError(f"{json_path}: no ground-truth JSON (write one with `streamseg synth`)")
    return json_path, json_path.parent


def _group(stats: Mapping[int, Any], categories: Mapping[int, Any], ids: set[int]) -> dict:
    """PQ / SQ / RQ averaged over the categories `ids` that occur (None when none does)."""
    from streamseg.eval.panoptic import average_pq

    summary, _ = average_pq(stats, {k: v for k, v in categories.items() if k in ids}, None)
    if summary["n"] == 0:
        return {"pq": None, "sq": None, "rq": None, "n": 0}
    return summary


def score_images(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
    seen_categories: set[int],
) -> dict[str, Any]:
    """PQ of COCO-panoptic predictions, overall and over seen / unseen categories.

    The statistics are `streamseg.eval.panoptic.accumulate_coco_panoptic`'s (the same loop as
    `streamseg eval panoptic`), grouped so that `average_pq` can average over the two groups.

    Returns:
        {"all", "things", "stuff", "seen", "unseen": {"pq", "sq", "rq", "n"}, "per_class":
        {"<category id>": {"pq", "sq", "rq"}}} (fractions; a group with no occurring class has
        None values).
    """
    from streamseg.eval.panoptic import accumulate_coco_panoptic

    metric = accumulate_coco_panoptic(gt_json, gt_dir, pred_json, pred_dir)
    categories = metric.categories
    report = metric.result()
    return {
        "all": report["All"],
        "things": report["Things"],
        "stuff": report["Stuff"],
        "seen": _group(metric.stats, categories, seen_categories),
        "unseen": _group(metric.stats, categories, set(categories) - seen_categories),
        "per_class": report["per_class"],
    }


def predict_images(
    segmenter: Any,
    gt_json: str | Path,
    image_dir: str | Path,
    out: str | Path,
    category_ids: Sequence[int],
    batch_size: int = 4,
) -> Path:
    """Segment every image of a COCO-panoptic ground truth; write OUT/panoptic/*.png and
    OUT/predictions.json (image ids and categories of the ground truth). Returns the JSON."""
    from streamseg.eval.formats import read_json
    from streamseg.image_outputs import encode_panoptic, segments_info, write_json, write_png
    from streamseg.video.image_folders import read_image

    gt_data = read_json(gt_json)
    out = Path(out)
    images = list(gt_data.get("images") or [])
    annotations = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        frames = [read_image(Path(image_dir) / image["file_name"]) for image in batch]
        for image, result in zip(batch, segmenter.segment(frames), strict=True):
            png_name = f"{Path(image['file_name']).stem}.png"
            write_png(out / "panoptic" / png_name, encode_panoptic(result.panoptic))
            annotations.append(
                {
                    "image_id": image["id"],
                    "file_name": png_name,
                    "segments_info": segments_info(result, category_ids),
                }
            )
    path = out / "predictions.json"
    write_json(
        path,
        {
            "info": {"model": segmenter.model_id},
            "images": images,
            "annotations": annotations,
            "categories": gt_data["categories"],
        },
    )
    return path


def _shapes_vocabulary(segmenter: Any, vocabulary: Any) -> Any:
    from streamseg.model.vocab import parse_vocab

    vocabulary = vocabulary if vocabulary is not None else parse_vocab("shapes")
    if segmenter.vocabulary != vocabulary:
        # No disk cache: the text classifier is cheap for these vocabularies and a measurement
        # should leave nothing behind outside its folder.
        segmenter.set_vocabulary(vocabulary, cache_dir=None)
    return vocabulary


def measure_images(
    segmenter: Any,
    data: str | Path,
    out: str | Path,
    *,
    modes: Sequence[str] = tuple(MODES),
    vocabulary: Any = None,
    batch_size: int = 4,
) -> dict[str, Any]:
    """PQ per ensemble mode on COCO-panoptic validation images.

    Args:
        segmenter: a `Segmenter` (its ensemble weights are restored afterwards).
        data: a folder written by `write_coco_panoptic` (or its panoptic.json).
        out: predictions go to OUT/<mode>/ (panoptic/*.png + predictions.json).
        modes: names in `MODES`.
        vocabulary: default the whole shapes world (`parse_vocab("shapes")`).

    Returns:
        {"modes": {mode: {"alpha", "beta", "predictions", **score_images(...)}},
        "seen_classes", "unseen_classes": names, "split_note": str | None, "images": n}.
    """
    from streamseg.eval.formats import read_json
    from streamseg.image_outputs import match_categories

    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UserError(f"modes {unknown}: not among {', '.join(MODES)}")
    gt_json, root = _data_paths(data)
    gt_data = read_json(gt_json)
    vocabulary = _shapes_vocabulary(segmenter, vocabulary)
    category_ids = match_categories(vocabulary, gt_data["categories"], str(gt_json))
    seen, note = class_split(vocabulary, segmenter.config.train_vocabulary)
    seen_categories = {c for c, s in zip(category_ids, seen, strict=True) if s}
    own = (segmenter.config.ensemble_alpha, segmenter.config.ensemble_beta)
    names = {c["id"]: c["name"] for c in gt_data["categories"]}
    result: dict[str, Any] = {
        "images": len(gt_data.get("images") or []),
        "seen_classes": [n for n, s in zip(vocabulary.names, seen, strict=True) if s],
        "unseen_classes": [n for n, s in zip(vocabulary.names, seen, strict=True) if not s],
        "split_note": note,
        "modes": {},
    }
    try:
        for mode in modes:
            alpha, beta = MODES[mode] or own
            segmenter.set_ensemble(alpha, beta)
            mode_dir = Path(out) / mode
            pred_json = predict_images(
                segmenter, gt_json, root / "images", mode_dir, category_ids, batch_size
            )
            scores = score_images(
                gt_json, root / "panoptic", pred_json, mode_dir / "panoptic", seen_categories
            )
            scores["per_class"] = {
                names[int(k)]: {**v, "seen": int(k) in seen_categories}
                for k, v in scores["per_class"].items()
            }
            result["modes"][mode] = {
                "alpha": alpha,
                "beta": beta,
                "predictions": str(pred_json),
                **scores,
            }
    finally:
        segmenter.set_ensemble(*own)
    return result


def measure_videos(
    segmenter: Any,
    data: str | Path,
    out: str | Path,
    *,
    vocabulary: Any = None,
    config: Any = None,
    windows: Sequence[int] | None = None,
) -> dict[str, Any]:
    """VPQ and STQ of the video pipeline on VIPSeg-style validation videos.

    Args:
        segmenter: a `Segmenter` (used with its current ensemble weights).
        data: a folder written by `write_vipseg` with mp4 files (OUT/videos/<video>.mp4).
        out: stores go to OUT/<video>.zarr (replaced when present).
        config: the `RunConfig` of `run_video` (default: `streamseg run`'s defaults).
        windows: VPQ window lengths (default VIPSeg's 1, 2, 4, 6, 8).

    Returns:
        {"videos", "frames", "vpq" (mean over windows, all classes), "vpq_things",
        "vpq_stuff", "vpq_by_window": {k: pq}, "stq", "aq", "sq", "per_video",
        "unmapped_classes", "stores"} (fractions).
    """
    from streamseg.config import RunConfig
    from streamseg.eval.formats import (
        iter_vipseg_videos,
        read_categories,
        read_json,
        segments_by_id,
    )
    from streamseg.eval.store import StorePrediction
    from streamseg.eval.video import DEFAULT_WINDOWS, VideoEvaluation
    from streamseg.panoptic_png import read_panoptic_png
    from streamseg.video.pipeline import run_video

    gt_json, root = _data_paths(data)
    gt_data = read_json(gt_json)
    categories = read_categories(gt_data, gt_json)
    _shapes_vocabulary(segmenter, vocabulary)
    evaluation = VideoEvaluation(categories, windows or DEFAULT_WINDOWS)
    Path(out).mkdir(parents=True, exist_ok=True)
    stores, unmapped, frames = [], set(), 0
    for video in iter_vipseg_videos(gt_data, gt_json):
        source = root / "videos" / f"{video.video_id}.mp4"
        if not source.is_file():
            raise UserError(f"{source}: missing (generate videos with mp4 files)")
        store = Path(out) / f"{video.video_id}.zarr"
        run_video(source, store, config=config or RunConfig(), segmenter=segmenter, overwrite=True)
        stores.append(str(store))
        # From here on as `streamseg eval video --pred-store`, but one evaluation for all
        # videos so that VPQ and STQ are accumulated over the whole set.
        prediction = StorePrediction(store, categories)
        unmapped.update(prediction.unmapped)
        if len(prediction) != len(video.frames):
            raise UserError(
                f"{store}: {len(prediction)} frames, video {video.video_id!r} has "
                f"{len(video.frames)}"
            )
        evaluation.start_video(video.video_id)
        for t, gt_frame in enumerate(video.frames):
            gt_png = root / "panomasks" / video.video_id / gt_frame["file_name"]
            pred_ids, pred_segments = prediction.frame(t)
            evaluation.update(
                read_panoptic_png(gt_png),
                segments_by_id(gt_frame, gt_json),
                pred_ids,
                pred_segments,
                gt_name=str(gt_png),
                pred_name=f"{store} frame {t}",
            )
            frames += 1
    report = evaluation.result()
    vpq = report["vpq"]
    return {
        "videos": len(stores),
        "frames": frames,
        "vpq": vpq["mean"]["All"]["pq"],
        "vpq_things": vpq["mean"]["Things"]["pq"],
        "vpq_stuff": vpq["mean"]["Stuff"]["pq"],
        "vpq_by_window": {k: v["All"]["pq"] for k, v in vpq.items() if k != "mean"},
        "stq": report["stq"]["stq"],
        "aq": report["stq"]["aq"],
        "sq": report["stq"]["sq"],
        "per_video": report["stq"]["per_video"],
        "unmapped_classes": sorted(unmapped),
        "stores": stores,
    }


def load_model(model: str | None, device: str = "auto") -> Any:
    """A `Segmenter` from the one loader (default: the embedded model)."""
    import warnings

    from streamseg.model.load import load_segmenter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random-weight presets: said in the JSON
        return load_segmenter(model, device=device)


def generate_validation(
    out: str | Path,
    *,
    images: int,
    videos: int,
    frames: int,
    size: int,
    seed: int,
    image_format: str = "png",
) -> dict[str, Path]:
    """Write validation data as `streamseg synth` does: OUT/images (COCO panoptic, seeds
    seed .. seed + images - 1) and OUT/videos (VIPSeg-style + mp4, seeds seed .. seed +
    videos - 1). Returns the folders written ({"images": ..., "videos": ...})."""
    from streamseg.synthetic.scene import SceneConfig, render_image
    from streamseg.synthetic.video import VideoConfig, render_video
    from streamseg.synthetic.writers import write_coco_panoptic, write_vipseg

    if size < 32:
        raise UserError(f"--size {size}: at least 32 pixels")
    out = Path(out)
    written: dict[str, Path] = {}
    if images > 0:
        config = replace(SceneConfig(), height=size, width=size)
        scenes = (render_image(seed + i, config) for i in range(images))
        write_coco_panoptic(out / "images", scenes, image_format=image_format)
        written["images"] = out / "images"
    if videos > 0:
        if size % 2:
            raise UserError(f"--size {size}: videos need an even size (H.264 yuv420p)")
        if frames < 1:
            raise UserError(f"--frames {frames}: at least 1")
        video_config = replace(VideoConfig(), height=size, width=size, num_frames=frames)
        clips = (
            (f"video_{seed + i:06d}", render_video(seed + i, video_config)) for i in range(videos)
        )
        write_vipseg(out / "videos", clips, image_format=image_format)
        written["videos"] = out / "videos"
    return written


def measure(
    model: Any,
    out: str | Path,
    *,
    images: int = 100,
    videos: int = 4,
    frames: int = 48,
    size: int = 256,
    seed: int = 100000,
    device: str = "auto",
    image_format: str = "png",
    batch_size: int = 4,
) -> dict[str, Any]:
    """Generate fresh validation data, measure images (three modes) and videos, and write
    OUT/measure.json.

    Args:
        model: a `Segmenter`, or a model name / folder for `load_model` (None = embedded).
        out: work folder: OUT/data (validation data), OUT/images/<mode> (predictions),
            OUT/stores (video label stores), OUT/measure.json.
        images, videos: how many (0 skips that part); frames: per video; size: square side.
        seed: first seed of images and of videos.
        device: for a model given by name.

    Returns:
        the JSON written: {"settings": {...}, "images": measure_images(...) | None,
        "videos": measure_videos(...) | None}.
    """
    if images < 0 or videos < 0 or (images == 0 and videos == 0):
        raise UserError("--images / --videos: at least one must be positive (none negative)")
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: at least 1")
    if size < 32 or (videos and size % 2):
        raise UserError(f"--size {size}: at least 32 pixels, and even for videos (H.264 yuv420p)")
    if videos and frames < 1:
        raise UserError(f"--frames {frames}: at least 1")
    began = time.monotonic()
    segmenter = model if hasattr(model, "segment") else load_model(model, device)
    out = Path(out)
    data = generate_validation(
        out / "data",
        images=images,
        videos=videos,
        frames=frames,
        size=size,
        seed=seed,
        image_format=image_format,
    )
    generated = time.monotonic()
    image_result = None
    if "images" in data:
        image_result = measure_images(
            segmenter, data["images"], out / "images", batch_size=batch_size
        )
    measured_images = time.monotonic()
    video_result = None
    if "videos" in data:
        from streamseg.config import RunConfig

        config = RunConfig().with_overrides(model={"batch_size": batch_size})
        video_result = measure_videos(segmenter, data["videos"], out / "stores", config=config)
    done = time.monotonic()
    vocabulary = segmenter.vocabulary
    flags, note = class_split(vocabulary, segmenter.config.train_vocabulary)
    unseen = [n for n, s in zip(vocabulary.names, flags, strict=True) if not s]
    result = {
        "settings": {
            "model": segmenter.name,
            "model_id": segmenter.model_id,
            "model_sha256": segmenter.weights_sha256,
            "random_weights": "-random-seed" in segmenter.name,
            "ensemble_alpha": segmenter.config.ensemble_alpha,
            "ensemble_beta": segmenter.config.ensemble_beta,
            "n_images": images,
            "n_videos": videos,
            "frames": frames,
            "size": size,
            "seed": seed,
            "image_seeds": [seed, seed + images - 1] if images else [],
            "video_seeds": [seed, seed + videos - 1] if videos else [],
            "image_format": image_format,
            "batch_size": batch_size,
            "unseen_classes": unseen,
            "split_note": note,
            "device": str(segmenter.device),
            "elapsed_seconds": round(done - began, 2),
            "seconds": {
                "generate": round(generated - began, 2),
                "images": round(measured_images - generated, 2),
                "videos": round(done - measured_images, 2),
            },
        },
        "images": image_result,
        "videos": video_result,
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "measure.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "measure.json")
    return result
