"""`streamseg info STORE`: what a label store holds (frames, tracks, classes with counts);
`streamseg info --check STORE`: whether it is intact (every chunk read, every problem listed)."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "summarize a label store: frames done, tracks, classes with counts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="a .zarr store written by `streamseg run`")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--check",
        action="store_true",
        help="verify the whole store (read every chunk); list each problem, exit 2 if damaged",
    )


def store_summary(path: str) -> dict[str, object]:
    """The facts `info` prints, as a dict."""
    import numpy as np

    from streamseg.video.store import open_store

    reader = open_store(path)
    attrs = reader.attrs
    names = reader.class_names
    tracks = reader.tracks
    classes: dict[str, dict[str, int]] = {}
    segment_classes = reader.segments["class_id"]
    for class_id in sorted(set(tracks["class_id"].tolist()) | set(segment_classes.tolist())):
        name = names[class_id] if 0 <= class_id < len(names) else f"#{class_id}"
        classes[name] = {
            "tracks": int(np.sum(tracks["class_id"] == class_id)),
            "segments": int(np.sum(segment_classes == class_id)),
        }
    times = reader.frames["time"]
    source = attrs.get("source", {})
    return {
        "store": str(path),
        "status": reader.status,
        "schema": reader.schema,
        "frames": reader.num_frames,
        "label_size": list(reader.label_size),
        "time_range": [float(times[0]), float(times[-1])] if len(times) else None,
        "segments": reader.num_segments,
        "tracks": int(len(tracks["track_id"])),
        "classes": classes,
        "source": source.get("path"),
        "model": attrs.get("model", {}).get("id"),
        "corrupt_packets": int(attrs.get("decode", {}).get("corrupt_packets", 0)),
        "decode": dict(attrs.get("decode") or {}),
    }


def check(path: str, as_json: bool) -> int:
    """`info --check`: the problems on stderr, one a line, as the CLI prints errors (exit 2),
    or what was verified (exit 0)."""
    from streamseg.video.store_check import check_store

    result = check_store(path)
    if as_json:
        print(result.to_json())
    elif result.ok:
        print(f"{path}: ok")
        for fact in result.facts:
            print(f"  {fact}")
    for problem in result.problems:
        print(f"streamseg info: error: {path}: damaged store: {problem}", file=sys.stderr)
    return 0 if result.ok else 2


def run(args: argparse.Namespace) -> int:
    if args.check:
        return check(args.store, args.json)
    summary = store_summary(args.store)
    if args.json:
        print(json.dumps(summary))
        return 0
    height, width = summary["label_size"]  # type: ignore[misc]
    print(f"{summary['store']}: {summary['status']}")
    print(f"  schema:   {summary['schema']}")
    print(f"  source:   {summary['source']}")
    print(f"  model:    {summary['model']}")
    span = summary["time_range"]
    when = f", {span[0]:.3f}-{span[1]:.3f} s" if span else ""  # type: ignore[index]
    print(f"  frames:   {summary['frames']} ({height}x{width} labels{when})")
    print(f"  segments: {summary['segments']}")
    print(f"  tracks:   {summary['tracks']}")
    if summary["corrupt_packets"]:
        print(f"  corrupt packets skipped: {summary['corrupt_packets']}")
    from streamseg.video.run_summary import decode_record_lines

    for line in decode_record_lines(summary["decode"]):  # type: ignore[arg-type]
        print(f"  {line}")
    classes = summary["classes"]
    if classes:
        print("  classes:")
        for name, counts in classes.items():  # type: ignore[union-attr]
            print(f"    {name}: {counts['tracks']} tracks, {counts['segments']} segments")
    return 0
