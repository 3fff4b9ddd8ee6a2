"""The vectorized overlay drawing (draw.py, palette.py, label_text.py) against the drawing it
replaced (tests/draw_reference.py), on designed label maps.

Every comparison is exact: the blend is the same integer formula, (image * (256 - a) + colour
* a + 128) >> 8, only evaluated on two composed pictures instead of per-slot tables (and, for
a = 128, as (u | o) - ((u ^ o) >> 1), equal to it for every pair of bytes: tested below);
outlines are the same pixels in the same colour; name boxes are the same Pillow renderings,
pasted instead of drawn again (a box is opaque, so its pixels never depend on what is under
it), at the same anchors and in the same order.
"""

from __future__ import annotations

import draw_reference as reference
import numpy as np
import pytest

from streamseg.video import label_text
from streamseg.video.draw import blend, draw_overlay, label_boundaries, label_slots
from streamseg.video.label_text import LabelBitmaps, label_anchors


@pytest.fixture(autouse=True)
def _fresh_bitmaps() -> None:
    """Each test starts and ends with an empty shared box cache."""
    label_text.SHARED_BITMAPS.clear()
    yield
    label_text.SHARED_BITMAPS.clear()


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A textured source: gradients plus noise, so every blend rounding case occurs."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    across, down = xs * 255 // max(1, width - 1), ys * 255 // max(1, height - 1)
    base = np.stack([across, down, (xs + ys) % 256])
    noise = rng.integers(-40, 41, (3, height, width))
    return np.clip(base + noise, 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()


def _shapes(height: int, width: int) -> np.ndarray:
    """Rectangles, a ring (not convex: its centroid is outside it), an L, a disc, a 1-pixel
    line and a 2-pixel speck (both thinner than the name-placement grid), touching regions
    and unlabeled gaps."""
    labels = np.zeros((height, width), np.int32)
    ys, xs = np.mgrid[0:height, 0:width]
    labels[: height // 3, : width // 2] = 3
    labels[: height // 3, width // 2 :] = 8  # touches 3
    radius = np.hypot(ys - height * 0.6, xs - width * 0.3)
    labels[(radius > height * 0.12) & (radius < height * 0.22)] = 12  # a ring
    labels[(radius <= height * 0.08)] = 5  # a disc inside the ring's hole
    labels[height // 2 :, width // 2 : width // 2 + width // 10] = 40  # the L's stem
    labels[height - height // 8 :, width // 2 :] = 40  # the L's foot
    labels[height // 3 + 2, width // 8 : width - width // 8] = 77  # a 1-pixel line
    labels[height - 3 : height - 1, width - 3 : width - 1] = 901  # a 2 x 2 speck
    return labels


def _blocks(height: int, width: int, count: int, seed: int) -> np.ndarray:
    """`count` ids (spread over a wide range) on random blocks, some unlabeled."""
    rng = np.random.default_rng(seed)
    ids = np.concatenate([[0], rng.choice(np.arange(1, 50 * count), count, replace=False)])
    cells = rng.integers(0, count + 1, (height // 8 + 1, width // 8 + 1))
    return ids[cells].repeat(8, 0).repeat(8, 1)[:height, :width].astype(np.int32)


def _names(labels: np.ndarray) -> dict[int, str]:
    """Names for every other id (the rest show "#id"); one long name."""
    ids = [int(i) for i in np.unique(labels) if i > 0]
    names = {track_id: f"class{track_id % 7}" for track_id in ids[::2]}
    if ids:
        names[ids[-1]] = "a rather long class name"
    return names


def _assert_same(image: np.ndarray, labels: np.ndarray, **options: object) -> None:
    names = options.pop("names", _names(labels))
    expected = reference.draw_overlay(image, labels, names, **options)
    drawn = draw_overlay(image, labels, names, **options)
    assert drawn.dtype == np.uint8 and drawn.shape == expected.shape
    np.testing.assert_array_equal(drawn, expected)


@pytest.mark.parametrize(
    "size", [(48, 64), (47, 63), (240, 320), (480, 640), (720, 1280), (1080, 1920)]
)
def test_shapes_equal_the_reference_at_every_outline_width(size: tuple[int, int]) -> None:
    # Outline widths 1, 1, 1, 1, 2 and 3 pixels.
    _assert_same(_image(*size), _shapes(*size))


@pytest.mark.parametrize("count", [1, 5, 40])
def test_random_blocks_equal_the_reference(count: int) -> None:
    _assert_same(_image(360, 480, seed=count), _blocks(360, 480, count, seed=count))


def test_options_and_shares_equal_the_reference() -> None:
    image, labels = _image(240, 320), _shapes(240, 320)
    for alpha in (0.0, 0.3, 0.5, 0.77, 1.0):
        _assert_same(image, labels, alpha=alpha)
    _assert_same(image, labels, outlines=False)
    _assert_same(image, labels, text=False)
    _assert_same(image, labels, outlines=False, text=False, alpha=0.3)
    _assert_same(image, labels, names={})


def test_resized_label_maps_equal_the_reference() -> None:
    image = _image(240, 320)
    # Enlarged by 4, by a fraction, and shrunk (where small regions can vanish).
    for shape in ((60, 80), (100, 150), (480, 640), (500, 333)):
        _assert_same(image, _shapes(*shape))
        _assert_same(image, _blocks(*shape, count=12, seed=3))


def test_unusual_ids_equal_the_reference() -> None:
    image = _image(120, 160)
    labels = _shapes(120, 160)
    # Ids past the lookup table's range, and negative ids (drawn as unlabeled).
    _assert_same(image, np.where(labels > 0, labels + (1 << 23), 0))
    negative = labels.copy()
    negative[:10, :] = -4
    _assert_same(image, negative)
    # 300 tracks in one frame: more slots than a palette image holds.
    many = np.arange(1, 301, dtype=np.int64).repeat(64)[: 120 * 160].reshape(120, 160)
    _assert_same(image, many, names={})
    _assert_same(image, np.zeros((120, 160), np.int32))
    _assert_same(image, labels.astype(np.uint16))


def test_crowded_and_oversized_name_boxes_equal_the_reference() -> None:
    # Boxes overlap (a later id covers an earlier one) and boxes wider than the frame are cut.
    labels = np.zeros((40, 60), np.int32)
    labels[10:20, 10:20], labels[10:20, 20:30], labels[20:30, 10:30] = 4, 9, 2
    names = {2: "an extremely long name that cannot fit", 4: "cat", 9: "dog"}
    _assert_same(_image(40, 60), labels, names=names)
    _assert_same(_image(12, 16), labels[::3, ::3], names=names)


def test_mean_of_two_bytes_is_the_blend_formula_for_every_pair() -> None:
    under, over = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8))
    under, over = under[..., None], over[..., None]
    for weight in (0, 1, 77, 128, 200, 255, 256):
        wide_under, wide_over = under.astype(np.int64), over.astype(np.int64)
        expected = (wide_under * (256 - weight) + wide_over * weight + 128) >> 8
        np.testing.assert_array_equal(blend(under, over, weight), expected)


def test_slots_number_the_ids_present() -> None:
    labels = np.array([[0, 7, 7, 300], [5, 5, 0, 300]], np.int32)
    ids, slot = label_slots(labels)
    assert ids.tolist() == [5, 7, 300]
    assert slot.dtype == np.uint8
    assert slot.tolist() == [[0, 2, 2, 3], [1, 1, 0, 3]]
    # Outlines on slots are the outlines on ids.
    shapes = _shapes(90, 120)
    for width in (1, 2, 3):
        np.testing.assert_array_equal(
            label_boundaries(label_slots(shapes)[1], width),
            reference.label_boundaries(shapes, width),
        )


def test_anchors_fall_inside_their_regions() -> None:
    labels = _shapes(1080, 1920)
    ids, slot = label_slots(labels)
    # The placement grid (every 7th pixel from 3) misses the 1-pixel line and the speck: they
    # are searched at full size.
    grid = set(np.unique(slot[3::7, 3::7]).tolist())
    assert {int(np.flatnonzero(ids == 77)[0]) + 1, len(ids)}.isdisjoint(grid)
    anchors = label_anchors(slot, len(ids))
    for k, (y, x) in enumerate(anchors.tolist()):
        assert slot[y, x] == k + 1  # the ring's anchor too, and the line's and the speck's
    assert label_anchors(np.zeros((4, 4), np.uint8), 2).tolist() == [[-1, -1], [-1, -1]]


def test_each_name_box_is_rendered_once_per_track_and_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered: list[tuple[str, tuple[int, int, int], int]] = []
    original = label_text.render_label

    def counting(text: str, colour: tuple[int, int, int], size: int) -> np.ndarray:
        rendered.append((text, colour, size))
        return original(text, colour, size)

    monkeypatch.setattr(label_text, "render_label", counting)
    names = {1: "cat", 2: "dog", 3: "car", 4: "tree"}  # track 5 has no name: "#5"
    for frame in range(10):
        # Five tracks moving across the frame, so anchors change from frame to frame.
        labels = np.zeros((96, 128), np.int32)
        for track in range(1, 6):
            top, left = 4 + 15 * (track - 1), 4 + 8 * frame + 3 * track
            labels[top : top + 12, left : left + 30] = track
        image = _image(96, 128, seed=frame)
        drawn = draw_overlay(image, labels, names)
        np.testing.assert_array_equal(drawn, reference.draw_overlay(image, labels, names))
    assert sorted(text for text, _, _ in rendered) == ["#5", "car 3", "cat 1", "dog 2", "tree 4"]
    # A new text for a track (its class changed) is one more rendering, once.
    for _ in range(3):
        draw_overlay(image, labels, {**names, 2: "wolf"})
    assert [text for text, _, _ in rendered[5:]] == ["wolf 2"]


def test_box_cache_drops_the_least_recently_used(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = label_text.render_label
    monkeypatch.setattr(
        label_text, "render_label", lambda text, *rest: calls.append(text) or original(text, *rest)
    )
    boxes = LabelBitmaps(capacity=2)
    first = boxes.get(1, "a 1", 12)
    assert not first.flags.writeable and first.dtype == np.uint8 and first.shape[2] == 3
    boxes.get(2, "b 2", 12)
    assert boxes.get(1, "a 1", 12) is first  # a hit; "b 2" is now the oldest
    boxes.get(3, "c 3", 12)  # drops "b 2"
    boxes.get(1, "a 1", 12)
    boxes.get(2, "b 2", 12)
    assert calls == ["a 1", "b 2", "c 3", "b 2"]
    assert len(boxes) == 2
