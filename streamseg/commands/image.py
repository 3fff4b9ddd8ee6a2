"""`streamseg image IMG|DIR|GLOB... [--vocab ...] --out DIR`: panoptic segmentation of images.

Writes, per image, `panoptic/<stem>.png` (COCO panoptic id encoding) and
`overlay/<stem>.png` (coloured masks, outlines, class names), and one
`predictions.json` in the COCO panoptic results format for all images. With
`--categories FILE` (a COCO panoptic JSON or a categories list) the category ids and image ids
are the dataset's, so the folder can be scored by standard tools.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "segment images: panoptic PNGs, overlays and a COCO-panoptic predictions JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="IMG|DIR|GLOB", help="image files, folders or glob patterns"
    )
    parser.add_argument(
        "--vocab",
        default=None,
        help='classes: "person|people,car,red panda" (commas separate classes, | synonyms) '
        "or a built-in dataset name (coco, ade20k, cityscapes, ...); default: the model's own "
        "default vocabulary (shapes for the embedded model)",
    )
    parser.add_argument(
        "--vocab-file", default=None, help="class file (id:name,syn or one per line)"
    )
    parser.add_argument("--stuff", default=None, help='classes that are stuff, e.g. "sky,road"')
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--model",
        default=None,
        help="model name, registry name, folder or .pth (default: the embedded model)",
    )
    parser.add_argument("--clip-weights", default=None, help="open_clip weights for the CLIP")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--categories",
        default=None,
        help="COCO panoptic JSON whose category ids (and image ids) the predictions use",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="images per model call")
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay PNGs")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace files in --out not written by streamseg"
    )


def expand_inputs(items: list[str]) -> list[Path]:
    """Image paths from files, folders and globs, in order, without repeats."""
    from streamseg.errors import UserError
    from streamseg.video.image_folders import list_image_frames

    paths: list[Path] = []
    for item in items:
        listed = list_image_frames(item)
        if listed is not None:
            paths.extend(listed)
        elif Path(item).is_file():
            paths.append(Path(item))
        else:
            raise UserError(f"{item}: no such image, folder or pattern")
    return list(dict.fromkeys(paths))


def _check_readable(path: Path) -> None:
    """Open the image header (cheap): a non-image fails before the model loads."""
    from PIL import UnidentifiedImageError

    from streamseg.errors import UserError
    from streamseg.video.image_folders import open_image

    try:
        with open_image(path):
            pass  # opening reads and checks the header
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise UserError(f"{path}: not a readable image ({error})") from None


def _read(path: Path):  # noqa: ANN202 - numpy array
    from streamseg.errors import UserError
    from streamseg.video.image_folders import read_image

    try:
        return read_image(path)
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a readable image ({error})") from None


def _vocabulary(args: argparse.Namespace) -> Any:
    """The vocabulary the flags give, or None (then the model's default applies)."""
    from streamseg.model.vocab import vocabulary_from_options

    return vocabulary_from_options(args.vocab, args.vocab_file, args.stuff)


def load_segmenter(model: str | None, clip_weights: str | None, device: str) -> Any:
    """The one loader (`streamseg.model.load`), with this command's note for presets."""
    from streamseg.model.load import load_segmenter as load

    return load(model, clip_weights, device, note="streamseg image")


def _unique_stems(paths: list[Path]) -> list[str]:
    """Output names: the file stems, with _2, _3 ... for repeats (same stem, other folders)."""
    counts: dict[str, int] = {}
    stems = []
    for path in paths:
        counts[path.stem] = counts.get(path.stem, 0) + 1
        stems.append(path.stem if counts[path.stem] == 1 else f"{path.stem}_{counts[path.stem]}")
    return stems


def run(args: argparse.Namespace) -> int:
    import json

    from streamseg.errors import UserError
    from streamseg.image_outputs import (
        encode_panoptic,
        image_id_for,
        match_categories,
        read_dataset_file,
        segments_info,
        vocabulary_categories,
        write_json,
        write_png,
    )
    from streamseg.outputs import check_folder_outputs, record_folder_outputs
    from streamseg.video.render import draw_overlay

    if args.batch_size < 1:
        raise UserError("--batch-size: must be at least 1")
    vocabulary = _vocabulary(args)
    paths = expand_inputs(args.inputs)
    dataset = read_dataset_file(args.categories) if args.categories else None
    # Check every image first: a non-image fails before the model loads or anything is written.
    for path in paths:
        _check_readable(path)
    out = Path(args.out)
    stems = _unique_stems(paths)
    planned = [f"panoptic/{stem}.png" for stem in stems] + ["predictions.json"]
    if not args.no_overlay:
        planned += [f"overlay/{stem}.png" for stem in stems]
    check_folder_outputs(out, planned, inputs=paths, overwrite=args.overwrite)
    segmenter = load_segmenter(args.model, args.clip_weights, args.device)
    if vocabulary is None:  # no --vocab: the model's default, as `streamseg run` resolves it
        from streamseg.model.default_vocab import require_vocabulary

        vocabulary = require_vocabulary(segmenter, args.model)
    if dataset is not None:
        category_ids = match_categories(vocabulary, dataset["categories"], args.categories)
        categories = dataset["categories"]
        dataset_images = dataset.get("images")
    else:
        category_ids = [index + 1 for index in range(len(vocabulary))]
        categories = vocabulary_categories(vocabulary)
        dataset_images = None
    segmenter.set_vocabulary(vocabulary)

    annotations, images = [], []
    for start in range(0, len(paths), args.batch_size):
        batch_paths = paths[start : start + args.batch_size]
        frames = [_read(path) for path in batch_paths]
        results = segmenter.segment(frames)
        for offset, (path, frame, result) in enumerate(
            zip(batch_paths, frames, results, strict=True)
        ):
            stem = stems[start + offset]
            png_name = f"{stem}.png"
            write_png(out / "panoptic" / png_name, encode_panoptic(result.panoptic))
            if not args.no_overlay:
                names = {s.id: vocabulary.names[s.class_id] for s in result.segments}
                write_png(out / "overlay" / png_name, draw_overlay(frame, result.panoptic, names))
            image_id = image_id_for(path.name, dataset_images)
            height, width = frame.shape[:2]
            images.append(
                {"id": image_id, "file_name": path.name, "height": height, "width": width}
            )
            annotations.append(
                {
                    "image_id": image_id,
                    "file_name": png_name,
                    "segments_info": segments_info(result, category_ids),
                }
            )
            print(f"{path}: {len(result.segments)} segments", file=sys.stderr)
    write_json(
        out / "predictions.json",
        {
            "info": {
                "model": segmenter.model_id,
                "vocabulary": json.loads(vocabulary.to_json()),
            },
            "images": images,
            "annotations": annotations,
            "categories": categories,
        },
    )
    record_folder_outputs(out, planned)
    print(f"wrote {len(paths)} images to {out} (predictions.json, panoptic/, overlay/)")
    return 0
