"""Retrieval quality of `streamseg search` on shapes-world videos with exact ground truth.

Videos are generated from seeds (as `streamseg measure` does), run through `run_video` into
stores, and each predicted track gets the ground-truth class under most of its pixels (over
all its frames; none when no class holds more than half). A text query for class c ranks every
track of every store; the relevant ones are the tracks whose ground-truth class is c, and its
average precision is the mean, over them, of the precision at each one's rank. Three groups:

- (a) in the run's vocabulary: queries for the classes the runs were given. Next to the text
  search, the plain label match: tracks whose predicted class is c first (by score), then the
  others (by score).
- (b) held out from the model's training: the queries of (a) whose class none of the model's
  `train_vocabulary` synonyms names (the unseen classes of `streamseg measure`).
- (c) not in the run's vocabulary at all: the videos are run again with some classes left out
  of the vocabulary, and the left-out classes are searched for. A label match cannot find
  them; chance is the share of relevant tracks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RetrievalSettings:
    """What `measure_retrieval` runs."""

    videos: int = 8
    frames: int = 48
    size: int = 256
    seed: int = 500000
    # Classes left out of the vocabulary for group (c): every class with one of these words.
    held_out_words: tuple[str, ...] = ("star", "hexagon")


@dataclass(frozen=True)
class GroupResult:
    """mAP of one query group (fractions), and what it was computed over."""

    queries: int
    tracks: int  # ranked tracks (all stores)
    search_map: float  # text search
    label_map: float | None  # label matching (None where it cannot apply)
    chance: float  # mean share of relevant tracks over the queries
    per_query: dict[str, float] = field(default_factory=dict)  # text search AP


def average_precision(ranked_relevance: Sequence[bool]) -> float:
    """Mean of the precision at each relevant item's rank (0 without relevant items)."""
    relevant = np.asarray(ranked_relevance, bool)
    if not relevant.any():
        return 0.0
    hits = np.cumsum(relevant)
    ranks = np.flatnonzero(relevant) + 1
    return float(np.mean(hits[relevant] / ranks))


def track_truth(store: str | Path, gt_frames: Sequence[tuple[np.ndarray, dict[int, int]]]) -> dict:
    """Each track's ground-truth category: the one under more than half of its pixels.

    Args:
        store: the run's store.
        gt_frames: per frame, the ground-truth id map and {segment id: category id}.

    Returns:
        {track id: category id, or -1 when no category holds a majority}.
    """
    from streamseg.video.store_reader import StoreReader

    reader = StoreReader(store)
    counts: dict[tuple[int, int], int] = {}
    totals: dict[int, int] = {}
    for labels, (gt_ids, categories) in zip(reader.iter_labels(), gt_frames, strict=True):
        ids, inverse = np.unique(gt_ids, return_inverse=True)
        gt_classes = np.array([categories.get(int(i), -1) for i in ids], np.int64)[inverse]
        pairs, sizes = np.unique(
            np.stack([labels.ravel(), gt_classes.ravel()]), axis=1, return_counts=True
        )
        for (track, category), size in zip(pairs.T.tolist(), sizes.tolist(), strict=True):
            if track:
                counts[(track, category)] = counts.get((track, category), 0) + size
                totals[track] = totals.get(track, 0) + size
    truth = {track: -1 for track in totals}
    for (track, category), size in counts.items():
        if category >= 0 and size * 2 > totals[track]:
            truth[track] = category
    return truth


def measure_retrieval(
    settings: RetrievalSettings, out: str | Path, segmenter: Any, say: Any = print
) -> dict[str, Any]:
    """Run the three groups (see the module docstring) and return their results."""
    from streamseg.bench.quality import class_split, generate_validation
    from streamseg.catalog.query import encode_query, stores_as_index, top_rows
    from streamseg.catalog.store_tracks import read_store_tracks
    from streamseg.config import RunConfig
    from streamseg.eval.formats import iter_vipseg_videos, read_categories, read_json
    from streamseg.model.vocab import Vocabulary, builtin_vocabulary
    from streamseg.panoptic_png import read_panoptic_png
    from streamseg.video.pipeline import run_video

    began = time.monotonic()
    out = Path(out)
    data = generate_validation(
        out / "data",
        images=0,
        videos=settings.videos,
        frames=settings.frames,
        size=settings.size,
        seed=settings.seed,
    )["videos"]
    gt_json = data / "panoptic.json"
    gt_data = read_json(gt_json)
    categories = read_categories(gt_data, gt_json)
    names = {cid: str(entry["name"]) for cid, entry in categories.items()}
    full = builtin_vocabulary("shapes")
    left_out = {c.name for c in full.classes if any(w in c.name for w in settings.held_out_words)}
    partial = Vocabulary(classes=tuple(c for c in full.classes if c.name not in left_out))
    videos = list(iter_vipseg_videos(gt_data, gt_json))
    truth_frames = []
    for video in videos:
        frames = []
        for frame in video.frames:
            ids = read_panoptic_png(data / "panomasks" / video.video_id / frame["file_name"])
            cats = {int(s["id"]): int(s["category_id"]) for s in frame["segments_info"]}
            frames.append((ids, cats))
        truth_frames.append(frames)

    def run_all(vocabulary: Vocabulary, tag: str) -> tuple[list[Any], list[dict[int, int]]]:
        segmenter.set_vocabulary(vocabulary)
        (out / tag).mkdir(parents=True, exist_ok=True)
        tracks, truths = [], []
        for video, frames in zip(videos, truth_frames, strict=True):
            store = out / tag / f"{video.video_id}.zarr"
            source = data / "videos" / f"{video.video_id}.mp4"
            run_video(source, store, config=RunConfig(), segmenter=segmenter, overwrite=True)
            tracks.append(read_store_tracks(store))
            truths.append(track_truth(store, frames))
        say(f"{tag}: {len(tracks)} stores, {sum(len(t.track_id) for t in tracks)} tracks")
        return tracks, truths

    def group(
        tracks: list[Any], truths: list[dict[int, int]], queries: list[int], label_names: bool
    ) -> GroupResult:
        arrays = stores_as_index(tracks)
        pairs = zip(tracks, truths, strict=True)
        relevant_class = np.concatenate(
            [[truth.get(int(t), -1) for t in item.track_id] for item, truth in pairs]
        ).astype(np.int64)
        predicted = np.concatenate(
            [[item.classes[int(c)] for c in item.class_id] for item in tracks]
        )
        scores = arrays.tracks["score"].astype(np.float64)
        search_ap, label_ap, chance = {}, [], []
        for category in queries:
            name = names[category]
            vector = encode_query(name, arrays.info.model or "", segmenter)
            rows, _ = top_rows(arrays.embeddings, None, vector, len(relevant_class))
            relevant = relevant_class == category
            search_ap[name] = average_precision(relevant[rows])
            chance.append(float(relevant.mean()) if relevant.size else 0.0)
            if label_names:
                order = np.lexsort((-scores, predicted != name))
                label_ap.append(average_precision(relevant[order]))
        return GroupResult(
            queries=len(queries),
            tracks=int(relevant_class.size),
            search_map=float(np.mean(list(search_ap.values()))) if search_ap else 0.0,
            label_map=float(np.mean(label_ap)) if label_ap else None,
            chance=float(np.mean(chance)) if chance else 0.0,
            per_query=search_ap,
        )

    tracks, truths = run_all(full, "full")
    present = sorted({c for truth in truths for c in truth.values() if c >= 0})
    in_vocabulary = [c for c in present if names[c] in {v.name for v in full.classes}]
    seen, _note = class_split(full, list(segmenter.config.train_vocabulary))
    unseen_names = {v.name for v, s in zip(full.classes, seen, strict=True) if not s}
    held_out = [c for c in in_vocabulary if names[c] in unseen_names]
    result_a = group(tracks, truths, in_vocabulary, label_names=True)
    result_b = group(tracks, truths, held_out, label_names=True)
    tracks_c, truths_c = run_all(partial, "partial")
    present_c = sorted({c for truth in truths_c for c in truth.values() if c >= 0})
    absent = [c for c in present_c if names[c] in left_out]
    result_c = group(tracks_c, truths_c, absent, label_names=False)
    return {
        "settings": asdict(settings),
        "model": segmenter.model_id,
        "seeds": [settings.seed, settings.seed + settings.videos - 1],
        "left_out_classes": sorted(left_out),
        "in_vocabulary": asdict(result_a),
        "held_out_from_training": asdict(result_b),
        "not_in_run_vocabulary": asdict(result_c),
        "seconds": time.monotonic() - began,
    }


def search_speed(rows: int, dim: int, repeats: int = 3, folder: str | Path | None = None) -> dict:
    """Seconds of one query over an index of `rows` synthetic unit vectors (memory-mapped
    from disk, as `streamseg search` reads an index), median of `repeats`; and how fast the
    index was written (tracks/s)."""
    import tempfile

    from streamseg.catalog.index import add_to_index, open_index
    from streamseg.catalog.query import top_rows
    from streamseg.catalog.store_tracks import StoreTracks

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        index = Path(tmp) / "index"
        began = time.perf_counter()
        step = 250_000
        for start in range(0, rows, step):
            count = min(step, rows - start)
            vectors = rng.standard_normal((count, dim), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            ids = np.arange(1, count + 1, dtype=np.int32)
            zeros = np.zeros(count)
            add_to_index(
                index,
                [
                    StoreTracks(
                        path=f"/synthetic/{start}.zarr",
                        signature="synthetic",
                        model="synthetic@sha256:0",
                        classes=["thing"],
                        source=None,
                        label_size=(1, 1),
                        embeddings=vectors.astype(np.float16),
                        track_id=ids,
                        class_id=np.zeros(count, np.int32),
                        score=np.ones(count, np.float32),
                        first_time=zeros,
                        last_time=zeros,
                        best_frame=np.zeros(count, np.int64),
                        best_time=zeros,
                        best_box=np.zeros((count, 4), np.int32),
                    )
                ],
            )
        indexing = time.perf_counter() - began
        arrays = open_index(index)
        query = rng.standard_normal(dim).astype(np.float32)
        query /= np.linalg.norm(query)
        seconds = []
        for _ in range(repeats + 1):  # the first one warms the page cache: not counted
            began = time.perf_counter()
            top_rows(arrays.embeddings, arrays.tracks["alive"], query, 10)
            seconds.append(time.perf_counter() - began)
    return {
        "rows": rows,
        "dim": dim,
        "query_seconds_median": float(np.median(seconds[1:])),
        "query_seconds": seconds[1:],
        "indexing_tracks_per_second": rows / indexing,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m streamseg.bench.retrieval --out DIR`: the three groups' mAP with the default
    (or a named) model, and the search speed over synthetic indexes; JSON on stdout."""
    import argparse
    import json
    import sys

    from streamseg.bench.quality import load_model

    defaults = RetrievalSettings()
    parser = argparse.ArgumentParser(prog="python -m streamseg.bench.retrieval")
    parser.add_argument("--out", required=True, help="folder of the generated videos and stores")
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--videos", type=int, default=defaults.videos)
    parser.add_argument("--frames", type=int, default=defaults.frames)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--speed-rows", type=int, default=1_000_000, help="tracks of the speed test (0: none)"
    )
    parser.add_argument("--speed-dims", default="256,768", help="vector sizes of the speed test")
    args = parser.parse_args(argv)
    settings = RetrievalSettings(videos=args.videos, frames=args.frames, seed=args.seed)
    segmenter = load_model(args.model, args.device)
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    report = measure_retrieval(settings, args.out, segmenter, say=say)
    if args.speed_rows > 0:
        report["speed"] = [
            search_speed(args.speed_rows, int(dim), folder=args.out)
            for dim in args.speed_dims.split(",")
        ]
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
