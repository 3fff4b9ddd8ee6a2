"""The one model loader: every face (run, live, image, batch, bench, measure, app) calls it.

`--model` may be:
- nothing: the embedded default model (`DEFAULT_MODEL`, weights/shapes-tiny);
- a registry name (`streamseg weights list`), whose files were fetched or placed by hand in the
  cache (`STREAMSEG_CACHE`): the official `.pth` with its preset and its CLIP weights file;
- an embedded model's name, a weights folder, or an official `.pth` (+ `--clip-weights`);
- a preset name (random weights, with a warning).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from streamseg.model.config import PRESETS
from streamseg.model.embedded import DEFAULT_MODEL
from streamseg.model.segmenter import Segmenter
from streamseg.weights import resolve_model


def load_segmenter(
    model: str | Path | None = None,
    clip_weights: str | Path | None = None,
    device: str = "auto",
    *,
    note: str | None = None,
) -> Segmenter:
    """A ready `Segmenter` for what the user named.

    Args:
        model: see the module docstring; None = the embedded default model.
        clip_weights: open_clip weights for a checkpoint without CLIP (overrides the
            registry's own CLIP file).
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        note: for a preset name (random weights), print this face's one-line note on stderr
            ("streamseg image: note: ...") instead of raising the `UserWarning`; None keeps
            the warning (a face that collects warnings prints it).

    Raises:
        UserError: unknown name, missing or unreadable files, a registry entry not fetched.
    """
    name = str(model) if model is not None else DEFAULT_MODEL
    resolved = resolve_model(name, str(clip_weights) if clip_weights is not None else None)
    noted = note is not None and name in PRESETS
    if noted:
        print(
            f"{note}: note: {name} has random weights (no trained model given): "
            "the output shows the file formats, not real segmentations",
            file=sys.stderr,
        )
    with warnings.catch_warnings():
        if noted:
            warnings.simplefilter("ignore", UserWarning)  # said in the note above
        return Segmenter.from_pretrained(
            resolved.name_or_path,
            config=resolved.config,
            clip_weights=resolved.clip_weights,
            device=device,
        )


def check_model(model: str | Path | None = None, clip_weights: str | Path | None = None) -> None:
    """Raise the loader's `UserError` for a model that cannot load here, without building it.

    `streamseg batch` calls this before it starts workers, so a registry entry that was never
    fetched is one line and exit 2, not one failed task per video.
    """
    from streamseg.model.config import unknown_model_error
    from streamseg.model.embedded import find_model_folder

    name = str(model) if model is not None else DEFAULT_MODEL
    resolved = resolve_model(name, str(clip_weights) if clip_weights is not None else None)
    if Path(resolved.name_or_path).exists() or name in PRESETS or find_model_folder(name):
        return
    raise unknown_model_error(name)
