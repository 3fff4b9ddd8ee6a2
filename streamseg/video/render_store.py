"""Redraw an overlay video from a label store and its source video, without the model.

`render_store(store, video, out)` decodes the source again with the store's decode settings,
pairs each stored frame with the source frame of the same index (and checks that its time
matches, so labels are never drawn over another video), and writes the overlay through
`OverlayWriter`. The mp4 is written to a temporary name and moved into place at the end, so
an existing overlay is replaced only by a complete one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from streamseg.errors import UserError

# Stored and decoded times may differ by rounding of the time base only.
TIME_TOLERANCE = 1e-3


@dataclass(frozen=True)
class RenderSummary:
    store: str
    video: str
    out: str
    frames: int  # frames written
    audio: bool  # source audio copied


def render_store(
    store: str | Path,
    out: str | Path,
    video: str | Path | None = None,
    alpha: float = 0.5,
    audio: bool = True,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> RenderSummary:
    """Write the overlay mp4 of a store's committed frames.

    Args:
        store: a label store (`streamseg run` output), finished or still running.
        out: the .mp4 to write (replaced atomically if it exists).
        video: the source video; None = the path recorded in the store.
        alpha: colour share inside masks.
        audio: copy the source's audio.
        progress: called as progress(frames_written, frames_total).
        overwrite: replace an existing `out` that streamseg did not write.

    Raises:
        UserError: unreadable store, missing or mismatching video, unwritable output.
    """
    from streamseg.outputs import check_overlay_output
    from streamseg.video.decode import iter_frames, probe
    from streamseg.video.render import OverlayWriter
    from streamseg.video.store import open_store

    reader = open_store(store)
    source_attrs = dict(reader.attrs.get("source", {}))
    if video is None:
        video = source_attrs.get("path")
        if not video:
            raise UserError(f"{store}: the store does not record its video; pass --video")
    info = probe(video, stream=_decode_setting(reader, "stream"))
    recorded = (source_attrs.get("height"), source_attrs.get("width"))
    if None not in recorded and tuple(recorded) != info.size:
        raise UserError(
            f"{video}: does not match the store {store} (frames {info.height}x{info.width}, "
            f"the store's source {recorded[0]}x{recorded[1]})"
        )
    if len(reader) == 0:
        raise UserError(f"{store}: the store has no committed frames yet; nothing to render")
    table = reader.frames
    wanted = table["index"].tolist()
    times = table["time"].tolist()
    names = _track_names(reader)
    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(f"{out}: cannot write (folder {out.parent} does not exist)")
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give the .mp4 file to write")
    check_overlay_output(out, inputs=[video, store], overwrite=overwrite, what="--out")
    partial = out.with_name(f".{out.stem}.partial{out.suffix or '.mp4'}")
    writer = OverlayWriter(
        partial,
        size=info.size,
        time_base=Fraction(info.time_base),
        audio_from=video if (audio and info.has_audio) else None,
        rate=info.fps,
        alpha=alpha,
    )
    try:
        frames = iter_frames(
            video,
            stride=_decode_setting(reader, "stride") or 1,
            start=_decode_setting(reader, "start"),
            end=_decode_setting(reader, "end"),
            stream=_decode_setting(reader, "stream"),
        )
        with contextlib.closing(frames):
            _write_frames(frames, writer, reader, wanted, times, names, progress, store, video)
        writer.close()
        os.replace(partial, out)
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        partial.unlink(missing_ok=True)
        raise
    return RenderSummary(
        store=str(store),
        video=str(video),
        out=str(out),
        frames=writer.frames_written,
        audio=bool(audio and info.has_audio),
    )


def _write_frames(
    frames: object,
    writer: object,
    reader: object,
    wanted: list[int],
    times: list[float],
    names: dict[int, str],
    progress: Callable[[int, int], None] | None,
    store: str | Path,
    video: str | Path,
) -> None:
    """Pair stored frames with source frames by index (times must agree) and draw them."""
    total = len(wanted)
    written = 0
    for frame in frames:  # type: ignore[attr-defined]
        if written == total:
            break
        if frame.index < wanted[written]:
            continue
        if frame.index > wanted[written] or abs(frame.time - times[written]) > TIME_TOLERANCE:
            raise UserError(
                f"{video}: does not match the store {store} (stored frame {written} is "
                f"source frame {wanted[written]} at {times[written]:.3f}s; the video has "
                f"frame {frame.index} at {frame.time:.3f}s)"
            )
        labels = reader.labels(written)  # type: ignore[attr-defined]
        writer.write(frame.image, labels, names, pts=frame.pts)  # type: ignore[attr-defined]
        written += 1
        if progress is not None:
            progress(written, total)
    if written < total:
        raise UserError(
            f"{video}: ends before the store {store} does ({written} of {total} frames)"
        )


def _decode_setting(reader: object, key: str) -> object:
    settings = reader.attrs.get("settings", {})  # type: ignore[attr-defined]
    return dict(settings.get("decode", {})).get(key)


def _track_names(reader: object) -> dict[int, str]:
    """Class name per track id (the track's voted class)."""
    names = reader.class_names  # type: ignore[attr-defined]
    tracks = reader.tracks  # type: ignore[attr-defined]
    return {
        int(track): names[int(cls)] if 0 <= int(cls) < len(names) else f"#{int(cls)}"
        for track, cls in zip(tracks["track_id"], tracks["class_id"], strict=True)
    }
