"""streamseg: open-vocabulary video segmentation and tracking with FC-CLIP.

`Segmenter` (the image model), `run_video` (the streaming video job) and `search` (tracks of
processed videos ranked by words, streamseg/catalog/) are imported lazily so that
`import streamseg` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Segmenter", "run_video", "search", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from streamseg.catalog.query import search
    from streamseg.model.segmenter import Segmenter
    from streamseg.video.pipeline import run_video


def __getattr__(name: str) -> Any:
    if name == "Segmenter":
        from streamseg.model.segmenter import Segmenter

        return Segmenter
    if name == "run_video":
        from streamseg.video.pipeline import run_video

        return run_video
    if name == "search":
        from streamseg.catalog.query import search

        return search
    raise AttributeError(f"module 'streamseg' has no attribute {name!r}")
