"""A real RTSP server for the live tests: GStreamer's, from Debian, on 127.0.0.1.

Run with Debian's own interpreter (the bindings are python3-gi, not a pip package):

    /usr/bin/python3 tests/rtsp_server.py CLIP.mp4 PORT

It serves the H.264 track of CLIP.mp4 at rtsp://127.0.0.1:PORT/cam, in real time, to every
client that connects (each client gets the clip from its start), over TCP or UDP as the client
asks. It prints "ready" on stdout once it listens. Debian packages: gir1.2-gst-rtsp-server-1.0
gstreamer1.0-rtsp gstreamer1.0-plugins-good gstreamer1.0-plugins-bad python3-gi.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    clip, port = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    # config-interval=1: SPS/PPS before every keyframe, so a client may join at any time.
    factory.set_launch(
        f"( filesrc location={clip} ! qtdemux ! h264parse "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
