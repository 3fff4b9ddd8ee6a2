"""The text classifier: one CLIP text embedding per synonym, prompt-ensembled, cached on disk.

As the official FC-CLIP builds it (bytedance/fc-clip `fcclip/fcclip.py`, `get_text_classifier`,
with the ViLD prompt templates of Gu et al., "Open-vocabulary Object Detection via Vision and
Language Knowledge Distillation", ICLR 2022): every (synonym, template) prompt is tokenized
(77 tokens) and encoded; each embedding is L2-normalized, the 14 template embeddings of a
synonym are averaged, and the average is normalized again. At scoring time the best synonym of
a class counts (classify.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from streamseg.model.vocab import Vocabulary

# The 14 ViLD templates, in the official order.
TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)

# Prompts per encode_text call (the official code's chunk size; bounds memory for big
# vocabularies such as LVIS: 1203 classes x ~3 synonyms x 14 templates).
CHUNK_SIZE = 128


@dataclass(frozen=True)
class TextClassifier:
    """Text embeddings of a vocabulary.

    Attributes:
        embeddings: (S, D) float32 L2-normalized, one row per synonym (class-major order).
        class_index: (S,) long, the class of each synonym.
        num_classes: C.
    """

    embeddings: Tensor
    class_index: Tensor
    num_classes: int


def build_prompts(synonyms: Sequence[str]) -> list[str]:
    """Every (synonym, template) prompt, synonym-major: S * 14 strings."""
    return [template.format(synonym) for synonym in synonyms for template in TEMPLATES]


def cache_digest(cache_key: str, vocabulary: Vocabulary) -> str:
    """sha256 of the model key, the vocabulary's synonyms (in order) and the templates."""
    payload = {
        "model": cache_key,
        "synonyms": [list(c.synonyms) for c in vocabulary.classes],
        "templates": list(TEMPLATES),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@torch.no_grad()
def encode_synonyms(
    encode_text: Callable[[Tensor], Tensor],
    tokenizer: Callable[[list[str]], Tensor],
    synonyms: Sequence[str],
    device: torch.device | str,
    chunk_size: int = CHUNK_SIZE,
) -> Tensor:
    """Prompt-ensembled embedding of each synonym.

    Args:
        encode_text: tokens (N, L) long -> (N, D) text features (not necessarily normalized).
        tokenizer: list of N strings -> (N, L) long tokens.
        synonyms: S names.

    Returns:
        (S, D) float32 L2-normalized on `device`.
    """
    prompts = build_prompts(synonyms)
    features = []
    for start in range(0, len(prompts), chunk_size):
        tokens = tokenizer(prompts[start : start + chunk_size]).to(device)
        features.append(F.normalize(encode_text(tokens).float(), dim=-1))
    per_prompt = torch.cat(features).reshape(len(synonyms), len(TEMPLATES), -1)
    return F.normalize(per_prompt.mean(1), dim=-1)


# The text cache's size bound: every new vocabulary leaves a file (5 MB for 5,000 classes), so
# an app serving many users would fill the disk. Least recently used files go first.
CACHE_MB_ENV = "STREAMSEG_TEXT_CACHE_MB"
DEFAULT_CACHE_MB = 256.0


def cache_limit_bytes() -> int:
    """The text cache's bound: $STREAMSEG_TEXT_CACHE_MB megabytes (default 256)."""
    value = os.environ.get(CACHE_MB_ENV, "")
    try:
        megabytes = float(value) if value else DEFAULT_CACHE_MB
    except ValueError:
        megabytes = DEFAULT_CACHE_MB
    return max(0, int(megabytes * 1e6))


def prune_cache(folder: Path, max_bytes: int, keep: Path | None = None) -> list[Path]:
    """Delete the least recently used cache files until the folder holds at most `max_bytes`.

    Recency is the file's modification time, which a cache hit refreshes. `keep` (the file
    just written) is never deleted, even if it alone is over the bound.

    Returns:
        The deleted files.
    """
    entries = []
    for path in folder.glob("text-*.safetensors"):
        try:
            stat = path.stat()
        except OSError:  # removed by another process meanwhile
            continue
        entries.append((stat.st_mtime_ns, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    deleted = []
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        if keep is not None and path == keep:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        deleted.append(path)
    return deleted


def _read_cache(path: Path, rows: int, device: torch.device | str) -> Tensor | None:
    """Cached embeddings, or None when absent or unusable (then they are recomputed)."""
    if not path.is_file():
        return None
    from safetensors.torch import load_file  # tensors only: no pickle, safe to load

    try:
        embeddings = load_file(str(path))["embeddings"]
        os.utime(path)  # recently used: the last to be pruned
    except Exception:  # noqa: BLE001 - a damaged cache file is just a cache miss
        return None
    if embeddings.dim() != 2 or embeddings.shape[0] != rows:
        return None
    return embeddings.to(device, torch.float32)


def _write_cache(path: Path, embeddings: Tensor) -> None:
    """Atomic write (temp file, then rename) so a reader never sees half a file."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        save_file({"embeddings": embeddings.detach().cpu().contiguous()}, temp)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


# Classifiers computed by this process (cache misses): the app and batch warm-ups are tested
# by counting them, never by timing.
_ENCODINGS = 0
_ENCODINGS_LOCK = threading.Lock()


def text_encodings() -> int:
    """How many text classifiers this process has computed (not read from the disk cache)."""
    return _ENCODINGS


def cache_file(cache_dir: str | Path, cache_key: str, vocabulary: Vocabulary) -> Path:
    """The disk cache file of a model's (`cache_key`) classifier of `vocabulary`."""
    return Path(cache_dir) / f"text-{cache_digest(cache_key, vocabulary)}.safetensors"


def build_text_classifier(
    encode_text: Callable[[Tensor], Tensor],
    tokenizer: Callable[[list[str]], Tensor],
    vocabulary: Vocabulary,
    device: torch.device | str,
    cache_dir: str | Path | None = None,
    cache_key: str | None = None,
) -> TextClassifier:
    """The text classifier of a vocabulary, from disk when cached.

    Args:
        encode_text: the CLIP text encoder, tokens (N, 77) long -> (N, D).
        tokenizer: list of strings -> (N, 77) long (open_clip's tokenizer).
        vocabulary: the classes; each synonym gets one row.
        device: where the result lives (and where tokens are sent).
        cache_dir: folder of cached classifiers; used only together with `cache_key`.
        cache_key: identifies the text encoder (model name + weights sha256); the cache file
            is named by the sha256 of this key, the synonyms and the templates.

    Returns:
        `TextClassifier` with (S, D) embeddings and (S,) class index on `device`.
    """
    synonyms: list[str] = []
    owners: list[int] = []
    for index, vocab_class in enumerate(vocabulary.classes):
        synonyms.extend(vocab_class.synonyms)
        owners.extend([index] * len(vocab_class.synonyms))
    class_index = torch.tensor(owners, dtype=torch.long, device=device)
    path = None
    if cache_dir is not None and cache_key is not None:
        path = cache_file(cache_dir, cache_key, vocabulary)
        cached = _read_cache(path, len(synonyms), device)
        if cached is not None:
            return TextClassifier(cached, class_index, len(vocabulary))
    global _ENCODINGS
    with _ENCODINGS_LOCK:
        _ENCODINGS += 1
    embeddings = encode_synonyms(encode_text, tokenizer, synonyms, device)
    if path is not None:
        _write_cache(path, embeddings)
        prune_cache(path.parent, cache_limit_bytes(), keep=path)
    return TextClassifier(embeddings, class_index, len(vocabulary))


def default_cache_dir() -> Path:
    """$STREAMSEG_CACHE/text or ~/.cache/streamseg/text."""
    from streamseg.weights import cache_root

    return cache_root() / "text"
