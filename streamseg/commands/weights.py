"""`streamseg weights list|fetch|path`: the known external weights (weights/registry.toml)."""

from __future__ import annotations

import argparse

HELP = "list, download (with sha256 check) or locate known FC-CLIP and CLIP weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry", default=None, help="registry TOML (default: weights/registry.toml)"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="show every known weights file")
    listing.add_argument("--json", action="store_true", help="machine-readable JSON")
    listing.add_argument("--cache", default=None, help="cache folder to check for files")
    fetch = actions.add_parser("fetch", help="download weights into the cache folder")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="registry names")
    fetch.add_argument(
        "--cache",
        default=None,
        help="folder for the files (default: $STREAMSEG_CACHE/weights "
        "or ~/.cache/streamseg/weights)",
    )
    fetch.add_argument(
        "--no-clip", action="store_true", help="do not also fetch an FC-CLIP entry's CLIP weights"
    )
    fetch.add_argument("--force", action="store_true", help="download even if already cached")
    fetch.add_argument("--timeout", type=float, default=60.0, help="network timeout, seconds")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    path = actions.add_parser("path", help="print where a weights file is (or would be) cached")
    path.add_argument("name", metavar="NAME")
    path.add_argument("--cache", default=None, help="cache folder")


def _size(value: int | None) -> str:
    if value is None:
        return "unknown"
    return f"{value / 2**20:.1f} MiB"


def run(args: argparse.Namespace) -> int:
    import json

    from streamseg.weights import cached_path, fetch_weights, get_entry, load_registry

    registry = load_registry(args.registry)
    if args.action == "list":
        rows = []
        for entry in registry.values():
            row = entry.to_dict()
            row["cached"] = cached_path(entry, args.cache).is_file()
            row["path"] = str(cached_path(entry, args.cache))
            rows.append(row)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for row, entry in zip(rows, registry.values(), strict=True):
            print(f"{entry.name}  [{entry.kind}]{'  (cached)' if row['cached'] else ''}")
            print(f"    {entry.description}")
            print(f"    url:     {entry.url}")
            print(f"    license: {entry.license}")
            print(f"    size:    {_size(entry.size)}")
            print(f"    sha256:  {entry.sha256 or 'unknown'}")
            if entry.preset:
                print(f"    preset:  {entry.preset}   CLIP weights: {entry.clip_weights}")
            if entry.clip_model:
                print(f"    open_clip model: {entry.clip_model}")
        return 0
    if args.action == "path":
        print(cached_path(get_entry(args.name, registry), args.cache))
        return 0
    names: list[str] = []
    for name in args.names:
        entry = get_entry(name, registry)
        names.append(name)
        if entry.clip_weights and not args.no_clip:
            names.append(entry.clip_weights)
    for name in dict.fromkeys(names):
        entry = get_entry(name, registry)
        result = fetch_weights(
            entry, args.cache, timeout=args.timeout, progress=not args.quiet, force=args.force
        )
        state = "downloaded" if result.downloaded else "already cached"
        check = (
            "sha256 verified"
            if result.verified
            else f"could not verify: the registry has no sha256 (got {result.sha256})"
        )
        print(f"{name}: {state} at {result.path}; {check}")
    return 0
