"""OME-Zarr (0.5, the Zarr v3 version of OME-NGFF) label-image metadata of a store.

A schema-2 store's root group is an OME-Zarr label image: `multiscales` lists the labels and
their pyramid (each level keeps every 2nd pixel of the one above: nearest, so a track id never
becomes a mix of two), `image-label` gives each track's colour (the overlay's) and its class.
OME-aware viewers (napari with napari-ome-zarr, vizarr) then open the label video.

The t axis counts stored frames (scale 1, no unit): frames need not be evenly spaced (variable
frame rate, live sources dropping frames); their seconds are the `time` array.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streamseg.video.palette import track_color
from streamseg.video.store_schema import PYRAMID_GROUP

OME_VERSION = "0.5"
OME_KEY = "ome"
AXES = (
    {"name": "t", "type": "time"},
    {"name": "y", "type": "space"},
    {"name": "x", "type": "space"},
)


def ome_attributes(
    levels: int,
    name: str,
    tracks: Mapping[str, np.ndarray] | None = None,
    class_names: Sequence[str] = (),
) -> dict[str, Any]:
    """The root group's `ome` attribute.

    Args:
        levels: lower levels of the pyramid (pyramid/1 .. pyramid/levels).
        name: the multiscale image's name (the source video's).
        tracks: the tracks table (at finish): one colour and one property entry per track.
        class_names: the vocabulary, for each track's class name.
    """
    paths = ["labels", *(f"{PYRAMID_GROUP}/{k}" for k in range(1, levels + 1))]
    datasets = [
        {
            "path": path,
            "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, float(2**k), float(2**k)]}
            ],
        }
        for k, path in enumerate(paths)
    ]
    label: dict[str, Any] = {"colors": [], "properties": []}
    if tracks is not None:
        for track_id, class_id, score, frames in zip(
            tracks["track_id"].tolist(),
            tracks["class_id"].tolist(),
            tracks["score"].tolist(),
            tracks["frames"].tolist(),
            strict=True,
        ):
            red, green, blue = track_color(int(track_id))
            label["colors"].append({"label-value": track_id, "rgba": [red, green, blue, 255]})
            known = 0 <= class_id < len(class_names)
            label["properties"].append(
                {
                    "label-value": track_id,
                    "class": class_names[class_id] if known else f"#{class_id}",
                    "class_id": class_id,
                    "score": round(float(score), 6),
                    "frames": frames,
                }
            )
    return {
        "version": OME_VERSION,
        "multiscales": [{"name": name, "axes": [dict(a) for a in AXES], "datasets": datasets}],
        "image-label": label,
    }
