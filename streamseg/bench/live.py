"""The sustained input rate a live run keeps up with (for `streamseg bench`).

`measure_live_rate` serves a synthetic MPEG-TS stream on 127.0.0.1 at `input_fps` (pre-encoded,
so serving costs no CPU), reads it with `run_live` in live mode for `seconds`, and reports how
many frames per second were segmented (the sustained rate: frames beyond it are dropped before
inference), the drop share and the latency. With a source faster than the model, `processed_fps`
is the pipeline's live throughput on this machine for this model and frame size.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LiveRate:
    """What `measure_live_rate` measured."""

    size: tuple[int, int]  # (H, W) of the served frames
    input_fps: float  # rate of the served stream
    seconds: float  # wall seconds of the run (first frame to end)
    received: int  # frames decoded
    processed: int  # frames segmented
    dropped: int  # frames dropped before inference
    processed_fps: float  # sustained rate: processed / seconds
    latency_max: float  # seconds, arrival to end of segmentation
    latency_mean: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def encode_stream(size: tuple[int, int], frames: int, fps: float) -> list[tuple[float, bytes]]:
    """A synthetic MPEG-TS stream (a shapes-world clip, seed 0, mpeg4) as (send time in s,
    bytes) chunks: the scenes the default model knows, as in the other stages (a moving
    gradient, used before, gives a model nothing to find and was a worst case for the
    post-processing instead)."""
    from dataclasses import replace

    import av

    from streamseg.synthetic.video import VideoConfig, iter_video

    chunks: list[tuple[float, bytes]] = []
    clock = [0.0]

    class _Sink:
        def write(self, data: bytes) -> int:
            chunks.append((clock[0], bytes(data)))
            return len(data)

    height, width = size
    rate = Fraction(fps).limit_denominator(1001)
    scenes = iter_video(0, replace(VideoConfig(), height=height, width=width, num_frames=frames))
    with av.open(_Sink(), "w", format="mpegts") as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index, scene in enumerate(scenes):
            clock[0] = index / float(rate)
            frame = av.VideoFrame.from_ndarray(scene.image, format="rgb24")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return chunks


def serve_chunks(chunks: list[tuple[float, bytes]]) -> tuple[str, threading.Thread]:
    """Serve the chunks to one client of tcp://127.0.0.1:PORT at their times; (url, thread)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(30)
    url = f"tcp://127.0.0.1:{server.getsockname()[1]}"

    def run() -> None:
        try:
            connection, _ = server.accept()
        except OSError:
            server.close()
            return
        began = time.monotonic()
        try:
            for at, data in chunks:
                time.sleep(max(0.0, began + at - time.monotonic()))
                connection.sendall(data)
        except OSError:
            pass  # the reader went away
        finally:
            connection.close()
            server.close()

    thread = threading.Thread(target=run, name="live-bench-server", daemon=True)
    thread.start()
    return url, thread


def measure_live_rate(
    segmenter: Any,
    *,
    size: tuple[int, int] = (240, 320),
    input_fps: float = 30.0,
    seconds: float = 5.0,
    max_latency: float = 1.0,
    config: Any = None,
) -> LiveRate:
    """Run a live stream of `seconds` at `input_fps` through `run_live`; see the module doc.

    Args:
        segmenter: a ready segmenter with its vocabulary set.
        size: (H, W) of the served frames.
        config: RunConfig (batch size, device, ...); default RunConfig().
    """
    from streamseg.config import RunConfig
    from streamseg.video.live_decode import LiveSettings
    from streamseg.video.live_run import run_live

    chunks = encode_stream(size, max(1, round(seconds * input_fps)), input_fps)
    url, thread = serve_chunks(chunks)
    with tempfile.TemporaryDirectory(prefix="streamseg-live-bench-") as folder:
        summary = run_live(
            url,
            Path(folder) / "live.zarr",
            config=config or RunConfig(),
            live=LiveSettings(live=True, max_latency=max_latency),
            segmenter=segmenter,
            handle_signals=False,
        )
    thread.join(timeout=5)
    return LiveRate(
        size=(int(size[0]), int(size[1])),
        input_fps=float(input_fps),
        seconds=summary.seconds,
        received=summary.received,
        processed=summary.frames,
        dropped=summary.dropped,
        processed_fps=summary.fps,
        latency_max=summary.latency_max,
        latency_mean=summary.latency_mean,
    )
