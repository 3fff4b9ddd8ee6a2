"""A live MPEG-TS source served by the tests themselves on 127.0.0.1.

`StreamServer` listens on a free port; each accepted connection gets the next `frames` frames of
the moving-blobs video muxed by PyAV into MPEG-TS at a real-time pace (pts continue across
connections, as a camera's would). A plain Python socket does the networking because PyAV's
own `tcp://...?listen` holds the GIL while it waits for a client.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence

import av
import numpy as np
from fake_segmenter import blob_frame

RATE = 25  # frames per second of the served stream
TICKS = 90000 // RATE  # pts step in the MPEG-TS 90 kHz clock


class _SocketFile:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data: bytes) -> int:
        self.sock.sendall(data)
        return len(data)


def write_ts(target: object, first: int, count: int, pace: bool, container: str = "mpegts") -> None:
    """Mux blob frames first..first+count-1 at 25 fps (MPEG-TS: pts = index x TICKS) into
    `target` (`container`: an FFmpeg muxer name, mpegts or matroska)."""
    with av.open(target, "w", format=container) as out:
        stream = out.add_stream("mpeg4", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        began = time.monotonic()
        for step, index in enumerate(range(first, first + count)):
            frame = av.VideoFrame.from_ndarray(blob_frame(index % 40), format="rgb24")
            frame.pts = index
            out.mux(stream.encode(frame))
            if pace:
                time.sleep(max(0.0, began + (step + 1) / RATE - time.monotonic()))
        out.mux(stream.encode(None))


class StreamServer:
    """Serve `parts[k]` frames to the k-th connection, then stop accepting."""

    def __init__(
        self,
        parts: Sequence[int],
        pace: bool = True,
        stall: bool = False,
        restart_pts: bool = False,
    ) -> None:
        """`stall`: after each part but the last, keep the connection open without sending
        anything until the reader hangs up (a camera that stops sending). `restart_pts`: each
        connection's pts start at 0 again (a camera that restarted its clock)."""
        self.parts = list(parts)
        self.pace = pace
        self.stall = stall
        self.restart_pts = restart_pts
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(2)
        self._socket.settimeout(20)
        self.port = self._socket.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.served = 0
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        first = 0
        try:
            for part, count in enumerate(self.parts):
                connection, _ = self._socket.accept()
                try:
                    start = 0 if self.restart_pts else first
                    write_ts(_SocketFile(connection), start, count, self.pace)
                    if self.stall and part + 1 < len(self.parts):
                        connection.settimeout(20)
                        connection.recv(1)  # b"" once the reader hangs up
                except (OSError, av.error.FFmpegError):
                    pass  # the reader went away (a broken pipe, seen by PyAV as a callback error)
                finally:
                    connection.close()
                first += count
                self.served += 1
                if self.stop.is_set():
                    break
        except OSError:
            pass
        finally:
            self._socket.close()

    def join(self, timeout: float = 30.0) -> None:
        self._thread.join(timeout)


def frames_array(count: int) -> np.ndarray:
    return np.stack([blob_frame(i % 40) for i in range(count)])
