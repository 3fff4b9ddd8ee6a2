"""Overlay drawing (draw.py) on hand-made label maps; overlay mp4 round trips (render.py)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import videos

from streamseg.errors import UserError
from streamseg.video.decode import iter_frames, probe
from streamseg.video.draw import (
    draw_overlay,
    label_boundaries,
    outline_width,
    resize_labels,
    track_color,
)
from streamseg.video.render import OverlayWriter


def test_track_colors_are_stable_distinct_and_zero_is_black() -> None:
    assert track_color(0) == (0, 0, 0)
    assert track_color(7) == track_color(7)
    colors = [track_color(i) for i in range(1, 65)]
    assert len(set(colors)) == 64
    # Neighbouring ids differ clearly (golden-ratio hue steps).
    for a, b in zip(colors, colors[1:], strict=False):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) > 60


def test_resize_labels_nearest() -> None:
    labels = np.array([[1, 2], [3, 0]], np.int32)
    assert resize_labels(labels, 4, 4).tolist() == [
        [1, 1, 2, 2],
        [1, 1, 2, 2],
        [3, 3, 0, 0],
        [3, 3, 0, 0],
    ]
    assert resize_labels(np.arange(16).reshape(4, 4), 2, 2).tolist() == [[5, 7], [13, 15]]


def test_label_boundaries_hand_case() -> None:
    labels = np.zeros((5, 6), np.int32)
    labels[1:4, 1:4] = 2
    labels[1:4, 4] = 5
    edge = label_boundaries(labels)
    expected = np.zeros((5, 6), bool)
    expected[1:4, 1:5] = True
    expected[2, 2] = False  # the only pixel of region 2 with all four neighbours in it
    assert edge.tolist() == expected.tolist()
    # Two pixels wide: grown inward, never across into another region or the background.
    labels = np.zeros((7, 7), np.int32)
    labels[1:6, 1:6] = 4
    thick = label_boundaries(labels, width=2)
    expected = np.zeros((7, 7), bool)
    expected[1:6, 1:6] = True
    expected[3, 3] = False
    assert thick.tolist() == expected.tolist()


def test_outline_width_grows_with_the_frame() -> None:
    assert [outline_width(h, w) for h, w in ((48, 64), (480, 640), (1080, 1920))] == [1, 1, 3]


def test_draw_overlay_blends_colors_exactly() -> None:
    image = np.full((40, 50, 3), 100, np.uint8)
    image[:, 25:] = 200
    labels = np.zeros((40, 50), np.int32)
    labels[5:35, 5:45] = 9
    out = draw_overlay(image, labels, alpha=0.5, outlines=False, text=False)
    color = np.array(track_color(9), np.float64)
    np.testing.assert_allclose(out[20, 10], np.floor(0.5 * 100 + 0.5 * color + 0.5), atol=1)
    np.testing.assert_allclose(out[20, 40], np.floor(0.5 * 200 + 0.5 * color + 0.5), atol=1)
    # Outside the mask the image is untouched; the input is not modified.
    assert np.array_equal(out[0], image[0]) and np.array_equal(out[:, 47:], image[:, 47:])
    assert int(image[20, 10, 0]) == 100
    # Outlines are drawn in the full track colour.
    outlined = draw_overlay(image, labels, outlines=True, text=False)
    assert outlined[5, 20].tolist() == list(track_color(9))
    assert np.array_equal(outlined[20, 10], out[20, 10])


def test_draw_overlay_writes_names_and_accepts_smaller_labels() -> None:
    image = np.zeros((96, 128, 3), np.uint8)
    labels = np.zeros((24, 32), np.int32)  # a label map stored at 1/4 scale
    labels[4:20, 4:28] = 3
    plain = draw_overlay(image, labels, text=False)
    named = draw_overlay(image, labels, {3: "cat"})
    assert plain.shape == named.shape == (96, 128, 3)
    assert plain[48, 30].tolist() != [0, 0, 0]  # the mask covers (12, 7) at label scale
    differs = np.any(named != plain, axis=2)
    ys, xs = np.nonzero(differs)
    # The name box sits around the region's centre (y 48, x 64).
    assert differs.sum() > 50
    assert abs(ys.mean() - 48) < 10 and abs(xs.mean() - 64) < 20
    assert np.array_equal(draw_overlay(image, np.zeros((96, 128), np.int32)), image)


def _labels_for(height: int, width: int) -> np.ndarray:
    """Two rectangles: track 3 on the top-left quadrant, track 8 on the bottom-right one."""
    labels = np.zeros((height, width), np.int32)
    labels[: height // 2, : width // 2] = 3
    labels[height // 2 :, width // 2 :] = 8
    return labels


def _render(source: Path, out: Path, **frame_options: object) -> list:
    info = probe(source)
    written = []
    with OverlayWriter(
        out, size=info.size, time_base=info.time_base, audio_from=source, rate=info.fps
    ) as writer:
        for frame in iter_frames(source, **frame_options):
            labels = _labels_for(*frame.image.shape[:2])
            writer.write(frame.image, labels, {3: "red", 8: "yellow"}, pts=frame.pts)
            written.append(frame)
    return written


def _read_back(path: Path) -> tuple[list[float], list[np.ndarray], list[str], list[float]]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        kinds = [stream.type for stream in container.streams]
        audio_times: list[float] = []
        times, images = [], []
        for packet in container.demux():
            if packet.stream.type == "audio" and packet.pts is not None:
                audio_times.append(float(packet.pts * packet.time_base))
            elif packet.stream.type == "video":
                for frame in packet.decode():
                    assert frame.format.name == "yuv420p"
                    times.append(float(frame.time))
                    images.append(frame.to_ndarray(format="rgb24"))
    return times, images, kinds, audio_times


def test_overlay_round_trip_keeps_vfr_timestamps_audio_and_colors(tmp_path: Path) -> None:
    # Odd size (padded to even), variable frame rate, AAC audio.
    source = videos.make_video(
        tmp_path / "source.mp4",
        width=63,
        height=47,
        pix_fmt="yuv444p",
        times=videos.VFR_TIMES,
        audio=True,
    )
    out = tmp_path / "overlay.mp4"
    written = _render(source, out)
    times, images, kinds, audio_times = _read_back(out)
    assert kinds == ["video", "audio"]
    assert len(times) == len(written) == len(videos.VFR_TIMES)
    np.testing.assert_allclose(times, [f.time for f in written], atol=1e-4)
    assert images[0].shape == (48, 64, 3)
    # Audio covers the video.
    assert audio_times and audio_times[0] <= 0.0 and audio_times[-1] >= 1.5
    # A pixel deep inside track 3 (top-left, red quadrant): half red, half the track colour.
    for image in images:
        expected = 0.5 * np.array(videos.QUADRANT_COLORS[0]) + 0.5 * np.array(track_color(3))
        assert np.abs(image[3:6, 3:6].reshape(-1, 3).mean(0) - expected).max() < 16
        # Top-right quadrant is unlabeled: the green source shows as it is.
        assert np.abs(image[3:6, 52:58].reshape(-1, 3).mean(0) - (30, 200, 30)).max() < 16
        # The padding column and row are black.
        assert image[:, 63].mean() < 40 and image[47, :].mean() < 40


def test_overlay_of_a_time_window_keeps_source_times_and_audio_from_there(tmp_path: Path) -> None:
    source = videos.make_video(tmp_path / "source.mkv", frames=30, audio=True)
    out = tmp_path / "window.mp4"
    written = _render(source, out, start=0.4, end=0.8)
    times, _, kinds, audio_times = _read_back(out)
    assert [f.index for f in written] == list(range(10, 20))
    np.testing.assert_allclose(times, [f.time for f in written], atol=1e-4)
    assert "audio" in kinds
    assert 0.3 <= audio_times[0] <= 0.41 and audio_times[-1] < 0.85


def test_overlay_reencodes_audio_that_mp4_players_lack(tmp_path: Path) -> None:
    source = videos.make_video(tmp_path / "flac.mkv", audio=True, audio_codec="flac")
    out = tmp_path / "overlay.mp4"
    _render(source, out)
    with av.open(str(out)) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264", "aac"]
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert samples >= 0.4 * 16000


def test_overlay_without_audio_and_without_labels(tmp_path: Path) -> None:
    out = tmp_path / "plain.mp4"
    with OverlayWriter(out, size=(48, 64), time_base=Fraction(1, 25)) as writer:
        for index in range(5):
            writer.write(videos.pattern(index))
    times, images, kinds, _ = _read_back(out)
    assert kinds == ["video"]
    np.testing.assert_allclose(times, [0.0, 0.04, 0.08, 0.12, 0.16], atol=1e-6)
    assert [videos.read_index(image) for image in images] == [0, 1, 2, 3, 4]
    assert writer.frames_written == 5


def test_overlay_bumps_repeated_timestamps_and_resizes_images(tmp_path: Path) -> None:
    out = tmp_path / "bumped.mp4"
    with OverlayWriter(out, size=(48, 64), time_base=Fraction(1, 1000)) as writer:
        for pts in (0, 40, 40, 30, 100):
            writer.write(videos.pattern(0, 24, 32), pts=pts)
    times, images, _, _ = _read_back(out)
    np.testing.assert_allclose(times, [0.0, 0.04, 0.041, 0.042, 0.1], atol=1e-6)
    assert images[0].shape == (48, 64, 3)


def test_unwritable_overlay_path_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="missing/out.mp4: cannot write"):
        OverlayWriter(tmp_path / "missing" / "out.mp4", size=(48, 64))


def test_overlay_is_browser_playable_h264(tmp_path: Path) -> None:
    """What browsers need: H.264 (High or lower profile, 4:2:0 8-bit) in mp4 with the index
    (moov) before the data (mdat) so playback starts before the download ends."""
    out = tmp_path / "web.mp4"
    with OverlayWriter(out, size=(47, 63), time_base=Fraction(1, 25)) as writer:
        for index in range(3):
            writer.write(videos.pattern(index, 47, 63), _labels_for(47, 63), {3: "a"})
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert video.codec_context.profile in ("High", "Main", "Constrained Baseline")
        assert (video.codec_context.width, video.codec_context.height) == (64, 48)
        assert video.codec_context.pix_fmt == "yuv420p"
