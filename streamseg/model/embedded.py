"""The project's own trained models shipped in the tree (weights/<name>/), looked up by name.

Kept apart from segmenter.py so that the default-vocabulary lookup (default_vocab.py) and the
segmenter can both ask "which folder is model X?" without importing each other. Callers read
`WEIGHTS_DIRS` and `DEFAULT_MODEL` as attributes of this module at call time, so tests can point
them at a temporary folder.
"""

from __future__ import annotations

from pathlib import Path

from streamseg.model.checkpoint import CONFIG_FILE

# Folders of the project's own trained models (own format), looked up by name.
WEIGHTS_DIRS = (
    Path(__file__).resolve().parents[2] / "weights",
    Path(__file__).resolve().parents[1] / "data" / "weights",
)


def find_model_folder(name: str) -> Path | None:
    """The own-format folder of a named embedded model, or None."""
    for root in WEIGHTS_DIRS:
        folder = root / name
        if (folder / CONFIG_FILE).is_file():
            return folder
    return None


# The embedded model once trained (weights/shapes-tiny); until then a tiny random-weight config.
DEFAULT_MODEL = "shapes-tiny" if find_model_folder("shapes-tiny") else "tiny-convnext"
