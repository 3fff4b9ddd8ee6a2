"""Before the first frame of a run (file or live): checked settings, the ready segmenter.

`prepare_model` builds the segmenter from `config.model` (unless one is given), compiles it
when asked, sets the vocabulary and makes the segment filter; `RunModel` is the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamseg.config import RunConfig
from streamseg.errors import UserError
from streamseg.model.precision import check_precision
from streamseg.model.segmenter_like import SegmenterLike, compile_segmenter
from streamseg.video.segments import SegmentFilter

if TYPE_CHECKING:
    from streamseg.model.vocab import Vocabulary


def label_size_for(source_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) of the stored labels of a `source_size` source at `--label-scale` `scale`."""
    return max(1, round(source_size[0] * scale)), max(1, round(source_size[1] * scale))


def check_run_settings(config: RunConfig) -> None:
    """UserError for settings no run can use, before anything is created or loaded.

    Every option is checked here, so a bad one never leaves a store marked "running" or
    a model loaded for nothing; the vocabulary options are read by `prepare_model`, before
    the model loads.
    """
    import math

    model, decode, store = config.model, config.decode, config.store
    if model.batch_size < 1:
        raise UserError(f"--batch-size: must be at least 1, got {model.batch_size}")
    scale = store.label_scale
    if not 0 < scale <= 1:
        raise UserError(f"--label-scale: must be in (0, 1], got {scale}")
    check_precision(model.precision)
    if not (math.isfinite(model.score_threshold) and 0 <= model.score_threshold <= 1):
        raise UserError(f"--score-threshold: must be in [0, 1], got {model.score_threshold}")
    if model.min_area < 0:
        raise UserError(f"--min-area: must be 0 or more, got {model.min_area}")
    if decode.stride < 1:
        raise UserError(f"--stride: must be at least 1, got {decode.stride}")
    for flag, value in (("--start", decode.start), ("--end", decode.end)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UserError(f"{flag}: must be a number of seconds, 0 or more, got {value}")
    if decode.start is not None and decode.end is not None and decode.end <= decode.start:
        raise UserError(f"--end ({decode.end}) must be later than --start ({decode.start})")
    if decode.max_frames is not None and decode.max_frames < 1:
        raise UserError(f"--max-frames: must be at least 1, got {decode.max_frames}")
    if decode.queue_size < 1:
        raise UserError(f"[decode] queue_size: must be at least 1, got {decode.queue_size}")
    if store.commit_frames < 1:
        raise UserError(f"[store] commit_frames: must be at least 1, got {store.commit_frames}")
    if store.table_chunk < 1:
        raise UserError(f"[store] table_chunk: must be at least 1, got {store.table_chunk}")
    if store.frames_per_shard < 0:
        raise UserError(
            f"[store] frames_per_shard: must be 0 or more, got {store.frames_per_shard}"
        )


def overlay_output(overlay: str | Path | None, config: RunConfig) -> Path | None:
    """The overlay video to write: the argument, else `config.render.overlay`, else None."""
    if overlay is not None:
        return Path(overlay)
    return Path(config.render.overlay) if config.render.overlay else None


def build_segmenter(config: RunConfig) -> SegmenterLike:
    """The segmenter `config.model` names (name, CLIP weights, device)."""
    from streamseg.model.load import load_segmenter

    return load_segmenter(config.model.name, config.model.clip_weights, config.model.device)


def resolve_vocabulary(segmenter: SegmenterLike, vocabulary: Any, config: RunConfig) -> Vocabulary:
    """Set the segmenter's vocabulary from the argument or the config; return it.

    Args:
        vocabulary: a `Vocabulary`, CLI-syntax string or list; None = the segmenter's current
            one, else the model's default (`prepare_model` reads `config.model.vocab` /
            `vocab_file` first).
    Raises:
        UserError: no vocabulary anywhere.
    """
    settings = config.model
    if vocabulary is None and segmenter.vocabulary is None:
        # No --vocab: the model's own default (weights/shapes-tiny names "shapes"), through the
        # same resolver as `streamseg image` and the app.
        from streamseg.model.default_vocab import require_vocabulary

        vocabulary = require_vocabulary(segmenter, settings.name)
    if vocabulary is not None:
        if isinstance(vocabulary, str):
            from streamseg.model.vocab import parse_vocab

            vocabulary = parse_vocab(vocabulary, settings.stuff)
        # The text classifier is computed once per model + vocabulary and cached on disk.
        segmenter.set_vocabulary(vocabulary, cache_dir="auto")
    current = segmenter.vocabulary
    if current is None:
        raise UserError("--vocab: no vocabulary given (e.g. --vocab 'person,dog' or coco)")
    return current


def vocabulary_attrs(vocabulary: Vocabulary) -> dict[str, Any]:
    """The store's `vocabulary` attrs: names, thing flags, and the full JSON (synonyms)."""
    return {
        "names": list(vocabulary.names),
        "is_thing": [bool(v) for v in vocabulary.is_thing],
        "json": vocabulary.to_json(),
    }


@dataclass(frozen=True)
class RunModel:
    """The segmenter of a run, ready to segment: compiled if asked, vocabulary set."""

    segmenter: SegmenterLike
    vocabulary: Vocabulary
    segment_filter: SegmentFilter

    @property
    def names(self) -> list[str]:
        """Class names, by class id."""
        return list(self.vocabulary.names)

    @property
    def model_id(self) -> str:
        return str(self.segmenter.model_id)

    def attrs(self) -> dict[str, str]:
        """The store's `model` attrs."""
        return {"id": self.model_id, "sha256": str(self.segmenter.weights_sha256)}


def prepare_model(
    config: RunConfig, segmenter: SegmenterLike | None = None, vocabulary: Any = None
) -> RunModel:
    """Build (unless given), compile (`config.model.compile`), set the vocabulary.

    Raises:
        UserError: bad vocabulary options, no vocabulary, `--keep` names outside it,
            `--compile` on a stand-in.
    """
    if vocabulary is None:
        from streamseg.model.vocab import vocabulary_from_options

        # Read once, before the model loads: a bad --vocab-file fails at once.
        settings = config.model
        vocabulary = vocabulary_from_options(settings.vocab, settings.vocab_file, settings.stuff)
    if segmenter is None:
        segmenter = build_segmenter(config)
    if config.model.compile:
        compile_segmenter(segmenter)
    vocab = resolve_vocabulary(segmenter, vocabulary, config)
    return RunModel(segmenter, vocab, SegmentFilter.from_settings(config.model, vocab.names))
