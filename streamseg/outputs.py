"""Guards for the files streamseg writes: an output never replaces an input, and an existing
file that streamseg did not write is replaced only when the user says `--overwrite`.

How streamseg recognises its own files:
- overlay mp4s carry a container comment (`OVERLAY_COMMENT`), read back with PyAV;
- files written into an output folder (`export`, `image`) are listed, with their size and
  modification time, in the folder's ledger `.streamseg-written.json`: a listed file that
  still has that size and time is ours; one changed since (or never listed) is the user's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from streamseg.errors import UserError

OVERLAY_COMMENT = "written by streamseg (overlay)"
LEDGER = ".streamseg-written.json"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_input(out: str | Path, inputs: Iterable[str | Path | None], what: str) -> None:
    """Raise if `out` is one of `inputs` (the same file, or the same resolved path).

    Args:
        out: the path about to be written.
        inputs: the files and folders the command reads (None entries are skipped).
        what: the option naming `out` ("--overlay", "--out"), for the message.
    """
    out = Path(out)
    for item in inputs:
        if item is None:
            continue
        source = Path(item)
        if _same_file(out, source) or out.resolve() == source.resolve():
            raise UserError(f"{out}: {what} is an input of this command; refusing to replace it")


def overlay_is_ours(path: str | Path) -> bool:
    """True if `path` is an mp4 that streamseg wrote (its container comment says so)."""
    import av

    try:
        with av.open(str(path)) as container:
            return container.metadata.get("comment") == OVERLAY_COMMENT
    except (OSError, av.error.FFmpegError, ValueError):
        return False


def check_overlay_output(
    path: str | Path,
    *,
    inputs: Iterable[str | Path | None],
    overwrite: bool,
    what: str,
    suffixes: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv"),
) -> None:
    """Refuse to write an overlay mp4 over an input, a folder, or a file that is not ours.

    Raises:
        UserError: `path` is an input; a folder; has no `.mp4`/`.mov`/`.mkv` suffix; or exists,
            was not written by streamseg, and `overwrite` is False.
    """
    path = Path(path)
    refuse_input(path, inputs, what)
    if path.is_dir():
        raise UserError(f"{path}: {what} is a folder; give a file name ending in .mp4")
    if path.suffix.lower() not in suffixes:
        raise UserError(
            f"{path}: {what} must end in {' or '.join(suffixes)} (the overlay is an H.264 video)"
        )
    if path.exists() and not overwrite and not overlay_is_ours(path):
        raise UserError(
            f"{path}: exists and was not written by streamseg; --overwrite to replace it"
        )


def _ledger(folder: Path) -> dict[str, list[int]]:
    try:
        data = json.loads((folder / LEDGER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def check_folder_outputs(
    folder: str | Path,
    names: Iterable[str],
    *,
    inputs: Iterable[str | Path | None] = (),
    overwrite: bool = False,
) -> None:
    """Refuse to write files `names` (relative paths) into `folder` over files not ours.

    Raises:
        UserError: `folder` is an input, a file, or a Zarr store; or a file among `names`
            exists that the folder's ledger does not vouch for, and `overwrite` is False.
    """
    folder = Path(folder)
    refuse_input(folder, inputs, "--out")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: --out exists and is not a folder")
    for place in (folder.resolve(), *folder.resolve().parents):
        if (place / "zarr.json").exists():
            raise UserError(f"{folder}: --out is inside the Zarr store {place}; choose another")
    if overwrite or not folder.is_dir():
        return
    ledger = _ledger(folder)
    for name in names:
        path = folder / name
        if path.is_dir():
            raise UserError(f"{path}: exists and is a folder; refusing to replace it")
        if path.exists() and ledger.get(name) != _stamp(path):
            raise UserError(
                f"{path}: exists and was not written by streamseg; --overwrite to replace it"
            )


def record_folder_outputs(folder: str | Path, names: Iterable[str]) -> None:
    """Add the files `names` (just written into `folder`) to the folder's ledger."""
    folder = Path(folder)
    ledger = _ledger(folder)
    for name in names:
        path = folder / name
        if path.is_file():
            ledger[name] = _stamp(path)
    tmp = folder / (LEDGER + ".tmp")
    tmp.write_text(json.dumps(ledger, sort_keys=True))
    tmp.replace(folder / LEDGER)
