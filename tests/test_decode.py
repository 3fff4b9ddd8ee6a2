"""Decoding real files made with PyAV: codecs, pixel formats, rotation, VFR, damage, bad input."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import videos

from streamseg.errors import UserError
from streamseg.video.decode import DecodeStats, iter_frames, probe
from streamseg.video.image_folders import list_image_frames, natural_key
from streamseg.video.prefetch import prefetch

CODEC_CASES = [
    "h264",
    "h264_10bit",
    "h264_444_odd",
    "h264_ts",
    "hevc",
    "hevc_10bit",
    "vp9",
    "vp9_odd",
    "vp9_alpha",
    "av1",
    "av1_10bit",
    "mpeg4",
    "mjpeg",
    "png_rgba",
    "ffv1_gray",
    "ffv1_gray16",
    "ffv1_yuva",
]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every test video of tests/videos.py, made once for this module (well under a second)."""
    directory = tmp_path_factory.mktemp("videos")
    return {name: videos.make_case(directory, name) for name in videos.CASES}


def _spec(name: str) -> videos.VideoSpec:
    return videos.CASES[name][1]


@pytest.mark.parametrize("name", CODEC_CASES)
def test_every_codec_and_pixel_format_decodes_upright(cases: dict[str, Path], name: str) -> None:
    spec = _spec(name)
    stats = DecodeStats()
    frames = list(iter_frames(cases[name], stats=stats))
    gray = spec.pix_fmt.startswith("gray")
    assert len(frames) == spec.frame_count == stats.decoded == stats.yielded
    assert [frame.index for frame in frames] == list(range(spec.frame_count))
    for number, frame in enumerate(frames):
        assert frame.image.dtype == np.uint8
        assert frame.image.shape == (spec.height, spec.width, 3)
        assert frame.source_size == (spec.height, spec.width)
        assert videos.read_index(frame.image) == number
        assert videos.is_upright(frame.image, gray=gray)
    if gray:
        # Gray sources give equal R, G and B.
        assert np.array_equal(frames[0].image[..., 0], frames[0].image[..., 2])
    assert stats.corrupt_packets == 0 and stats.warnings == []
    assert frames[0].keyframe


@pytest.mark.parametrize("name", ["h264", "vp9_odd", "ffv1_gray16", "mjpeg"])
def test_resize_in_ffmpeg_keeps_content(cases: dict[str, Path], name: str) -> None:
    spec = _spec(name)
    frames = list(iter_frames(cases[name], size=(30, 40)))
    assert [frame.image.shape for frame in frames] == [(30, 40, 3)] * spec.frame_count
    assert all(frame.source_size == (spec.height, spec.width) for frame in frames)
    assert [videos.read_index(frame.image) for frame in frames] == list(range(spec.frame_count))
    assert all(videos.is_upright(f.image, gray=spec.pix_fmt.startswith("gray")) for f in frames)


@pytest.mark.parametrize("name", ["rotated90", "rotated180", "rotated270", "rotated90_mkv"])
def test_rotation_metadata_gives_upright_frames(cases: dict[str, Path], name: str) -> None:
    spec = _spec(name)
    info = probe(cases[name])
    assert info.rotation == spec.rotation % 360
    assert info.size == (spec.height, spec.width)
    full = list(iter_frames(cases[name]))
    assert all(frame.image.shape == (48, 64, 3) for frame in full)
    assert all(videos.is_upright(frame.image) for frame in full)
    # Resizing a rotated frame: the requested size is the upright one.
    small = list(iter_frames(cases[name], size=(24, 40)))
    assert all(frame.image.shape == (24, 40, 3) for frame in small)
    assert all(frame.source_size == (48, 64) for frame in small)
    assert all(videos.is_upright(frame.image) for frame in small)
    assert [videos.read_index(frame.image) for frame in small] == list(range(spec.frame_count))


def test_rotation_sign_on_a_hand_made_case(tmp_path: Path) -> None:
    """A landscape 64x48 picture, red in its top-right corner, stored with a display rotation
    of 90 degrees counter-clockwise (as phones tag portrait video, FFmpeg's `-display_rotation
    90`): turned counter-clockwise, the top-right corner becomes the top-left one."""
    import av

    coded = np.full((48, 64, 3), 128, np.uint8)
    coded[:16, 48:] = (220, 30, 30)
    path = tmp_path / "turned.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "8"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(90)
        out.mux(stream.encode(av.VideoFrame.from_ndarray(coded, format="rgb24")))
        out.mux(stream.encode(None))
    frame = next(iter(iter_frames(path)))
    assert frame.image.shape == (64, 48, 3)
    assert frame.source_size == (64, 48)
    assert np.abs(frame.image[2:14, 2:14].mean((0, 1)) - (220, 30, 30)).max() < 30
    assert np.abs(frame.image[-14:-2, -14:-2].mean((0, 1)) - 128).max() < 10


@pytest.mark.parametrize("name", ["vfr", "vfr_mkv"])
def test_vfr_timestamps_come_from_pts(cases: dict[str, Path], name: str) -> None:
    spec = _spec(name)
    frames = list(iter_frames(cases[name]))
    assert len(frames) == len(videos.VFR_TIMES)
    np.testing.assert_allclose([f.time for f in frames], videos.VFR_TIMES, atol=1e-3)
    assert all(frame.pts is not None for frame in frames)
    assert [videos.read_index(f.image) for f in frames] == list(range(spec.frame_count))


@pytest.mark.parametrize("name", ["offset", "offset_mkv"])
def test_start_offset_kept_and_start_end_relative_to_first_frame(
    cases: dict[str, Path], name: str
) -> None:
    spec = _spec(name)
    expected = spec.frame_times()
    info = probe(cases[name])
    assert info.start_time == pytest.approx(spec.start, abs=1e-3)
    frames = list(iter_frames(cases[name]))
    np.testing.assert_allclose([f.time for f in frames], expected, atol=1e-3)
    # --start/--end are seconds from the first frame, not absolute times.
    relative = [t - expected[0] for t in expected]
    window = list(iter_frames(cases[name], start=0.1, end=0.3))
    wanted = [i for i, t in enumerate(relative) if 0.1 - 1e-6 <= t < 0.3 - 1e-6]
    assert wanted and [frame.index for frame in window] == wanted


def test_stride_start_end_max_frames(cases: dict[str, Path]) -> None:
    path = cases["h264"]  # 12 frames at 25 fps: frame i at i * 0.04 s
    assert [f.index for f in iter_frames(path, stride=3)] == [0, 3, 6, 9]
    assert [f.index for f in iter_frames(path, start=0.1)] == list(range(3, 12))
    assert [f.index for f in iter_frames(path, end=0.2)] == [0, 1, 2, 3, 4]
    assert [f.index for f in iter_frames(path, start=0.1, stride=2)] == [3, 5, 7, 9, 11]
    assert [f.index for f in iter_frames(path, max_frames=4, stride=2)] == [0, 2, 4, 6]
    assert list(iter_frames(path, max_frames=0)) == []
    assert list(iter_frames(path, start=5.0)) == []
    frames = list(iter_frames(path, stride=5))
    assert [videos.read_index(f.image) for f in frames] == [0, 5, 10]
    np.testing.assert_allclose([f.time for f in frames], [0.0, 0.2, 0.4], atol=1e-6)
    for bad in ({"stride": 0}, {"max_frames": -1}, {"start": 1.0, "end": 0.5}):
        with pytest.raises(UserError):
            list(iter_frames(path, **bad))


def test_audio_and_subtitle_streams_are_ignored(cases: dict[str, Path]) -> None:
    info = probe(cases["audio_subs"])
    assert info.has_audio and info.video_streams == 1
    frames = list(iter_frames(cases["audio_subs"]))
    assert [videos.read_index(f.image) for f in frames] == list(range(12))
    assert probe(cases["audio"]).has_audio
    assert not probe(cases["h264"]).has_audio


def test_probe_facts(cases: dict[str, Path]) -> None:
    info = probe(cases["h264"])
    assert (info.width, info.height, info.rotation) == (64, 48, 0)
    assert info.fps == pytest.approx(25.0)
    assert info.frame_count == 12
    assert info.duration == pytest.approx(0.48, abs=0.01)
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.start_time == 0.0 and info.stream == 0
    assert info.to_dict()["width"] == 64


def test_stream_selection(tmp_path: Path) -> None:
    """Two video streams: --stream picks one (counted among video streams)."""
    import av

    path = tmp_path / "two.mkv"
    with av.open(str(path), "w") as out:
        streams = []
        for width in (64, 32):
            stream = out.add_stream("libx264", rate=25, options={"crf": "8"})
            stream.width, stream.height, stream.pix_fmt = width, 48, "yuv420p"
            streams.append(stream)
        for index in range(5):
            for stream in streams:
                image = videos.pattern(index, 48, stream.width)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        for stream in streams:
            out.mux(stream.encode(None))
    assert {f.image.shape for f in iter_frames(path)} == {(48, 64, 3)}
    assert {f.image.shape for f in iter_frames(path, stream=1)} == {(48, 32, 3)}
    assert probe(path, stream=1).width == 32
    with pytest.raises(UserError, match="two.mkv: no video stream 2"):
        list(iter_frames(path, stream=2))


def test_corrupt_packets_are_skipped_and_counted(cases: dict[str, Path], tmp_path: Path) -> None:
    source = videos.make_video(tmp_path / "long.mp4", frames=30, options=(("g", "5"),))
    damaged = videos.corrupt_copy(source, tmp_path / "damaged.mp4", packets=(12, 13))
    stats = DecodeStats()
    frames = list(iter_frames(damaged, stats=stats))
    assert stats.corrupt_packets == 2
    assert len(frames) == 28 == stats.decoded
    # Each packet is a detail of the damage (kept in the store's record); one line says it.
    assert len(stats.damage_notes) == 2 and all("damaged.mp4" in w for w in stats.damage_notes)
    assert stats.warnings == []
    assert (stats.damage_line("damaged.mp4") or "").startswith("damaged.mp4: damaged input: ")
    # The frames before the damage are intact.
    assert [videos.read_index(f.image) for f in frames[:12]] == list(range(12))


def test_file_truncated_after_its_index_is_partly_decodable(tmp_path: Path) -> None:
    source = videos.make_video(tmp_path / "whole.mp4", frames=30, faststart=True)
    cut = videos.truncate_copy(source, tmp_path / "cut.mp4", fraction=0.6)
    stats = DecodeStats()
    frames = list(iter_frames(cut, stats=stats))
    assert 5 < len(frames) < 30
    assert [videos.read_index(f.image) for f in frames[:5]] == list(range(5))
    # The index still says 30 frames.
    assert probe(cut).frame_count == 30


def test_truncated_mkv_yields_its_first_frames(tmp_path: Path) -> None:
    source = videos.make_video(tmp_path / "whole.mkv", frames=30)
    cut = videos.truncate_copy(source, tmp_path / "cut.mkv", fraction=0.5)
    frames = list(iter_frames(cut))
    assert 3 < len(frames) < 30
    assert [videos.read_index(f.image) for f in frames] == list(range(len(frames)))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "missing.mp4: no such file"),
        (lambda d: videos.make_empty(d / "empty.mp4"), "empty.mp4: file is empty"),
        (lambda d: videos.make_not_a_video(d / "text.mp4"), "text.mp4: not a video"),
        (lambda d: videos.make_audio_only(d / "sound.m4a"), "sound.m4a: no video stream"),
        (
            lambda d: videos.truncate_copy(videos.make_video(d / "a.mp4"), d / "cut.mp4", 0.5),
            "cut.mp4: not a video",
        ),
        (lambda d: d / "frames" / "*.png", r"frames/\*.png: no files match"),
    ],
)
def test_bad_inputs_raise_user_error_naming_the_file(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(UserError, match=message):
        list(iter_frames(path))
    with pytest.raises(UserError, match=message):
        probe(path)


def test_empty_folder_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match="folder has no image frames"):
        list(iter_frames(tmp_path))


def test_image_folder_and_glob_in_natural_order(tmp_path: Path) -> None:
    folder = videos.make_image_folder(tmp_path / "clip", frames=12)
    # Unpadded names: plain sorting would put frame_10 before frame_2.
    names = [path.name for path in list_image_frames(folder)]
    assert names[:3] == ["frame_0.png", "frame_1.png", "frame_2.png"]
    assert names[-1] == "frame_11.png"
    frames = list(iter_frames(folder, fps=10))
    assert [videos.read_index(f.image) for f in frames] == list(range(12))
    np.testing.assert_allclose([f.time for f in frames], np.arange(12) / 10)
    assert all(videos.is_upright(f.image) for f in frames)
    globbed = list(iter_frames(str(folder / "frame_1*.png"), size=(24, 32)))
    assert [videos.read_index(f.image) for f in globbed] == [1, 10, 11]
    assert {f.image.shape for f in globbed} == {(24, 32, 3)}
    info = probe(folder)
    assert (info.frame_count, info.size, info.fps, info.codec) == (12, (48, 64), 25.0, "images")
    assert info.time_base == "1/25"
    # pts = index, so the time base is one frame period.
    assert probe(folder, fps=30000 / 1001).time_base == "1001/30000"


def test_unreadable_image_in_a_folder_is_skipped(tmp_path: Path) -> None:
    folder = videos.make_image_folder(tmp_path / "clip", frames=4, extension="jpg")
    (folder / "frame_2.jpg").write_bytes(b"broken")
    stats = DecodeStats()
    frames = list(iter_frames(folder, stats=stats))
    assert [videos.read_index(f.image) for f in frames] == [0, 1, 3]
    assert stats.unreadable_images == 1 and "frame_2.jpg" in stats.warnings[0]


def test_natural_key() -> None:
    names = ["f10.png", "f2.png", "F1.png", "a.png", "f2b.png"]
    assert sorted(names, key=natural_key) == ["a.png", "F1.png", "f2.png", "f2b.png", "f10.png"]


def test_threads_option_gives_the_same_frames(cases: dict[str, Path]) -> None:
    single = [f.image for f in iter_frames(cases["hevc"], threads=1)]
    multi = [f.image for f in iter_frames(cases["hevc"], threads=2)]
    assert len(single) == len(multi) == 12
    assert all(np.array_equal(a, b) for a, b in zip(single, multi, strict=True))


def test_prefetch_keeps_order_bounds_the_queue_and_propagates_errors() -> None:
    produced: list[int] = []

    def numbers():
        for number in range(100):
            produced.append(number)
            yield number

    stream = prefetch(numbers(), maxsize=3)
    assert next(stream) == 0
    # At most: 1 consumed + 3 queued + 1 waiting to be put.
    assert len(produced) <= 5
    assert list(stream) == list(range(1, 100))

    def failing():
        yield 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(prefetch(failing()))


def test_prefetch_closes_the_source_when_the_consumer_stops(cases: dict[str, Path]) -> None:
    closed = threading.Event()

    def frames():
        try:
            yield from iter_frames(cases["h264"])
        finally:
            closed.set()

    stream = prefetch(frames(), maxsize=2)
    first = next(stream)
    assert first.index == 0
    stream.close()
    assert closed.is_set()
    assert not [t for t in threading.enumerate() if t.name == "prefetch"]


@pytest.mark.parametrize("name", ["h264", "rotated90"])
def test_source_image_alongside_a_small_image(cases: dict[str, Path], name: str) -> None:
    frames = list(iter_frames(cases[name], size=(24, 32), source_image=True, max_frames=3))
    for number, frame in enumerate(frames):
        assert frame.image.shape == (24, 32, 3)
        assert frame.source_image is not None and frame.source_image.shape == (48, 64, 3)
        assert videos.is_upright(frame.source_image)
        assert videos.read_index(frame.source_image) == number
    plain = next(iter(iter_frames(cases[name], source_image=True)))
    assert plain.source_image is plain.image
    assert next(iter(iter_frames(cases[name]))).source_image is None


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("long.mp4", videos.VideoSpec(frames=150, fps=10, options=(("g", "25"),))),
        ("long.mkv", videos.VideoSpec(frames=150, fps=10, start=2.0, options=(("g", "25"),))),
        (
            "long.webm",
            videos.VideoSpec(codec="libvpx-vp9", frames=150, fps=10, options=(("g", "25"),)),
        ),
    ],
)
def test_seeking_to_a_late_start_gives_the_same_frames(
    tmp_path: Path, name: str, spec: videos.VideoSpec
) -> None:
    """15 s at 10 fps: --start 11.3 seeks (>= SEEK_MIN_SECONDS) and must give exactly what
    decoding every frame gives (numbers, times, pictures)."""
    path = videos.make_video(tmp_path / name, spec)
    stats = DecodeStats()
    sought = list(iter_frames(path, start=11.3, end=13.0, stride=2, stats=stats))
    linear = list(iter_frames(path, start=11.3, end=13.0, stride=2, seek=False))
    assert [f.index for f in sought] == [f.index for f in linear] == list(range(113, 130, 2))
    np.testing.assert_allclose([f.time for f in sought], [f.time for f in linear])
    assert all(np.array_equal(a.image, b.image) for a, b in zip(sought, linear, strict=True))
    assert [videos.read_index(f.image) for f in sought] == [i % 25 for i in range(113, 130, 2)]
    # Only the frames from about a keyframe before the target were decoded.
    assert stats.decoded < 60 and stats.warnings == []


def test_seeking_in_vfr_video_loses_no_frame(tmp_path: Path) -> None:
    """Variable rate: after a seek the frame numbers are estimates, but the frames (times and
    pictures) are exactly those of decoding everything."""
    steps = np.random.default_rng(0).choice([0.02, 0.05, 0.1, 0.3], size=120)
    times = tuple(float(t) for t in np.round(np.cumsum(steps) - steps[0], 3))
    path = videos.make_video(tmp_path / "vfr.mp4", times=times, options=(("g", "20"),))
    start = times[-1] - 2.0
    assert start >= 10.0
    sought = list(iter_frames(path, start=start))
    linear = list(iter_frames(path, start=start, seek=False))
    assert [f.time for f in sought] == [f.time for f in linear]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(sought, linear, strict=True))
    indices = [f.index for f in sought]
    assert indices == sorted(set(indices))
