"""The one COCO-panoptic codec: id = R + 256 G + 256^2 B, PNG reading with clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from streamseg.errors import UserError
from streamseg.panoptic_png import (
    id_to_rgb,
    read_panoptic_png,
    rgb_to_id,
    write_panoptic_png,
)


def test_codec_values_and_round_trip() -> None:
    ids = np.array([[0, 1, 258], [65536 * 3, 256**3 - 1, 70000]], np.int64)
    rgb = id_to_rgb(ids)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb[0, 2].tolist() == [2, 1, 0] and rgb[1, 0].tolist() == [0, 0, 3]
    back = rgb_to_id(rgb)
    assert back.dtype == np.uint32 and np.array_equal(back, ids)
    for outside in (-1, 256**3):
        with pytest.raises(ValueError):
            id_to_rgb(np.array([[outside]]))


def test_png_round_trip_and_errors(tmp_path) -> None:
    ids = np.array([[5, 300], [70000, 0]], np.int32)
    write_panoptic_png(tmp_path / "a.png", ids)
    assert np.array_equal(read_panoptic_png(tmp_path / "a.png", size=(2, 2)), ids)
    with pytest.raises(UserError, match="differs from the ground truth's 3x2"):
        read_panoptic_png(tmp_path / "a.png", size=(3, 2))
    with pytest.raises(UserError, match="no such file"):
        read_panoptic_png(tmp_path / "absent.png")
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "gray.png")
    with pytest.raises(UserError, match="must be RGB"):
        read_panoptic_png(tmp_path / "gray.png")
