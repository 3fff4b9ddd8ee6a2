"""LabelBuffer: the store writer's reused array of the label maps waiting for a commit."""

import numpy as np
import pytest

from streamseg.video.label_buffer import LabelBuffer


def test_rows_are_the_maps_in_order_as_int32():
    buffer = LabelBuffer((3, 4))
    first = np.arange(12, dtype=np.int16).reshape(3, 4)
    second = np.full((3, 4), 7, np.int64)
    buffer.extend([first])
    buffer.extend([second, first])
    rows = buffer.rows()
    assert rows.dtype == np.int32
    assert rows.shape == (3, 3, 4)
    np.testing.assert_array_equal(rows[0], first)
    np.testing.assert_array_equal(rows[1], second)
    np.testing.assert_array_equal(rows[2], first)
    assert len(buffer) == 3


def test_clear_keeps_the_memory_and_growing_keeps_the_rows():
    buffer = LabelBuffer((2, 2))
    buffer.extend([np.ones((2, 2), np.int32)] * 2)
    kept = buffer.rows().base
    buffer.clear()
    assert len(buffer) == 0 and buffer.rows().shape == (0, 2, 2)
    buffer.extend([np.full((2, 2), 5, np.int32)])
    assert buffer.rows().base is kept  # no new allocation for a commit no larger than before
    buffer.extend([np.full((2, 2), k, np.int32) for k in (6, 7, 8)])  # grows past 2 rows
    np.testing.assert_array_equal(buffer.rows()[:, 0, 0], [5, 6, 7, 8])


def test_a_map_of_another_size_is_refused():
    buffer = LabelBuffer((2, 2))
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 2\)"):
        buffer.extend([np.zeros((3, 2), np.int32)])
    assert len(buffer) == 0
