"""`streamseg image`: panoptic segmentation of still images (being written)."""

from __future__ import annotations

import argparse

HELP = "segment images: panoptic PNGs, overlays and a COCO-panoptic predictions JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMG|DIR|GLOB")


def run(args: argparse.Namespace) -> int:
    from streamseg.errors import UserError

    raise UserError("image: not implemented yet")
