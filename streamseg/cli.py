"""`streamseg` command line: one subcommand per module in streamseg/commands/.

Each command module is light to import (heavy libraries are imported inside its `run`), so
`streamseg --help` is fast and lists every subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from streamseg.errors import UserError

# Order shown by `streamseg --help`. Each name is a module streamseg.commands.<name> with
# `HELP: str`, `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: tuple[str, ...] = (
    "image",
    "weights",
    "synth",
    "clip",
    "train",
    "run",
    "info",
    "render",
    "batch",
    "eval",
    "export",
    "index",
    "search",
    "bench",
    "measure",
    "tracking",
    "app",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamseg",
        description="Open-vocabulary video segmentation and tracking (FC-CLIP).",
    )
    from streamseg import __version__

    parser.add_argument("--version", action="version", version=f"streamseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"streamseg.commands.{name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as error:
        print(f"streamseg {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"streamseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `streamseg info STORE | head -3`: the reader left. Like other Unix tools: no
        # traceback, and stdout pointed at /dev/null so the interpreter's final flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by the pipe


if __name__ == "__main__":
    sys.exit(main())
