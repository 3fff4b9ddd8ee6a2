"""Export a label store to standard formats, one frame at a time.

Formats (a track's class is its vote over the track, mapped to category ids by name or
synonym, see `streamseg.eval.categories`; without `categories` the store's vocabulary gives
ids 1..C):
- `coco-panoptic`: OUT/panoptic/NNNNNN.png (id = R + 256 G + 256^2 B, id = track id) and
  OUT/panoptic.json {"images", "annotations", "categories"}, image id = frame row.
- `vipseg`: OUT/panomasks/<video>/NNNNNN.png and OUT/panoptic.json in VIPSeg's own layout
  ({"videos": [{"video_id", "images"}], "annotations": [{"video_id", "annotations"}],
  "categories"}); `streamseg eval video --pred-json OUT/panoptic.json --pred-dir
  OUT/panomasks` scores it.
- `youtube-vis`: OUT/results.json, the YouTube-VIS results list: per thing track
  {"video_id", "category_id", "score", "segmentations": [COCO RLE or null per frame]}.
- `png`: OUT/labels/NNNNNN.png track ids in COCO panoptic colours (all tracks, no category
  mapping) and OUT/tracks.json {"<track id>": {"class", "category_id", "is_thing"}}.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from streamseg.errors import UserError
from streamseg.outputs import check_folder_outputs, record_folder_outputs

FORMATS: tuple[str, ...] = ("coco-panoptic", "vipseg", "youtube-vis", "png")


def _save_png(ids: np.ndarray, path: Path) -> None:
    from PIL import Image

    from streamseg.panoptic_png import id_to_rgb

    Image.fromarray(id_to_rgb(ids)).save(path)


def _write_json(data: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)  # a reader never sees half a JSON file


def export_store(
    store: str | Path,
    out: str | Path,
    fmt: str,
    categories: Mapping[int, Mapping[str, Any]] | None = None,
    category_map: Mapping[str, Any] | None = None,
    video_id: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write `store` as `fmt` into folder `out`.

    Args:
        categories: the dataset's categories (id -> entry with name, isthing, synonyms);
            None = the store's vocabulary.
        category_map: overrides {store class name: category id | name | None}.
        video_id: the video's name in vipseg / youtube-vis output (default: the store's stem).
        overwrite: replace files in `out` that streamseg did not write (see
            `streamseg.outputs`); without it they are refused before anything is written.

    Returns:
        {"format", "frames", "files", "unmapped_classes"}.
    """
    from streamseg.eval.store import StorePrediction

    if fmt not in FORMATS:
        raise UserError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    prediction = StorePrediction(store, categories, category_map)
    out = Path(out)
    name = video_id or Path(store).name.removesuffix(".zarr")
    planned = _planned_files(fmt, len(prediction), name)
    check_folder_outputs(out, planned, inputs=[store], overwrite=overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{out}: cannot create the output folder ({error})") from None
    height, width = prediction.label_size
    category_list = [
        {k: v for k, v in dict(entry).items()} | {"id": cid}
        for cid, entry in prediction.categories.items()
    ]
    if fmt == "coco-panoptic":
        files = _export_coco_panoptic(prediction, out, height, width, category_list)
    elif fmt == "vipseg":
        files = _export_vipseg(prediction, out, name, height, width, category_list)
    elif fmt == "youtube-vis":
        files = _export_youtube_vis(prediction, out, name, category_list)
    else:
        files = _export_png(prediction, out)
    record_folder_outputs(out, planned)
    return {
        "format": fmt,
        "frames": len(prediction),
        "files": files,
        "unmapped_classes": prediction.unmapped,
    }


def _planned_files(fmt: str, frames: int, name: str) -> list[str]:
    """The files (relative to the output folder) that `fmt` writes for `frames` frames."""
    stems = [f"{t:06d}.png" for t in range(frames)]
    if fmt == "coco-panoptic":
        return [f"panoptic/{s}" for s in stems] + ["panoptic.json"]
    if fmt == "vipseg":
        return [f"panomasks/{name}/{s}" for s in stems] + ["panoptic.json"]
    if fmt == "youtube-vis":
        return ["results.json"]
    return [f"labels/{s}" for s in stems] + ["tracks.json"]


def _export_coco_panoptic(prediction: Any, out: Path, height: int, width: int, cats: list) -> int:
    (out / "panoptic").mkdir(exist_ok=True)
    images, annotations = [], []
    for t in range(len(prediction)):
        ids, segments = prediction.frame(t)
        stem = f"{t:06d}"
        _save_png(ids, out / "panoptic" / f"{stem}.png")
        images.append({"id": t, "file_name": f"{stem}.jpg", "height": height, "width": width})
        annotations.append(
            {"image_id": t, "file_name": f"{stem}.png", "segments_info": list(segments.values())}
        )
    _write_json(
        {"images": images, "annotations": annotations, "categories": cats}, out / "panoptic.json"
    )
    return len(images) + 1


def _export_vipseg(
    prediction: Any, out: Path, name: str, height: int, width: int, cats: list
) -> int:
    folder = out / "panomasks" / name
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for t in range(len(prediction)):
        ids, segments = prediction.frame(t)
        stem = f"{t:06d}"
        _save_png(ids, folder / f"{stem}.png")
        images.append({"id": stem, "file_name": f"{stem}.png", "height": height, "width": width})
        # no image_id: the store cannot know the dataset's ids; frames pair by position
        annotations.append({"file_name": f"{stem}.png", "segments_info": list(segments.values())})
    data = {
        "videos": [{"video_id": name, "images": images}],
        "annotations": [{"video_id": name, "annotations": annotations}],
        "categories": cats,
    }
    _write_json(data, out / "panoptic.json")
    return len(images) + 1


def _export_youtube_vis(prediction: Any, out: Path, name: str, cats: list) -> int:
    from streamseg.video.rle import encode_mask

    things = {int(c["id"]) for c in cats if int(c.get("isthing", 0)) == 1}
    # YouTube-VIS video ids are integers: a numeric --video becomes one
    video: str | int = int(name) if name.isdigit() else name
    frames = len(prediction)
    tracks: dict[int, dict[str, Any]] = {}
    for t in range(frames):
        ids, segments = prediction.frame(t)
        for track_id, info in segments.items():
            if info["category_id"] not in things:
                continue
            entry = tracks.setdefault(
                track_id,
                {
                    "video_id": video,
                    "category_id": info["category_id"],
                    "score": prediction.track_score.get(track_id, 1.0),
                    "segmentations": [None] * frames,
                },
            )
            entry["segmentations"][t] = encode_mask(ids == track_id)
    _write_json([tracks[k] for k in sorted(tracks)], out / "results.json")
    return 1


def _export_png(prediction: Any, out: Path) -> int:
    (out / "labels").mkdir(exist_ok=True)
    reader = prediction.reader
    seen: dict[int, int] = {}
    # A storage file of frames at a time (bounded memory, one decode per shard).
    for t, labels in enumerate(reader.iter_labels()):
        if labels.size and (labels.min() < 0 or labels.max() > 256**3 - 1):
            raise UserError(f"{reader.path}: track ids outside 0..2^24-1 do not fit a PNG")
        _save_png(labels, out / "labels" / f"{t:06d}.png")
        for track_id in np.unique(labels).tolist():
            if track_id:
                seen.setdefault(int(track_id), t)
    tracks = {}
    for track_id, first in sorted(seen.items()):
        class_id = prediction.track_class.get(track_id)
        category = prediction.category_of_track(track_id, first)
        cls = prediction.classes[class_id] if class_id is not None else None
        tracks[str(track_id)] = {
            "class": cls["name"] if cls else None,
            "category_id": category,
            "is_thing": bool(cls["is_thing"]) if cls else None,
        }
    _write_json(tracks, out / "tracks.json")
    return len(prediction) + 1
