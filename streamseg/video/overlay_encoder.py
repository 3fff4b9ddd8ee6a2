"""How overlay pictures are encoded: libx264 settings and the frames handed to the encoder.

The preset was chosen by measuring libx264 (crf 23, default threads) on 48 drawn 1080p
shapes-world overlay frames, on a loaded 2-core CPU; CPU time per frame includes the RGB to
yuv420p conversion (about 4 ms), PSNR is of luma against the encoder's input:

    preset                  CPU ms/frame   KiB/frame   PSNR-Y dB
    veryfast                    48.3          69.0        40.5
    superfast                   34.7          91.5        40.8
    ultrafast                   17.7         169.0        41.9
    veryfast  zerolatency       38.4          62.4        39.6
    superfast zerolatency       31.1          90.7        40.3

superfast costs 28% less CPU than veryfast for the same quality and 1.3x the bytes;
ultrafast halves the CPU again but needs 2.4x the bytes of veryfast, too much for a preview
that browsers download. Both writers keep what browsers need: H.264 yuv420p (render.py adds
+faststart).
"""

from __future__ import annotations

import numpy as np

# File overlays (render.OverlayWriter).
ENCODER_OPTIONS = {"crf": "23", "preset": "superfast"}
# Live overlays (live_overlay.LiveOverlayWriter): no frame delay, so a player following the
# growing file sees each frame as soon as it is written.
LIVE_ENCODER_OPTIONS = {"crf": "23", "preset": "superfast", "tune": "zerolatency"}


def encoder_frame(image: np.ndarray):  # -> av.VideoFrame
    """An RGB picture as a frame for the encoder, sharing the array's memory.

    The encoder converts it to yuv420p into a frame of its own (PyAV keeps one swscale
    context per encoder for that), so the array is read once and never copied first (a 1080p
    copy is about 1 ms a frame).

    Args:
        image: (H, W, 3) uint8 RGB.
    """
    import av

    return av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(image), format="rgb24")
