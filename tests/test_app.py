"""The Gradio demo (streamseg/app.py): helpers exactly, then the served app through gradio_client.

The served tests launch the real app on a free loopback port with the tiny random-weight model
(`tiny-convnext`): outputs are checked for form and consistency (formats, frame counts, table
rows vs the store), not for meaning.
"""

from __future__ import annotations

import json
import socket
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from fake_segmenter import FakeSegmenter, make_blob_video

from streamseg.errors import UserError
from streamseg.model.vocab import builtin_vocabulary, parse_vocab

gradio = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from streamseg.app import (  # noqa: E402 - after the importorskip of gradio
    TRACK_HEADERS,
    AppSettings,
    DemoApp,
    classify_upload,
    launch,
    model_choices,
    run_video_job,
    track_rows,
    vocabulary_text,
)

# ----------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("name", ["shapes", "coco", "ade20k"])
def test_vocabulary_presets_round_trip_through_the_cli_syntax(name: str) -> None:
    text, stuff = vocabulary_text(name)
    assert parse_vocab(text, stuff or None) == builtin_vocabulary(name)


def test_shapes_preset_text() -> None:
    text, stuff = vocabulary_text("shapes")
    assert text.split(",")[:2] == ["red circle|red disc", "red square"]
    assert stuff == "grass,water,sand,sky,brick,snow"


def test_classify_upload(tmp_path: Path) -> None:
    video = tmp_path / "Clip.MP4"
    video.write_bytes(b"x" * 10)
    image = tmp_path / "a.jpeg"
    image.write_bytes(b"x" * 10)
    assert classify_upload(video, max_bytes=10) == "video"
    assert classify_upload(image, max_bytes=10) == "image"
    with pytest.raises(UserError, match=r"^Clip.MP4: 0.0 MB is over the upload limit of 0 MB"):
        classify_upload(video, max_bytes=9)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UserError, match=r"^notes.txt: not a video or image file \(accepted: "):
        classify_upload(text, max_bytes=1e6)


def test_model_choices_lists_the_default_and_the_cli_model() -> None:
    from streamseg.model.segmenter import DEFAULT_MODEL

    choices = model_choices("my/folder")
    values = [value for _, value in choices]
    assert values[0] == "my/folder"
    assert DEFAULT_MODEL in values and "tiny-convnext" in values
    assert len(values) == len(set(values))


def test_video_job_table_matches_the_tracks(tmp_path: Path) -> None:
    """The fake colour segmenter on the blob video: red hidden on frames 10-12 (one track
    across the gap), blue on all 24, ground (stuff) on all 24; 12.5 fps, so time = 0.08 i."""
    video = make_blob_video(tmp_path / "blobs.mp4")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    calls: list[tuple[int, int | None]] = []
    result = run_video_job(
        video,
        run_dir,
        FakeSegmenter(),
        None,
        stride=1,
        max_frames=24,
        score_threshold=0.0,
        batch_size=4,
        progress=lambda value, desc=None, unit=None: calls.append(value),
    )
    assert result.kind == "video"
    by_class = {row[1]: row[2:] for row in result.rows}
    assert by_class["red"] == [0.0, 1.84, 21, 0.9]
    assert by_class["blue"] == [0.0, 1.84, 24, 0.8]
    assert by_class["ground"] == [0.0, 1.84, 24, 0.7]
    assert sorted(row[0] for row in result.rows) == [1, 2, 3]
    # the progress bar: (done, total) from 0 to all 24 frames
    assert calls[0] == (0, 24) and calls[-1] == (24, 24)
    assert [path.name for path in result.files] == [
        "blobs_store.zip",
        "blobs_coco-panoptic.zip",
        "blobs_vipseg.zip",
    ]
    assert track_rows(run_dir / "blobs.zarr") == result.rows
    with av.open(str(result.overlay)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == 24


def test_demo_refuses_bad_requests_before_loading_a_model(tmp_path: Path) -> None:
    app = DemoApp(AppSettings(work_dir=tmp_path, max_frames=10))
    app.segmenters.load = None  # any model load would fail loudly
    video = make_blob_video(tmp_path / "blobs.mp4", frames=2)
    with pytest.raises(UserError, match="no input"):
        app.run(None, "a", "", None, 1, 2, 0.0)
    with pytest.raises(UserError, match="empty class name"):
        app.run(str(video), "a,,b", "", None, 1, 2, 0.0)
    with pytest.raises(UserError, match=r"max frames: must be in 1\.\.10"):
        app.run(str(video), "a", "", None, 1, 11, 0.0)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(UserError, match="broken.mp4: not a video FFmpeg can read"):
        app.run(str(broken), "a", "", None, 1, 2, 0.0)


def test_search_finds_tracks_of_the_apps_runs(tmp_path: Path) -> None:
    """The search box: after a video run with the default model, a query for one of the run's
    classes returns its tracks ranked, with thumbnails and links to the overlay at each track's
    first frame."""
    from streamseg.model.embedded import find_model_folder

    sample = find_model_folder("shapes-tiny") / "sample.mp4"
    app = DemoApp(AppSettings(work_dir=tmp_path, max_frames=12))
    with pytest.raises(UserError, match="type some words"):
        app.search("  ", 5, None)
    assert app.search("red circle", 5, None).status.startswith("no finished video runs")
    app.run(str(sample), "", "", None, 1, 12, 0.0)
    result = app.search("red circle", 3, None)
    assert 1 <= len(result.rows) <= 3 and [row[0] for row in result.rows] == list(
        range(1, len(result.rows) + 1)
    )
    scores = [row[1] for row in result.rows]
    assert scores == sorted(scores, reverse=True)
    assert result.gallery and all(Path(path).is_file() for path, _ in result.gallery)
    assert all(str(tmp_path) in path for path, _ in result.gallery)  # inside the served folder
    assert "_overlay.mp4#t=" in result.links


def test_sample_video_is_made_when_none_is_bundled(tmp_path: Path) -> None:
    samples = DemoApp(AppSettings(work_dir=tmp_path)).samples()
    assert {path.suffix for path in samples} == {".mp4", ".png"}
    assert all(path.parent == tmp_path / "samples" for path in samples)
    video = next(path for path in samples if path.suffix == ".mp4")
    with av.open(str(video)) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_cli_registers_app_with_loopback_default() -> None:
    from streamseg.cli import build_parser

    args = build_parser().parse_args(["app"])
    assert (args.host, args.port, args.share, args.max_file_mb) == ("127.0.0.1", 7860, False, 200)


# ----------------------------------------------------------------------------- served
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - (demo, client)
    work = tmp_path_factory.mktemp("app")
    settings = AppSettings(model="tiny-convnext", device="cpu", work_dir=work, max_file_mb=1.0)
    demo = launch(settings, host="127.0.0.1", port=_free_port(), block=False)
    try:
        client = gradio_client.Client(demo.local_url, verbose=False)
        yield demo, client
    finally:
        demo.close()


def _predict(client, path: Path, vocab: str = "red circle,blue square,grass", frames: int = 4):  # noqa: ANN001, ANN202
    return client.predict(
        gradio_client.handle_file(str(path)),
        vocab,
        "grass",
        "tiny-convnext",
        1,
        frames,
        0.0,
        api_name="/run",
    )


def test_served_video_gives_overlay_table_and_downloads(served, tmp_path: Path) -> None:  # noqa: ANN001
    demo, client = served
    assert demo.local_url.startswith("http://127.0.0.1:")
    video = next(p for p in demo.streamseg_app.samples() if p.suffix == ".mp4")
    overlay, image, table, files, status = _predict(client, video, frames=4)
    assert image is None
    assert table["headers"] == TRACK_HEADERS
    with av.open(overlay) as container:
        stream = container.streams.video[0]
        # The bundled sample (weights/shapes-tiny/sample.mp4) or one made at 128 px.
        with av.open(str(video)) as source:
            size = (source.streams.video[0].height, source.streams.video[0].width)
        assert (stream.codec_context.name, stream.height, stream.width) == ("h264", *size)
        assert sum(1 for _ in container.decode(stream)) == 4
    assert [Path(f).name for f in files] == [
        f"{video.stem}_store.zip",
        f"{video.stem}_coco-panoptic.zip",
        f"{video.stem}_vipseg.zip",
    ]
    with zipfile.ZipFile(files[0]) as archive:
        archive.extractall(tmp_path)
    from streamseg.video.store import open_store

    reader = open_store(tmp_path / f"{video.stem}.zarr")
    assert reader.num_frames == 4
    assert reader.class_names == ["red circle", "blue square", "grass"]
    assert table["data"] == track_rows(tmp_path / f"{video.stem}.zarr")
    with zipfile.ZipFile(files[1]) as archive:
        coco = json.loads(archive.read(f"{video.stem}_coco-panoptic/panoptic.json"))
    assert len(coco["images"]) == 4
    assert status.startswith(f"**{video.name}**: 4 frames ({size[1]}x{size[0]})")
    assert "note: this model has random weights" in status


def test_served_image_gives_overlay_image(served) -> None:  # noqa: ANN001
    demo, client = served
    image_path = next(p for p in demo.streamseg_app.samples() if p.suffix == ".png")
    overlay, image, table, files, status = _predict(client, image_path)
    assert overlay is None
    from PIL import Image

    with Image.open(image) as picture:
        assert picture.size == (256, 192)
    with zipfile.ZipFile(files[0]) as archive:
        names = set(archive.namelist())
        predictions = json.loads(archive.read("shapes_image/predictions.json"))
    assert "shapes_image/panoptic/shapes.png" in names
    assert "shapes_image/overlay/shapes.png" in names
    segments = predictions["annotations"][0]["segments_info"]
    assert len(table["data"]) == len(segments)
    assert [c["name"] for c in predictions["categories"]] == ["red circle", "blue square", "grass"]
    assert status.startswith(f"**shapes.png**: {len(segments)} segments (256x192)")


def test_served_bad_uploads_get_a_message(served, tmp_path: Path) -> None:  # noqa: ANN001
    _, client = served
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(Exception, match="Invalid file type"):
        _predict(client, notes)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(Exception, match="broken.mp4: not a video FFmpeg can read"):
        _predict(client, broken)
    big = tmp_path / "big.mp4"
    big.write_bytes(np.zeros(1_500_000, np.uint8).tobytes())
    with pytest.raises(Exception, match="exceeds the maximum file size of 1000000 bytes"):
        _predict(client, big)


def test_cli_busy_port_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from streamseg.cli import main

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        code = main(["app", "--port", str(port), "--work-dir", str(tmp_path)])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"streamseg app: error: 127.0.0.1:{port}: cannot serve (")
