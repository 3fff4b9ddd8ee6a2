"""`streamseg index STORES|DIRS... --out INDEX`: one search index over many stores' tracks,
built incrementally (new stores appended, changed ones replaced), in parallel with Dask."""

from __future__ import annotations

import argparse
import sys

from streamseg.errors import UserError

HELP = "build or update a search index over stores (for streamseg search)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="STORE|DIR", help="stores or folders of them")
    parser.add_argument("--out", required=True, metavar="INDEX", help="index folder")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="read the stores in N local Dask worker processes (default 0: in this process)",
    )
    parser.add_argument(
        "--scheduler", metavar="tcp://HOST:PORT", help="read them on this Dask scheduler's workers"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    from contextlib import nullcontext
    from dataclasses import asdict

    from streamseg.catalog.index import update_index

    if args.workers < 0:
        raise UserError(f"--workers: must be at least 0, got {args.workers}")

    def say(line: str) -> None:
        print(f"streamseg index: {line}", file=sys.stderr)

    if args.scheduler is None and args.workers == 0:
        context = nullcontext(None)
    else:
        from streamseg.batch.cluster import open_client

        context = open_client(args.scheduler, n_workers=args.workers or None, dashboard=False)
    with context as client:
        report = update_index(args.out, args.inputs, client=client, say=say)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(
            f"{args.out}: {report.tracks} tracks; {len(report.added)} store(s) added, "
            f"{len(report.replaced)} replaced, {len(report.unchanged)} unchanged"
            + (" (compacted)" if report.compacted else "")
        )
    return 0
