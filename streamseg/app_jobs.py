"""The work behind the Gradio demo (streamseg/app.py), free of any Gradio import.

Videos go through `run_video` (the CLI's code path) into a store, an overlay mp4, the track
table and zipped exports; images through the calls `streamseg image` makes (segment,
COCO-panoptic PNG, overlay PNG, predictions JSON).
"""

from __future__ import annotations

import contextvars
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamseg.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# Vocabulary presets: label -> built-in vocabulary name (expanded into the text boxes).
VOCAB_PRESETS: dict[str, str] = {
    "default model's classes (shapes world)": "shapes",
    "COCO panoptic (133)": "coco",
    "ADE20K (150)": "ade20k",
}
TRACK_HEADERS = ["track", "class", "first (s)", "last (s)", "frames", "mean score"]
RANDOM_PRESETS = ("tiny-convnext", "tiny-r50")


# ----------------------------------------------------------------------------- helpers
def vocabulary_text(name: str) -> tuple[str, str]:
    """A built-in vocabulary in the CLI syntax: (classes "a|syn,b", stuff "c,d").

    `parse_vocab(text, stuff)` gives the built-in vocabulary back exactly (tested)."""
    from streamseg.model.vocab import builtin_vocabulary

    vocabulary = builtin_vocabulary(name)
    text = ",".join("|".join(c.synonyms) for c in vocabulary.classes)
    stuff = ",".join(c.name for c in vocabulary.classes if not c.is_thing)
    return text, stuff


def model_choices(extra: str | None = None) -> list[tuple[str, str]]:
    """(label, model value) for the model dropdown: the CLI's --model, the default model,
    own-format folders in weights/ and the weights cache, fetched official checkpoints, and
    the tiny random-weight presets."""
    from streamseg.model.embedded import DEFAULT_MODEL, WEIGHTS_DIRS
    from streamseg.weights import find_weights, load_registry, weights_dir

    choices: dict[str, str] = {}
    if extra:
        choices[extra] = f"{extra} (from the command line)"
    if DEFAULT_MODEL in RANDOM_PRESETS:
        choices.setdefault(DEFAULT_MODEL, f"{DEFAULT_MODEL} (default; random weights)")
    else:
        choices.setdefault(DEFAULT_MODEL, f"{DEFAULT_MODEL} (default, embedded)")
    for root in WEIGHTS_DIRS:
        for config in sorted(root.glob("*/config.json")):
            choices.setdefault(config.parent.name, f"{config.parent.name} (local weights)")
    cache = weights_dir()
    for config in sorted(cache.glob("*/config.json")) if cache.is_dir() else []:
        choices.setdefault(str(config.parent), f"{config.parent.name} (weights cache)")
    try:
        registry = load_registry()
    except UserError:
        registry = {}
    for name, entry in registry.items():
        if entry.kind == "fcclip" and find_weights(name, registry=registry) is not None:
            choices.setdefault(name, f"{name} (downloaded)")
    for name in RANDOM_PRESETS:
        choices.setdefault(name, f"{name} (random weights: shows the formats only)")
    return [(label, value) for value, label in choices.items()]


def classify_upload(path: str | Path, max_bytes: float) -> str:
    """ "video" or "image" from the file name; refuse other types and files above the limit.

    Raises:
        UserError: naming the file and the problem.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        kind = "video"
    elif suffix in IMAGE_SUFFIXES:
        kind = "image"
    else:
        known = " ".join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)
        raise UserError(f"{path.name}: not a video or image file (accepted: {known})")
    size = path.stat().st_size
    if size > max_bytes:
        raise UserError(
            f"{path.name}: {size / 1e6:.1f} MB is over the upload limit of {max_bytes / 1e6:.0f} MB"
        )
    return kind


def track_rows(store: str | Path) -> list[list[Any]]:
    """The track table of a store: [track, class, first s, last s, frames, mean score]."""
    from streamseg.video.store import open_store

    reader = open_store(store)
    tracks = reader.tracks
    times = reader.frames["time"]
    names = reader.class_names
    rows = []
    for i in range(len(tracks["track_id"])):
        class_id = int(tracks["class_id"][i])
        rows.append(
            [
                int(tracks["track_id"][i]),
                names[class_id] if 0 <= class_id < len(names) else f"#{class_id}",
                round(float(times[int(tracks["first_frame"][i])]), 3),
                round(float(times[int(tracks["last_frame"][i])]), 3),
                int(tracks["frames"][i]),
                round(float(tracks["score"][i]), 3),
            ]
        )
    return rows


def zip_folder(folder: Path, archive: Path) -> Path:
    """`folder` zipped as `archive` (.zip), with the folder's own name at the top."""
    base = archive.with_suffix("")
    made = shutil.make_archive(str(base), "zip", root_dir=folder.parent, base_dir=folder.name)
    return Path(made)


@dataclass(frozen=True)
class ModelLoad:
    """A segmenter from `SegmenterCache.load` and whether this call built it."""

    segmenter: Any
    loaded: bool  # True: built by this call; False: reused (warm-up or an earlier request)


class SegmenterCache:
    """Loaded segmenters by (model, device): loading takes seconds, runs reuse them."""

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self.loads = 0  # segmenters built so far (the warm-up is tested by counting them)
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def load(self, name: str) -> ModelLoad:
        with self._lock:
            if name in self._models:
                return ModelLoad(self._models[name], loaded=False)
            # The one loader: registry names, folders, .pth, presets.
            from streamseg.model.load import load_segmenter

            self._models[name] = load_segmenter(name, None, self.device, note="streamseg app")
            self.loads += 1
            return ModelLoad(self._models[name], loaded=True)

    def get(self, name: str) -> Any:
        return self.load(name).segmenter


@dataclass(frozen=True)
class CacheReport:
    """What a request found ready, said in its status: the first click after the warm-up
    finds both (issue 20)."""

    model_loaded: bool  # the request loaded the model (else reused it)
    classifier_computed: bool  # the request computed the text classifier (else read it)

    def line(self) -> str:
        model = "loaded by this run" if self.model_loaded else "reused"
        classifier = "computed by this run" if self.classifier_computed else "cached"
        return f"model {model}, text classifier {classifier}"


def classifier_cached(segmenter: Any, vocabulary: Any) -> bool:
    """Whether `segmenter`'s text classifier of `vocabulary` is in the disk cache, where
    `set_vocabulary` reads it instead of encoding (checked per request, so requests running
    at the same time do not see each other's work)."""
    from streamseg.model.text_classifier import cache_file, default_cache_dir

    return cache_file(default_cache_dir(), str(segmenter.model_id), vocabulary).is_file()


class _ProgressRelay:
    """Feeds gr.Progress from the pipeline's callbacks.

    The pipeline reports from its writer thread, where Gradio's context variables (which
    event the bar belongs to) are not set: calls are run inside a copy of the handler's
    context, one at a time."""

    def __init__(self, progress: Callable[..., Any]) -> None:
        self._progress = progress
        self._context = contextvars.copy_context()
        self._lock = threading.Lock()
        self.expected: int | None = None

    def total(self, expected: int | None, done: int) -> None:
        self.expected = expected
        self.update(done)

    def update(self, frames: int) -> None:
        with self._lock:
            self._context.run(self._progress, (frames, self.expected), desc="frames", unit="frames")


# ----------------------------------------------------------------------------- jobs
@dataclass
class RunResult:
    """What one request produced (paths inside the run folder)."""

    kind: str  # "video" | "image"
    overlay: Path
    rows: list[list[Any]]
    files: list[Path]
    status: str
    cache: CacheReport | None = None  # set by DemoApp.run


def run_video_job(
    source: Path,
    run_dir: Path,
    segmenter: Any,
    vocabulary: Any,
    *,
    stride: int,
    max_frames: int,
    score_threshold: float,
    batch_size: int,
    progress: Callable[..., Any] | None = None,
) -> RunResult:
    """A video through `run_video` (store + overlay mp4), the track table and the exports."""
    from streamseg.config import RunConfig
    from streamseg.export import export_store
    from streamseg.video.pipeline import run_video

    store = run_dir / f"{source.stem}.zarr"
    overlay = run_dir / f"{source.stem}_overlay.mp4"
    config = RunConfig().with_overrides(
        model={"batch_size": batch_size, "score_threshold": score_threshold},
        decode={"stride": stride, "max_frames": max_frames},
    )
    relay = _ProgressRelay(progress) if progress is not None else None
    summary = run_video(
        source,
        store,
        config=config,
        segmenter=segmenter,
        vocabulary=vocabulary,
        overlay=overlay,
        overwrite=True,
        progress=relay.update if relay else None,
        total_callback=relay.total if relay else None,
    )
    files = [zip_folder(store, run_dir / f"{source.stem}_store.zip")]
    for fmt in ("coco-panoptic", "vipseg"):
        folder = run_dir / f"{source.stem}_{fmt}"
        export_store(store, folder, fmt)
        files.append(zip_folder(folder, run_dir / f"{folder.name}.zip"))
    height, width = summary.label_size
    status = (
        f"**{source.name}**: {summary.frames} frames ({width}x{height}), "
        f"{summary.segments} segments, {summary.tracks} tracks in {summary.seconds:.1f} s "
        f"({summary.fps:.1f} frames/s)"
    )
    for warning in summary.warnings:
        status += f"\n\nwarning: {warning}"
    return RunResult("video", overlay, track_rows(store), files, status)


def run_image_job(
    source: Path, run_dir: Path, segmenter: Any, vocabulary: Any, *, score_threshold: float
) -> RunResult:
    """An image as `streamseg image` does it: panoptic PNG, overlay PNG, predictions JSON."""
    from streamseg.image_outputs import (
        encode_panoptic,
        segments_info,
        vocabulary_categories,
        write_json,
        write_png,
    )
    from streamseg.video.image_folders import read_image
    from streamseg.video.pipeline import filter_segmentation
    from streamseg.video.render import draw_overlay

    began = time.monotonic()
    try:
        frame = read_image(source)
    except (OSError, ValueError) as error:
        raise UserError(f"{source.name}: not a readable image ({error})") from None
    segmenter.set_vocabulary(vocabulary)
    result = segmenter.segment([frame])[0]
    result = filter_segmentation(result, score_threshold)
    out = run_dir / f"{source.stem}_image"
    png_name = f"{source.stem}.png"
    write_png(out / "panoptic" / png_name, encode_panoptic(result.panoptic))
    names = {s.id: vocabulary.names[s.class_id] for s in result.segments}
    overlay = out / "overlay" / png_name
    write_png(overlay, draw_overlay(frame, result.panoptic, names))
    height, width = frame.shape[:2]
    category_ids = [index + 1 for index in range(len(vocabulary))]
    write_json(
        out / "predictions.json",
        {
            "info": {"model": segmenter.model_id, "vocabulary": vocabulary.to_json()},
            "images": [{"id": 1, "file_name": source.name, "height": height, "width": width}],
            "annotations": [
                {
                    "image_id": 1,
                    "file_name": png_name,
                    "segments_info": segments_info(result, category_ids),
                }
            ],
            "categories": vocabulary_categories(vocabulary),
        },
    )
    rows = [
        [int(s.id), vocabulary.names[s.class_id], 0.0, 0.0, 1, round(float(s.score), 3)]
        for s in result.segments
    ]
    files = [zip_folder(out, run_dir / f"{source.stem}_coco-panoptic.zip")]
    status = (
        f"**{source.name}**: {len(result.segments)} segments ({width}x{height}) in "
        f"{time.monotonic() - began:.1f} s"
    )
    return RunResult("image", overlay, rows, files, status)


def write_sample_video(path: Path, seed: int = 7, size: int = 128, frames: int = 24) -> Path:
    """A small shapes-world video (H.264 mp4) for the examples."""
    from streamseg.synthetic.video import iter_video, small_video_config
    from streamseg.synthetic.writers import encode_mp4

    scenes = iter_video(seed, small_video_config(size=size, num_frames=frames))
    encode_mp4((scene.image for scene in scenes), path, fps=12.0)
    return path


@dataclass(frozen=True)
class SearchResult:
    """What the page shows for a search over its runs."""

    gallery: list[tuple[str, str]]  # (thumbnail path, caption), best first
    rows: list[list[Any]]  # SEARCH_HEADERS columns
    links: str  # Markdown: each hit's overlay video at the track's first frame
    status: str


SEARCH_HEADERS = ["rank", "score", "run", "track", "class", "from (s)", "to (s)"]


def search_runs(
    runs_dir: Path, query: str, top_k: int, segmenter: Any, out_dir: Path
) -> SearchResult:
    """Tracks of the page's finished video runs made by `segmenter`'s model, ranked by
    `query` (streamseg.search); thumbnails are written to `out_dir`."""
    from streamseg.catalog.query import search
    from streamseg.catalog.thumbnails import write_thumbnails
    from streamseg.video.store import store_status
    from streamseg.video.store_reader import StoreReader

    stores = []
    for store in sorted(runs_dir.glob("*/*.zarr")):
        if store_status(store) is None:
            continue
        reader = StoreReader(store)
        if reader.status == "done" and reader.attrs.get("model", {}).get("id") == (
            segmenter.model_id
        ):
            stores.append(store)
    if not stores:
        return SearchResult([], [], "", "no finished video runs of this model to search yet")
    hits = search(stores, query, top_k, segmenter=segmenter)
    pictures = write_thumbnails(hits, out_dir)
    gallery, rows, links = [], [], []
    for hit, picture in zip(hits, pictures, strict=True):
        run = Path(hit.store).parent.name
        caption = f"{hit.rank}. {hit.class_name} (track {hit.track_id}, {hit.score:.3f})"
        if picture is not None:
            gallery.append((str(picture), caption))
        rows.append(
            [
                hit.rank,
                round(hit.score, 4),
                run,
                hit.track_id,
                hit.class_name,
                round(hit.first_time, 2),
                round(hit.last_time, 2),
            ]
        )
        overlay = Path(hit.store).with_name(Path(hit.store).stem + "_overlay.mp4")
        if overlay.is_file():
            # A media fragment: the browser opens the overlay at the track's first frame.
            links.append(
                f"{hit.rank}. [{run}, track {hit.track_id} from {hit.first_time:.1f} s]"
                f"(/gradio_api/file={overlay}#t={hit.first_time:.2f})"
            )
    status = f"{len(hits)} track(s) of {len(stores)} run(s) for **{query}**"
    return SearchResult(gallery, rows, "\n".join(links), status)
