"""An RTSP camera for the tests: GStreamer's RTSP server serving H.264 on 127.0.0.1.

Run it with the system Python, which has GStreamer's introspection (python3-gi and
gir1.2-gst-rtsp-server-1.0; a virtual environment usually has not)::

    /usr/bin/python3 tests/peers/rtsp_server.py --port 8554 --path /cam

It serves ``rtsp://127.0.0.1:PORT/PATH`` from ``videotestsrc is-live=true`` through
``x264enc`` (baseline, zero latency, a key frame every ``--key-int`` frames) and
``rtph264pay``, over TCP (interleaved) and UDP alike, one shared pipeline for all
clients. It prints, one line each, flushed:

* ``READY <port>`` once it listens (``--port 0``: a free port, printed here);
* ``SETUP <Transport header>`` for every stream a client sets up, so a test can see
  which transport the client asked for (``RTP/AVP/TCP;...`` or ``RTP/AVP;unicast;...``).

SIGTERM/SIGINT stop it cleanly; tests also SIGKILL it to play a camera that dies.
"""

from __future__ import annotations

import argparse
import signal
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="TCP port for RTSP (0: any free port)")
    ap.add_argument("--path", default="/cam", help="mount point")
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--key-int", type=int, default=15, help="frames between key frames")
    ap.add_argument("--protocols", choices=("any", "tcp", "udp"), default="any",
                    help="lower transports the server offers")
    args = ap.parse_args(argv)

    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
    except (ImportError, ValueError) as exc:
        print(f"ERROR no GStreamer RTSP server: {exc} (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)",
              flush=True)
        return 3

    Gst.init(None)
    missing = [e for e in ("videotestsrc", "videoconvert", "x264enc", "rtph264pay")
               if Gst.ElementFactory.find(e) is None]
    if missing:
        print(f"ERROR missing GStreamer elements: {' '.join(missing)} (apt-get install gstreamer1.0-plugins-base "
              "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly)", flush=True)
        return 3

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={args.width},height={args.height},"
        f"framerate={args.fps}/1 ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast bframes=0 "
        f"key-int-max={args.key_int} ! video/x-h264,profile=baseline ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(True)
    lower = {"any": GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP,
             "tcp": GstRtsp.RTSPLowerTrans.TCP, "udp": GstRtsp.RTSPLowerTrans.UDP}[args.protocols]
    factory.set_protocols(lower)
    server.get_mount_points().add_factory(args.path, factory)

    def on_setup(client, ctx):
        ok, value = ctx.request.get_header(GstRtsp.RTSPHeaderField.TRANSPORT, 0)
        print(f"SETUP {value if ok == GstRtsp.RTSPResult.OK else '?'}", flush=True)

    server.connect("client-connected", lambda srv, client: client.connect("setup-request", on_setup))
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on 127.0.0.1:{args.port}", flush=True)
        return 4
    print(f"READY {server.get_bound_port()}", flush=True)

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda *a: (loop.quit(), False)[1])
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
