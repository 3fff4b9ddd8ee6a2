"""`streamseg weights list|fetch|path|ship|card`: the known external weights
(weights/registry.toml), and shipping our own trained model (weights/shapes-tiny/)."""

from __future__ import annotations

import argparse

HELP = (
    "list, download (with sha256 check) or locate known FC-CLIP and CLIP weights; "
    "ship a trained model folder (fp16) and write its model card"
)


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
    ship = actions.add_parser(
        "ship",
        help="turn a training output folder (config.json + model.safetensors) into a shipped "
        "one: fp16 weights, default vocabulary, SHA256SUMS, size check",
    )
    ship.add_argument("source", metavar="SOURCE", help="model folder, e.g. RUN/fcclip/model")
    ship.add_argument("target", metavar="TARGET", help="shipped folder, e.g. weights/shapes-tiny")
    ship.add_argument(
        "--default-vocab",
        default=None,
        help="vocabulary used when the user gives none: a built-in name (shapes) or "
        "'a|syn,b' (default: keep the source's)",
    )
    ship.add_argument("--default-stuff", default=None, help="stuff classes of --default-vocab")
    ship.add_argument(
        "--max-mb", type=float, default=40.0, help="refuse weights larger than this (1 MB = 1e6)"
    )
    ship.add_argument(
        "--fp16-tokens",
        action="store_true",
        help="keep the CLIP token table in fp16 (default: int8 rows, half the bytes)",
    )
    card = actions.add_parser("card", help="write a shipped model's MODEL_CARD.md from run logs")
    card.add_argument("--model", required=True, help="the shipped folder (weights/shapes-tiny)")
    card.add_argument("--clip-eval", default=None, help="JSON of `streamseg clip eval --json`")
    card.add_argument("--measure", default=None, help="measure.json of `streamseg measure`")
    card.add_argument("--clip-run", default=None, help="CLIP run folder (log.jsonl)")
    card.add_argument("--fcclip-run", default=None, help="FC-CLIP run folder (metrics.jsonl)")
    card.add_argument(
        "--recipe", default="pipelines/train-shapes-tiny.toml", help="training recipe TOML"
    )
    card.add_argument("--out", default=None, help="card file (default: MODEL/MODEL_CARD.md)")


def _size(value: int | None) -> str:
    if value is None:
        return "unknown"
    return f"{value / 2**20:.1f} MiB"


def _ship(args: argparse.Namespace) -> int:
    from streamseg.model.ship import ship_folder

    result = ship_folder(
        args.source,
        args.target,
        default_vocab=args.default_vocab,
        default_stuff=args.default_stuff,
        max_bytes=int(args.max_mb * 1e6),
        int8_rows=not args.fp16_tokens,
    )
    print(
        f"shipped {args.source} -> {result.folder}: model.safetensors "
        f"{result.weights_bytes / 1e6:.2f} MB (source {result.source_bytes / 1e6:.2f} MB), "
        f"sha256 {result.sha256}"
    )
    if result.int8_rows:
        print(f"stored as int8 rows: {', '.join(result.int8_rows)}")
    if result.kept_fp32:
        print(f"kept in fp32 (fp16 would overflow): {', '.join(result.kept_fp32)}")
    print(f"checksums of {', '.join(result.files)} in {result.folder}/SHA256SUMS")
    return 0


def _card(args: argparse.Namespace) -> int:
    from pathlib import Path

    from streamseg.model.card import write_model_card

    out = Path(args.out) if args.out else Path(args.model) / "MODEL_CARD.md"
    write_model_card(
        out,
        model_folder=args.model,
        clip_eval=args.clip_eval,
        measure=args.measure,
        clip_run=args.clip_run,
        fcclip_run=args.fcclip_run,
        recipe=args.recipe,
    )
    print(f"wrote {out}")
    return 0


def run(args: argparse.Namespace) -> int:
    import json

    if args.action == "ship":
        return _ship(args)
    if args.action == "card":
        return _card(args)
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
