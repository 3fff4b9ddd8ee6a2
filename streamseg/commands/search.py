"""`streamseg search INDEX|STORES... --query "red kite"`: tracks ranked by how well the words
describe them (CLIP's text tower against each track's vector), with optional thumbnails."""

from __future__ import annotations

import argparse

from streamseg.errors import UserError

HELP = "search processed videos by words: tracks ranked by a text query"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sources", nargs="+", metavar="INDEX|STORE|DIR", help="an index, or stores / folders"
    )
    parser.add_argument("--query", required=True, help='words; "a|b" for synonyms')
    parser.add_argument("--top", type=int, default=10, metavar="K", help="hits shown (10)")
    parser.add_argument("--json", action="store_true", help="print the hits as JSON")
    parser.add_argument(
        "--thumbnails",
        metavar="DIR",
        help="write a crop of each hit's best frame from its source video, outline drawn",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="the model that made the stores, when its name alone does not find it (a path)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from dataclasses import asdict

    from streamseg.catalog.query import search

    if args.top < 1:
        raise UserError(f"--top: must be at least 1, got {args.top}")
    segmenter = None
    if args.model is not None:
        from streamseg.model.load import load_segmenter

        segmenter = load_segmenter(args.model, device=args.device)
    hits = search(args.sources, args.query, args.top, segmenter=segmenter, device=args.device)
    pictures: list[str | None] = [None] * len(hits)
    if args.thumbnails:
        from streamseg.catalog.thumbnails import write_thumbnails

        pictures = [str(p) if p else None for p in write_thumbnails(hits, args.thumbnails)]
    if args.json:
        rows = [{**asdict(h), "thumbnail": p} for h, p in zip(hits, pictures, strict=True)]
        print(json.dumps(rows, indent=2))
        return 0
    if not hits:
        print("no tracks", file=sys.stderr)
        return 0
    for hit, picture in zip(hits, pictures, strict=True):
        line = (
            f"{hit.rank:>3}  {hit.score:.3f}  {hit.store}  track {hit.track_id}  "
            f"({hit.class_name})  {hit.first_time:.2f}-{hit.last_time:.2f} s"
        )
        print(line + (f"  {picture}" if picture else ""))
    return 0
