"""LabelBuffer: the store writer's reused array of a group of label maps."""

import numpy as np
import pytest

from streamseg.video.label_buffer import LabelBuffer


def test_rows_are_the_maps_in_order_as_int32():
    buffer = LabelBuffer((3, 4))
    first = np.arange(12, dtype=np.int16).reshape(3, 4)
    second = np.full((3, 4), 7, np.int64)
    rows = buffer.stack([first, second, first])
    assert rows.dtype == np.int32
    assert rows.shape == (3, 3, 4)
    np.testing.assert_array_equal(rows[0], first)
    np.testing.assert_array_equal(rows[1], second)
    np.testing.assert_array_equal(rows[2], first)


def test_the_memory_is_reused_and_grows_for_a_larger_block():
    buffer = LabelBuffer((2, 2))
    kept = buffer.stack([np.ones((2, 2), np.int32)] * 2).base
    rows = buffer.stack([np.full((2, 2), 5, np.int32)])
    assert rows.shape == (1, 2, 2)
    assert rows.base is kept  # no new allocation for a block no larger than before
    np.testing.assert_array_equal(rows[0], 5)
    rows = buffer.stack([np.full((2, 2), k, np.int32) for k in (6, 7, 8)])  # grows past 2 rows
    np.testing.assert_array_equal(rows[:, 0, 0], [6, 7, 8])
    assert buffer.stack([]).shape == (0, 2, 2)


def test_a_map_of_another_size_is_refused():
    buffer = LabelBuffer((2, 2))
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 2\)"):
        buffer.stack([np.zeros((3, 2), np.int32)])
