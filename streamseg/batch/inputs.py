"""The videos of a batch: files, folders and glob patterns turned into a deterministic list."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from streamseg.errors import UserError

# File name endings walked for in folders and kept from glob matches (lower case). A file
# named explicitly on the command line is taken whatever its ending.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".3g2", ".3gp", ".asf", ".avi", ".divx", ".dv", ".f4v", ".flv", ".gif", ".m2t",
        ".m2ts", ".m2v", ".m4v", ".mj2", ".mjpeg", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg",
        ".mts", ".mxf", ".nut", ".ogv", ".qt", ".rm", ".rmvb", ".ts", ".vob", ".webm", ".wmv",
        ".y4m",
    }
)  # fmt: skip

_GLOB_MAGIC = ("*", "?", "[")


@dataclass(frozen=True)
class VideoInput:
    """One video of a batch.

    Attributes:
        path: the video file, absolute.
        name: where its store goes under the output folder, without the `.zarr` ending
            (the file's path relative to the folder or glob base it was found under).
    """

    path: Path
    name: PurePosixPath


def _is_video_name(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _walk_videos(folder: Path) -> Iterator[Path]:
    """Video files under `folder`, depth first in sorted order, hidden entries skipped."""
    for root, dirs, files in os.walk(folder):
        # Sorting in place fixes os.walk's descent order; hidden folders (.git, .cache) and
        # stores (*.zarr, which may sit next to the videos) are not descended into.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(".zarr"))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and _is_video_name(path):
                yield path


def _glob_base(pattern: str) -> Path:
    """The longest leading part of a glob pattern without magic characters."""
    parts: list[str] = []
    for part in Path(pattern).parts:
        if any(ch in part for ch in _GLOB_MAGIC):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _relative_name(path: Path, base: Path) -> PurePosixPath:
    relative = path.resolve().relative_to(base.resolve())
    return PurePosixPath(relative.as_posix())


def _glob_videos(pattern: Path) -> list[Path]:
    """Matches of a glob pattern in sorted order: folders walked, files with a video ending."""
    found: list[Path] = []
    for match in sorted(glob.glob(str(pattern), recursive=True)):
        candidate = Path(match)
        if candidate.is_dir():
            found.extend(_walk_videos(candidate))
        elif candidate.is_file() and _is_video_name(candidate):
            found.append(candidate)
    return found


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[VideoInput]:
    """Turn command-line inputs into a deterministic list of videos.

    - a file is taken as it is (any ending: a corrupt or non-video file becomes a failed
      record, not a crash);
    - a folder is walked recursively for files with a video ending (`VIDEO_EXTENSIONS`),
      in sorted order, skipping hidden entries and `*.zarr` folders;
    - anything else containing `*`, `?` or `[` is a glob pattern (`**` recurses); its
      matches are taken in sorted order, folders among them walked, files kept if they have
      a video ending.

    The same file reached twice is kept once (first occurrence). Order: inputs in the order
    given, each expanded in sorted order.

    Raises:
        UserError: an input that does not exist, or a folder or pattern without any video.
    """
    videos: list[VideoInput] = []
    seen: set[Path] = set()

    def add(path: Path, name: PurePosixPath) -> None:
        resolved = path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            videos.append(VideoInput(path=resolved, name=name))

    for item in inputs:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_file():
            add(path, PurePosixPath(path.name))
        elif path.is_dir():
            found = list(_walk_videos(path))
            if not found:
                raise UserError(f"{text}: no video files in this folder")
            for video in found:
                add(video, _relative_name(video, path))
        elif any(ch in text for ch in _GLOB_MAGIC):
            found = _glob_videos(path)
            if not found:
                raise UserError(f"{text}: no video files match this pattern")
            base = _glob_base(str(path))
            for video in found:
                add(video, _relative_name(video, base))
        else:
            raise UserError(f"{text}: no such file or folder")
    return videos
