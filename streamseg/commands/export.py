"""`streamseg export STORE --format coco-panoptic|vipseg|youtube-vis|png --out DIR`."""

from __future__ import annotations

import argparse
import json

HELP = "write a label store as COCO panoptic, VIPSeg, YouTube-VIS results or PNG files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="a .zarr store written by `streamseg run`")
    parser.add_argument(
        "--format",
        required=True,
        choices=("coco-panoptic", "vipseg", "youtube-vis", "png"),
        help="output format",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--categories",
        help="the dataset's categories: a COCO/VIPSeg JSON with a 'categories' list, or a "
        "built-in name (coco, ade20k, cityscapes, mapillary, coco-stuff); default: the store's "
        "own vocabulary as ids 1..C",
    )
    parser.add_argument(
        "--category-map",
        help="JSON {store class: category id | category name | null} overriding the match by "
        "name / synonym",
    )
    parser.add_argument("--video", help="video name in vipseg / youtube-vis output")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace files in --out not written by streamseg"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def load_categories(value: str | None) -> dict[int, dict] | None:
    """`--categories`: a JSON file's categories, or a built-in dataset's; None = vocabulary."""
    if value is None:
        return None
    from pathlib import Path

    from streamseg.errors import UserError
    from streamseg.eval.formats import read_categories, read_json

    if Path(value).exists():
        return read_categories(read_json(value), value)
    import streamseg

    path = Path(streamseg.__file__).parent / "data" / "vocab" / "categories.json"
    builtin = json.loads(path.read_text())
    keys = {
        "coco": "coco_categories_with_prompt_eng",
        "ade20k": "ade20k_categories_with_prompt_eng",
        "cityscapes": "cityscapes_categories_with_prompt_eng",
        "mapillary": "mapillary_vistas_categories_with_prompt_eng",
        "coco-stuff": "coco_stuff_categories",
    }
    key = keys.get(value)
    if key is None or key not in builtin:
        raise UserError(f"--categories: {value!r} is neither a file nor one of {sorted(keys)}")
    return {int(c["id"]): c for c in builtin[key]}


def run(args: argparse.Namespace) -> int:
    from streamseg.eval.categories import read_category_map
    from streamseg.export import export_store

    summary = export_store(
        args.store,
        args.out,
        args.format,
        categories=load_categories(args.categories),
        category_map=read_category_map(args.category_map),
        video_id=args.video,
        overwrite=args.overwrite,
    )
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['frames']} frames as {summary['format']} to {args.out}")
        if summary["unmapped_classes"]:
            print(f"classes without a category (left out): {summary['unmapped_classes']}")
    return 0
