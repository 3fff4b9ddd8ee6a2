"""Known external weights (weights/registry.toml), the cache folder, and downloads.

    entries = load_registry()
    path = fetch_weights(entries["fcclip-convnext-large-coco"])   # progress bar + sha256

Downloads go to a temporary file in the cache folder and are renamed into place only when
complete (and, when the registry knows the sha256, verified), so an interrupted or corrupt
download never leaves a file that looks finished. An unknown checksum is never guessed: the
fetch then reports that it could not verify the file.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from streamseg.errors import UserError

# Registry locations: the repository's weights/ folder, then a copy shipped in the package.
REGISTRY_PATHS = (
    Path(__file__).resolve().parents[1] / "weights" / "registry.toml",
    Path(__file__).resolve().parent / "data" / "weights" / "registry.toml",
)
UNKNOWN = "unknown"
KINDS = ("fcclip", "open_clip")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsEntry:
    """One registry entry (see the field comments in weights/registry.toml)."""

    name: str
    kind: str
    description: str
    url: str
    page: str
    filename: str
    sha256: str | None  # None = unknown
    size: int | None  # bytes; None = unknown
    license: str
    preset: str | None = None
    clip_weights: str | None = None
    clip_model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; unknown values as "unknown"."""
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "url": self.url,
            "page": self.page,
            "filename": self.filename,
            "sha256": self.sha256 or UNKNOWN,
            "size": self.size if self.size is not None else UNKNOWN,
            "license": self.license,
            "preset": self.preset,
            "clip_weights": self.clip_weights,
            "clip_model": self.clip_model,
        }


def cache_root() -> Path:
    """$STREAMSEG_CACHE, else ~/.cache/streamseg."""
    value = os.environ.get("STREAMSEG_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "streamseg"


def weights_dir(cache: str | Path | None = None) -> Path:
    """Folder of downloaded weights: `cache` if given, else <cache_root>/weights."""
    return Path(cache).expanduser() if cache is not None else cache_root() / "weights"


def default_registry_path() -> Path:
    for path in REGISTRY_PATHS:
        if path.is_file():
            return path
    return REGISTRY_PATHS[0]


def _entry(name: str, data: Any, source: Path) -> WeightsEntry:
    if not isinstance(data, dict):
        raise UserError(f"{source}: [{name}] must be a table")
    for key in ("kind", "url", "filename", "license"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise UserError(f"{source}: [{name}] needs a '{key}' string")
    if data["kind"] not in KINDS:
        raise UserError(f"{source}: [{name}] kind must be one of {', '.join(KINDS)}")
    sha256 = str(data.get("sha256", UNKNOWN)).lower()
    if sha256 == UNKNOWN:
        digest = None
    elif len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256):
        digest = sha256
    else:
        raise UserError(f'{source}: [{name}] sha256 must be 64 hex digits or "unknown"')
    size = data.get("size", UNKNOWN)
    if size != UNKNOWN and not (isinstance(size, int) and size > 0):
        raise UserError(f'{source}: [{name}] size must be a positive byte count or "unknown"')
    if Path(data["filename"]).name != data["filename"]:
        raise UserError(f"{source}: [{name}] filename must be a plain file name")
    return WeightsEntry(
        name=name,
        kind=data["kind"],
        description=str(data.get("description", "")),
        url=data["url"],
        page=str(data.get("page", data["url"])),
        filename=data["filename"],
        sha256=digest,
        size=None if size == UNKNOWN else int(size),
        license=data["license"],
        preset=data.get("preset"),
        clip_weights=data.get("clip_weights"),
        clip_model=data.get("clip_model"),
    )


def load_registry(path: str | Path | None = None) -> dict[str, WeightsEntry]:
    """Registry entries by name, in file order.

    Raises:
        UserError: the file is missing, not TOML, or an entry lacks a field or names an
            unknown CLIP entry.
    """
    path = Path(path) if path is not None else default_registry_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: weights registry not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UserError(f"{path}: cannot read the weights registry ({error})") from None
    entries = {name: _entry(name, value, path) for name, value in data.items()}
    for entry in entries.values():
        if entry.clip_weights is not None and entry.clip_weights not in entries:
            raise UserError(
                f"{path}: [{entry.name}] clip_weights names no entry ({entry.clip_weights})"
            )
    return entries


def get_entry(name: str, registry: dict[str, WeightsEntry] | None = None) -> WeightsEntry:
    """The entry called `name`; a UserError listing the known names otherwise."""
    registry = load_registry() if registry is None else registry
    if name not in registry:
        raise UserError(f"{name}: unknown weights (known: {', '.join(registry)})")
    return registry[name]


def cached_path(entry: WeightsEntry, cache: str | Path | None = None) -> Path:
    """Where `entry`'s file lives (or will live) in the cache folder."""
    return weights_dir(cache) / entry.filename


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FetchResult:
    """Outcome of `fetch_weights`."""

    path: Path
    sha256: str
    verified: bool  # the registry knew the sha256 and the file matches it
    downloaded: bool  # False when a good file was already in the cache


def _copy_with_progress(
    source: IO[bytes], target: IO[bytes], total: int | None, label: str, progress: bool
) -> str:
    """Stream `source` into `target` with a tqdm bar; return the sha256 of the bytes."""
    from tqdm import tqdm

    digest = hashlib.sha256()
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        disable=not progress,
        file=sys.stderr,
    ) as bar:
        while block := source.read(_CHUNK):
            target.write(block)
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def _download(entry: WeightsEntry, target: Path, timeout: float, progress: bool) -> str:
    """Download `entry.url` to `target` atomically; return its sha256."""
    import urllib.error
    import urllib.request

    def fail(reason: object) -> UserError:
        return UserError(
            f"could not download {entry.url} ({reason}); put the file by hand at {target}"
            + (f" (it is linked from {entry.page})" if entry.page != entry.url else "")
        )

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    temp = Path(temp_name)
    try:
        request = urllib.request.Request(entry.url, headers={"User-Agent": "streamseg"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                content_type = (response.headers.get("Content-Type") or "").lower()
                if "text/html" in content_type:
                    # A login / virus-scan page instead of the file (Google Drive does this).
                    raise fail("the server sent a web page instead of the file")
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                with os.fdopen(handle, "wb") as out:
                    handle = -1
                    sha256 = _copy_with_progress(response, out, total, entry.filename, progress)
        except UserError:
            raise
        except urllib.error.HTTPError as error:
            raise fail(f"HTTP {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            raise fail(error.reason) from None
        except (OSError, ValueError) as error:
            raise fail(error) from None
        if entry.size is not None and temp.stat().st_size != entry.size:
            raise UserError(
                f"{entry.url}: got {temp.stat().st_size} bytes, expected {entry.size}; "
                "the partial file was removed"
            )
        if entry.sha256 is not None and sha256 != entry.sha256:
            raise UserError(
                f"{entry.url}: sha256 mismatch (expected {entry.sha256}, got {sha256}); "
                "the downloaded file was removed"
            )
        os.replace(temp, target)
        return sha256
    finally:
        if handle >= 0:
            os.close(handle)
        temp.unlink(missing_ok=True)


def fetch_weights(
    entry: WeightsEntry,
    cache: str | Path | None = None,
    *,
    timeout: float = 60.0,
    progress: bool = True,
    force: bool = False,
) -> FetchResult:
    """Make sure `entry`'s file is in the cache folder; download it if needed.

    A file already present is kept when its sha256 matches (or the sha256 is unknown);
    a present file with the wrong sha256 is downloaded again.

    Raises:
        UserError: the download failed (the message says where to put the file by hand), or
            the downloaded bytes do not match the known size / sha256.
    """
    target = cached_path(entry, cache)
    if target.is_file() and not force:
        sha256 = file_sha256(target)
        if entry.sha256 is None or sha256 == entry.sha256:
            return FetchResult(target, sha256, entry.sha256 is not None, downloaded=False)
    sha256 = _download(entry, target, timeout, progress)
    return FetchResult(target, sha256, entry.sha256 is not None, downloaded=True)


def find_weights(
    name: str, cache: str | Path | None = None, registry: dict[str, WeightsEntry] | None = None
) -> Path | None:
    """The cached file of a registry entry, or None if the name is unknown or not fetched."""
    registry = load_registry() if registry is None else registry
    if name not in registry:
        return None
    path = cached_path(registry[name], cache)
    return path if path.is_file() else None


@dataclass(frozen=True)
class ResolvedModel:
    """What `Segmenter.from_pretrained` needs for a model the user named."""

    name_or_path: str
    config: str | None  # preset name for an official checkpoint, else None
    clip_weights: str | None


def resolve_model(
    name: str, clip_weights: str | None = None, cache: str | Path | None = None
) -> ResolvedModel:
    """Turn a registry name of an FC-CLIP checkpoint into its cached files and preset.

    Other names (presets, embedded models, folders, files) pass through unchanged, so every
    front end (image, video, app) accepts the same `--model` values.

    Raises:
        UserError: a registry checkpoint (or its CLIP weights) that is not downloaded yet,
            saying which fetch command to run or where to put the file.
    """
    if Path(name).exists():
        return ResolvedModel(name, None, clip_weights)
    registry = load_registry()
    entry = registry.get(name)
    if entry is None or entry.kind != "fcclip":
        return ResolvedModel(name, None, clip_weights)
    path = cached_path(entry, cache)
    if not path.is_file():
        raise UserError(
            f"{name}: weights not downloaded; run `streamseg weights fetch {name}` "
            f"or put the file at {path}"
        )
    if clip_weights is None and entry.clip_weights:
        clip_path = cached_path(registry[entry.clip_weights], cache)
        if not clip_path.is_file():
            raise UserError(
                f"{entry.clip_weights}: CLIP weights not downloaded; run `streamseg weights "
                f"fetch {entry.clip_weights}` or put the file at {clip_path}"
            )
        clip_weights = str(clip_path)
    return ResolvedModel(str(path), entry.preset, clip_weights)
