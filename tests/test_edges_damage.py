"""Damaged input is said, not hidden (issue 20): files damaged here by byte edits decode with
FFmpeg's concealment, and the damage is counted and said in one line, in the store's decode
record, in `streamseg info`, in the batch manifest and in the app's run summary; a still picture
is one frame and said to be one.

Each damaged file is built from a clean one made with PyAV: bytes of some H.264 packets
overwritten (the container index stays intact, so nothing raises), bytes shuffled, Matroska
clusters cut out, the file cut short.
"""

from __future__ import annotations

import random
import re
import shutil
import threading
import warnings
from pathlib import Path

import av
import av.logging
import pytest
import videos
from fake_segmenter import FakeSegmenter, blob_frame

from streamseg.config import RunConfig
from streamseg.video.decode import DecodeStats, iter_frames, probe
from streamseg.video.pipeline import run_video
from streamseg.video.store import open_store

DAMAGE_LINE = re.compile(
    r": damaged input: (\d+) decoder errors?, (\d+) gaps?( \(longest [\d.]+ s at [\d.]+ s\))?"
    r".*; frames may be missing or corrupted$"
)
MATROSKA_CLUSTER = bytes.fromhex("1F43B675")  # the EBML id of a Matroska Cluster element


def _blob_mkv(path: Path, frames: int = 75, cluster_ms: int = 200) -> Path:
    """Moving blobs, H.264 at 25 fps in Matroska with a cluster every `cluster_ms` (5 frames)."""
    options = {"cluster_time_limit": str(cluster_ms)}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(
            "libx264", rate=25, options={"crf": "8", "preset": "ultrafast", "g": "10"}
        )
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(blob_frame(index), format="rgb24")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _blob_mp4(path: Path, frames: int = 40, size: tuple[int, int] = (48, 64)) -> Path:
    return videos.make_video(
        path, frames=frames, height=size[0], width=size[1], options=(("g", "10"),)
    )


def _overwrite_middles(source: Path, destination: Path, packets: tuple[int, ...]) -> Path:
    """Flip 8 bytes in the middle of some packets: the NAL lengths stay valid, the slice data
    does not (FFmpeg conceals it and raises nothing)."""
    data = bytearray(source.read_bytes())
    for number in packets:
        position, size, _ = videos.video_packets(source)[number]
        for offset in range(position + size // 2, position + size // 2 + 8):
            data[offset] ^= 0x5A
    destination.write_bytes(bytes(data))
    return destination


def _cut_clusters(source: Path, destination: Path, first: int, count: int) -> Path:
    """Remove `count` whole Matroska clusters starting at cluster `first` (a lost piece of a
    download or a damaged disk sector range). The tests cut clusters 3-4 of `_blob_mkv`'s
    files: cluster 5 starts with a keyframe (1.2 s), so the frames after the cut decode."""
    data = source.read_bytes()
    starts = [m.start() for m in re.finditer(re.escape(MATROSKA_CLUSTER), data)]
    destination.write_bytes(data[: starts[first]] + data[starts[first + count] :])
    return destination


def _shuffle_packet(source: Path, destination: Path, packet: int, seed: int = 0) -> Path:
    data = bytearray(source.read_bytes())
    position, size, _ = videos.video_packets(source)[packet]
    piece = data[position : position + size]
    random.Random(seed).shuffle(piece)
    data[position : position + size] = piece
    destination.write_bytes(bytes(data))
    return destination


@pytest.mark.parametrize("threads", [0, "auto", 2])
def test_overwritten_slices_count_as_decoder_errors(tmp_path: Path, threads: object) -> None:
    # 320x240: four slices per frame with x264's defaults, so slice threading has workers.
    clean = _blob_mp4(tmp_path / "clean.mp4", size=(240, 320))
    damaged = _overwrite_middles(clean, tmp_path / "damaged.mp4", packets=(12, 13, 25))
    stats = DecodeStats()
    frames = list(iter_frames(damaged, stats=stats, threads=threads))  # type: ignore[arg-type]
    # Concealed: every frame comes out and nothing is skipped ...
    assert len(frames) == 40 and stats.corrupt_packets == 0
    # ... but FFmpeg's log said so, and the counters say it now.
    assert stats.decoder_errors > 0 and stats.damaged
    assert all(sample.startswith("h264: ") for sample in stats.error_samples)
    line = stats.damage_line("damaged.mp4")
    assert line is not None and line.startswith("damaged.mp4: damaged input: ")
    assert DAMAGE_LINE.search(line)
    clean_stats = DecodeStats()
    list(iter_frames(clean, stats=clean_stats, threads=threads))  # type: ignore[arg-type]
    assert not clean_stats.damaged and clean_stats.damage_line("clean.mp4") is None


def _cluster_times(path: Path) -> list[list[float]]:
    """The frame times (s) in each Matroska cluster, from the packets' byte positions."""
    data = path.read_bytes()
    starts = [m.start() for m in re.finditer(re.escape(MATROSKA_CLUSTER), data)]
    clusters: list[list[float]] = [[] for _ in starts]
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0]):
            if packet.size:
                number = max(i for i, start in enumerate(starts) if start < packet.pos)
                clusters[number].append(float(packet.pts * packet.time_base))
    return clusters


def test_missing_matroska_clusters_are_a_gap(tmp_path: Path) -> None:
    clean = _blob_mkv(tmp_path / "clean.mkv")
    clusters = _cluster_times(clean)
    damaged = _cut_clusters(clean, tmp_path / "holes.mkv", first=3, count=2)
    lost = sorted(clusters[3] + clusters[4])
    before, after = max(clusters[2]), min(clusters[5])
    assert len(lost) >= 6 and before < lost[0] and lost[-1] < after
    stats = DecodeStats()
    times = [round(frame.time, 3) for frame in iter_frames(damaged, stats=stats)]
    assert not set(times) & {round(t, 3) for t in lost}
    assert len(times) == 75 - len(lost)
    assert stats.gaps == 1
    assert stats.longest_gap == pytest.approx(after - before, abs=1e-6)
    assert stats.longest_gap_at == pytest.approx(after, abs=1e-6)
    line = stats.damage_line("holes.mkv")
    assert line is not None
    assert f"1 gap (longest {after - before:.1f} s at {after:.1f} s)" in line
    assert DAMAGE_LINE.search(line)
    clean_stats = DecodeStats()
    assert len(list(iter_frames(clean, stats=clean_stats))) == 75 and clean_stats.gaps == 0


def test_shuffled_bytes_are_said(tmp_path: Path) -> None:
    clean = _blob_mp4(tmp_path / "clean.mp4")
    damaged = _shuffle_packet(clean, tmp_path / "shuffled.mp4", packet=20)
    stats = DecodeStats()
    list(iter_frames(damaged, stats=stats))
    assert stats.decoder_errors > 0
    assert DAMAGE_LINE.search(stats.damage_line("shuffled.mp4") or "")


def test_file_cut_short_is_said(tmp_path: Path) -> None:
    clean = _blob_mkv(tmp_path / "whole.mkv")
    cut = videos.truncate_copy(clean, tmp_path / "cut.mkv", fraction=0.5)
    stats = DecodeStats()
    frames = list(iter_frames(cut, stats=stats))
    assert 3 < len(frames) < 75
    line = stats.damage_line("cut.mkv") or ""
    assert DAMAGE_LINE.search(line) and "cut short" in line


def test_variable_frame_rate_pauses_are_not_gaps(tmp_path: Path) -> None:
    path = videos.make_case(tmp_path, "vfr")
    stats = DecodeStats()
    list(iter_frames(path, stats=stats))
    assert stats.gaps == 0 and not stats.damaged


def test_logging_is_left_as_found_and_nothing_is_printed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    damaged = _overwrite_middles(
        _blob_mp4(tmp_path / "clean.mp4"), tmp_path / "d.mp4", packets=(12, 13)
    )
    assert av.logging.get_level() is None
    stats = DecodeStats()
    list(iter_frames(damaged, stats=stats))
    assert stats.decoder_errors > 0
    assert av.logging.get_level() is None
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_concurrent_files_keep_their_own_counts(tmp_path: Path) -> None:
    """A damaged H.264 and an intact VP9 decoded at once on two threads: the errors go to the
    damaged one only."""
    damaged = _overwrite_middles(
        _blob_mp4(tmp_path / "clean.mp4", size=(240, 320)), tmp_path / "d.mp4", (12, 13, 25)
    )
    intact = videos.make_video(tmp_path / "intact.webm", codec="libvpx-vp9", frames=40)
    results: dict[str, DecodeStats] = {}

    def decode(name: str, path: Path) -> None:
        stats = DecodeStats()
        list(iter_frames(path, stats=stats))
        results[name] = stats

    threads = [
        threading.Thread(target=decode, args=("damaged", damaged)),
        threading.Thread(target=decode, args=("intact", intact)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results["damaged"].decoder_errors > 0
    assert results["intact"].decoder_errors == 0 and not results["intact"].damaged


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_a_picture_named_mp4_is_one_frame_said_to_be_a_still_image(
    tmp_path: Path, kind: str
) -> None:
    from PIL import Image

    picture = tmp_path / f"picture.{kind}"
    Image.fromarray(videos.pattern(3)).save(picture)
    disguised = tmp_path / "holiday.mp4"
    shutil.copyfile(picture, disguised)
    info = probe(disguised)
    assert info.still_image and info.frame_count == 1
    stats = DecodeStats()
    frames = list(iter_frames(disguised, stats=stats))
    assert len(frames) == 1 and stats.still_image and not stats.damaged
    assert videos.read_index(frames[0].image) == 3


def test_a_one_frame_video_is_a_still_image(tmp_path: Path) -> None:
    path = videos.make_video(tmp_path / "one.mp4", frames=1)
    assert probe(path).still_image
    stats = DecodeStats()
    assert len(list(iter_frames(path, stats=stats))) == 1 and stats.still_image
    two = videos.make_video(tmp_path / "two.mp4", frames=2)
    assert not probe(two).still_image


def _run(source: Path, out: Path) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_video(source, out, config=RunConfig(), segmenter=FakeSegmenter())
    return summary, [str(w.message) for w in caught]


def test_a_run_says_it_once_and_records_it(tmp_path: Path) -> None:
    clean = _blob_mkv(tmp_path / "clean.mkv", frames=40)
    damaged = _overwrite_middles(
        _cut_clusters(clean, tmp_path / "h.mkv", 3, 2), tmp_path / "d.mkv", (23, 24)
    )
    out = tmp_path / "d.zarr"
    summary, messages = _run(damaged, out)
    damage = [m for m in messages if "damaged input" in m]
    assert len(damage) == 1 and DAMAGE_LINE.search(damage[0])
    assert damage[0].startswith(str(damaged))
    assert summary.damage == damage[0] and summary.gaps == 1 and summary.decoder_errors > 0
    record = open_store(out).attrs["decode"]
    assert record["decoder_errors"] == summary.decoder_errors and record["gaps"] == 1
    clusters = _cluster_times(clean)
    gap = min(clusters[5]) - max(clusters[2])
    assert record["damaged"] is True and record["longest_gap"] == pytest.approx(gap)
    # A rerun of the finished store still says it.
    again, _ = _run(damaged, out)
    assert again.status == "already done" and again.damage == summary.damage
    assert again.decoder_errors == summary.decoder_errors
    clean_out = tmp_path / "c.zarr"
    _, clean_messages = _run(clean, clean_out)
    assert not any("damaged input" in m for m in clean_messages)
    assert open_store(clean_out).attrs["decode"]["damaged"] is False


def test_info_shows_the_decode_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streamseg.cli import main

    clean = _blob_mkv(tmp_path / "clean.mkv", frames=40)
    damaged = _cut_clusters(clean, tmp_path / "holes.mkv", 3, 2)
    _run(damaged, tmp_path / "d.zarr")
    capsys.readouterr()
    assert main(["info", str(tmp_path / "d.zarr")]) == 0
    out = capsys.readouterr().out
    clusters = _cluster_times(clean)
    after = min(clusters[5])
    gap = after - max(clusters[2])
    assert f"damaged input: 0 decoder errors, 1 gaps (longest {gap:.1f} s at {after:.1f} s)" in out
    _run(_blob_mkv(tmp_path / "c.mkv", frames=8), tmp_path / "c.zarr")
    capsys.readouterr()
    assert main(["info", str(tmp_path / "c.zarr")]) == 0
    assert "damaged" not in capsys.readouterr().out


def test_still_image_run_is_said(tmp_path: Path) -> None:
    from PIL import Image

    disguised = tmp_path / "still.mp4"
    Image.fromarray(blob_frame(0)).save(disguised, format="PNG")
    summary, messages = _run(disguised, tmp_path / "s.zarr")
    assert summary.frames == 1 and summary.still_image and summary.damage is None
    assert any("a still image, processed as one frame" in m for m in messages)
    assert open_store(tmp_path / "s.zarr").attrs["decode"]["still_image"] is True


def test_app_summary_says_damage(tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    from streamseg.app_jobs import run_video_job

    damaged = _cut_clusters(_blob_mkv(tmp_path / "clean.mkv", frames=40), tmp_path / "h.mkv", 3, 2)
    segmenter = FakeSegmenter()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_video_job(
            damaged,
            run_dir,
            segmenter,
            segmenter.vocabulary,
            stride=1,
            max_frames=100,
            score_threshold=0.0,
            batch_size=4,
        )
    assert "damaged input: 0 decoder errors, 1 gap" in result.status


def test_batch_record_carries_the_damage(tmp_path: Path) -> None:
    from streamseg.batch.manifest import BatchRecord, read_manifest, write_manifest
    from streamseg.batch.tasks import recorded_source_facts

    damaged = _cut_clusters(_blob_mkv(tmp_path / "clean.mkv", frames=40), tmp_path / "h.mkv", 3, 2)
    summary, _ = _run(damaged, tmp_path / "d.zarr")
    facts = recorded_source_facts(tmp_path / "d.zarr")
    assert facts == {"damage": summary.damage, "still_image": False}
    record = BatchRecord(str(damaged), str(tmp_path / "d.zarr"), "done", 40, **facts)
    write_manifest(tmp_path / "manifest.json", [record])
    assert read_manifest(tmp_path / "manifest.json")[0].damage == summary.damage
