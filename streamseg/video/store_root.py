"""The root `zarr.json` of a schema-2 store: its attributes and its consolidated metadata.

Consolidated metadata (zarr-python's inline form: every member's metadata copied into the
root's `consolidated_metadata`) lets a reader open the store with one file read, which matters
on network storage; xarray and zarr use it by default. Its shapes are the *committed* ones: the
writer grows arrays ahead of the commit record in large steps (few metadata rewrites), so the
members' own zarr.json may hold uncommitted rows, never the consolidated copy. It is rewritten
after each commit record (so it lags by at most one commit, never runs ahead: a reader through
it sees a prefix of the committed frames) and once more at finish, when every array is trimmed
and both agree. streamseg's own reader ignores it and measures against the commit record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streamseg.video.store_commit import replace_file

CONSOLIDATED_KEY = "consolidated_metadata"


def group_metadata(attributes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A group's metadata document as consolidated (zarr-python nests an empty one per group)."""
    return {
        "attributes": dict(attributes or {}),
        "zarr_format": 3,
        CONSOLIDATED_KEY: {"kind": "inline", "must_understand": False, "metadata": {}},
        "node_type": "group",
    }


def read_member_metadata(store: Path, name: str) -> dict[str, Any]:
    """The metadata document (zarr.json) of member `name` as written by zarr."""
    return json.loads((store / name / "zarr.json").read_text())


def write_root(
    store: Path,
    attributes: Mapping[str, Any],
    members: Mapping[str, Mapping[str, Any]],
    rows: Mapping[str, int],
) -> None:
    """Replace the root zarr.json (atomic, durable) with `attributes` and the consolidated
    metadata of `members` (name -> its zarr.json document), each array's first dimension set to
    `rows[name]` (the committed rows)."""
    consolidated: dict[str, Any] = {}
    for name, document in sorted(members.items()):
        entry = json.loads(json.dumps(document))
        if entry.get("node_type") == "array":
            entry["shape"] = [int(rows[name]), *entry["shape"][1:]]
        consolidated[name] = entry
    root = {
        "attributes": dict(attributes),
        "zarr_format": 3,
        CONSOLIDATED_KEY: {"kind": "inline", "must_understand": False, "metadata": consolidated},
        "node_type": "group",
    }
    replace_file(store / "zarr.json", json.dumps(root))
