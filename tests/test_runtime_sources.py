"""Sources: one URI API, capture thread, bounded buffer, end of stream vs failure."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from aknet_edge.runtime import sources as S
from aknet_edge.synthetic import write_long_video


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("vid") / "clip.avi"
    segs = write_long_video(path, seed=4, n_segments=1, fps=15, size=64, seg_seconds=(1.0, 1.0))
    return path, round(segs[-1].end * 15)


def test_file_reads_all_frames_then_end_of_stream(small_video):
    path, n = small_video
    with S.open_source(str(path)) as src:
        frames = list(src)
        assert not src.live and src.block
        with pytest.raises(S.EndOfStream):
            src.read(timeout=1.0)
    assert len(frames) == n
    ts = [f.media_ts for f in frames]
    assert ts[0] == 0.0 and np.allclose(np.diff(ts), 1 / 15)
    assert frames[0].image.shape == (64, 64, 3) and frames[0].image.dtype == np.uint8
    assert all(b.capture_ts >= a.capture_ts for a, b in zip(frames, frames[1:]))
    assert src.stats().dropped == 0


def test_image_folder(tmp_path):
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((32, 48, 3), i * 40, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    with S.open_source(str(tmp_path), fps=10) as src:
        frames = list(src)
    assert [f.media_ts for f in frames] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 40, 80, 120, 160]


def test_synthetic_is_paced_and_has_ground_truth():
    # block: the reader's pauses on a busy runner must not drop frames (that would move media time on)
    with S.open_source("synthetic://?seed=1&fps=30&segments=1&size=32&block=1") as src:
        assert src.segments and src.segments[0].start == 0.0
        first = src.read(timeout=5)
        assert first is not None and first.color == "RGB"
        for _ in range(15):
            last = src.read(timeout=5)
        elapsed = last.capture_ts - first.capture_ts
        media = last.media_ts - first.media_ts
    assert media == pytest.approx(0.5)
    assert 0.35 <= elapsed <= 1.5, elapsed  # paced near real time, generous under load


def test_tiny_buffer_keeps_newest_and_counts_drops():
    # unpaced synthetic frames are read like a file by default; block=0 makes it a live camera that drops
    with S.open_source("synthetic://?seed=1&fps=15&segments=1&size=32&speed=0&block=0", buffer_size=2) as src:
        deadline = time.monotonic() + 10
        while src.stats().frames < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        st = src.stats()
        frames = []
        while True:
            try:
                f = src.read(timeout=2)
            except S.EndOfStream:
                break
            if f is not None:
                frames.append(f)
        st = src.stats()
    assert st.dropped > 0
    assert st.frames == st.dropped + len(frames)
    assert [f.index for f in frames] == sorted(f.index for f in frames)


@pytest.mark.parametrize("uri, err", [
    ("foo://bar", S.UnsupportedSourceError),
    ("", S.UnsupportedSourceError),
    ("/definitely/not/here.mp4", S.SourceOpenError),
    ("/dev/video99", S.SourceOpenError),
])
def test_bad_uris_raise_typed_errors(uri, err):
    with pytest.raises(err) as info:
        S.open_source(uri)
    assert str(info.value)


def test_unreadable_file_is_an_open_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(S.SourceOpenError):
        S.open_source(str(bad))


def test_csi_without_gstreamer_says_what_to_do():
    if S._has_gstreamer():
        pytest.skip("this OpenCV has GStreamer; the error path is not reachable")
    for uri in ("csi://0", "videotestsrc ! appsink"):
        with pytest.raises(S.GStreamerUnavailableError) as info:
            S.open_source(uri)
        msg = str(info.value)
        assert "GStreamer" in msg and "pip" in msg and "JetPack" in msg


class _Broken(S.Source):
    """A device that delivers two frames, then fails."""

    def __init__(self, live: bool, **kw):
        self.live = live
        super().__init__("broken://", **kw)
        self.n = 0
        self.opens = 0

    def _open(self):
        self.opens += 1
        if self.opens > 1:
            raise OSError("device gone")

    def _grab(self):
        self.n += 1
        if self.n > 2:
            raise OSError("read error")
        return np.zeros((8, 8, 3), np.uint8), None


def test_failure_is_not_end_of_stream():
    src = _Broken(live=False).start()
    try:
        got = [src.read(timeout=2), src.read(timeout=2)]
        assert all(f is not None for f in got)
        with pytest.raises(S.SourceError) as info:
            src.read(timeout=2)
        assert not isinstance(info.value, S.EndOfStream)
    finally:
        src.close()


def test_live_source_gives_up_after_max_attempts():
    policy = S.ReconnectPolicy(initial_s=0.01, max_s=0.02, factor=2, max_attempts=3)
    src = _Broken(live=True, reconnect=policy).start()
    try:
        with pytest.raises(S.SourceError, match="3 reconnect attempts"):
            for _ in range(10):
                src.read(timeout=2)
        assert src.opens == 4 and src.stats().reconnects == 0
    finally:
        src.close()


def test_reconnect_policy_backoff():
    p = S.ReconnectPolicy(initial_s=0.5, max_s=3, factor=2)
    assert [p.delay(i) for i in (1, 2, 3, 4, 5)] == [0.5, 1, 2, 3, 3]
    with pytest.raises(S.ConfigError):
        S.ReconnectPolicy(initial_s=0)


def test_read_timeout_returns_none():
    with S.open_source("synthetic://?seed=1&fps=0.1&segments=1&size=32") as src:
        assert src.read(timeout=2) is not None  # first frame at once, the next in 10 s
        t = time.monotonic()
        assert src.read(timeout=0.1) is None
        assert time.monotonic() - t < 5


# --------------------------------------------------------------------------- options: one typed, checked object


def test_unknown_query_option_is_an_error_naming_it():
    with pytest.raises(S.ConfigError) as info:
        S.open_source("synthetic://?sped=0")
    msg = str(info.value)
    assert isinstance(info.value, S.SourceOptionError)
    assert "'sped'" in msg and "did you mean 'speed'" in msg and "segments" in msg  # the known ones listed


def test_unknown_keyword_option_is_an_error_naming_it():
    with pytest.raises(S.SourceOptionError, match="buffer_sise.*did you mean 'buffer_size'"):
        S.open_source("synthetic://?seed=1&segments=1&size=32", buffer_sise=1)


def test_option_of_another_kind_is_an_error():
    with pytest.raises(S.SourceOptionError, match="'realtime'.*file sources"):
        S.open_source("synthetic://?seed=1&segments=1&size=32", realtime=True, start=False)


@pytest.mark.parametrize("uri, kw, match", [
    ("synthetic://?fps=abc", {}, r"fps='abc'.*expected a finite number"),
    ("synthetic://", {"fps": "abc"}, r"fps='abc'.*expected a finite number"),
    ("synthetic://?seed=1.5", {}, r"seed='1.5'.*expected an integer"),
    ("synthetic://?loop=maybe", {}, r"loop='maybe'.*expected a boolean"),
    ("synthetic://", {"speed": -1}, r"speed=-1.*>= 0"),
    ("synthetic://", {"buffer_size": 0}, r"buffer_size=0.*>= 1"),
])
def test_bad_option_values_name_option_value_and_expectation(uri, kw, match):
    with pytest.raises(S.ConfigError, match=match):
        S.open_source(uri, start=False, **kw)


def test_folder_options_are_checked(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(S.SourceOptionError, match="'speed'.*folder sources accept"):
        S.open_source(str(tmp_path), speed=2)
    with pytest.raises(S.ConfigError, match="fps=0"):
        S.open_source(str(tmp_path), fps=0)


def test_string_values_are_converted_like_a_query():
    src = S.open_source("synthetic://?seed=2&segments=1&size=32", start=False, speed="0", loop="true",
                        buffer_size="3", block="1")
    assert isinstance(src.options, S.SyntheticOptions)
    assert (src.speed, src.loop, src.seed, src.block, src._size) == (0.0, True, 2, True, 3)
    assert src.options == S.SyntheticOptions(seed=2, segments=1, size=32, speed=0, loop=True, buffer_size=3,
                                             block=True)


def test_opened_source_logs_resolved_options(caplog):
    caplog.set_level("INFO", logger="aknet_edge.runtime.sources")
    with S.open_source("synthetic://?seed=1&segments=1&size=32&speed=0", buffer_size=2) as src:
        src.read(timeout=5)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("opened ")]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("opened synthetic://?seed=1&segments=1&size=32&speed=0 (synthetic): ")
    for part in ("seed=1", "fps=15.0", "segments=1", "size=32", "speed=0.0", "loop=false", "buffer_size=2",
                 "block=true"):  # block resolved: unpaced (speed=0), so read like a file, every frame
        assert part in line.split(), (part, line)


def test_file_logs_its_resolved_block(small_video, caplog):
    caplog.set_level("INFO", logger="aknet_edge.runtime.sources")
    path, _ = small_video
    with S.open_source(str(path), realtime="0"):
        pass
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("opened "))
    assert "(file)" in line and "block=true" in line.split() and "realtime=false" in line.split()


def test_reconnect_wait_stays_capped_however_long_the_camera_is_gone():
    p = S.ReconnectPolicy(initial_s=0.5, max_s=10, factor=2)
    # 0.5 * 2**n leaves float range near n = 1024 (about 3 hours at the cap): the capture thread died of an
    # OverflowError there, and the camera never came back
    assert [p.delay(n) for n in (1, 5, 6, 1100, 10 ** 6)] == [0.5, 8, 10, 10, 10]


def test_an_unexpected_capture_error_reaches_the_reader():
    class Buggy(S.Source):
        def _open(self):
            pass

        def _grab(self):
            return np.zeros((4, 4, 3), np.uint8), None

        def _push(self, image, media_ts):  # a bug outside the device calls
            raise RuntimeError("bug")

    src = Buggy("buggy://").start()
    try:
        with pytest.raises(S.SourceError, match="bug"):
            src.read(timeout=5)  # used to return None forever: the thread was gone without a word
    finally:
        src.close()


# --------------------------------------------------------------------------- corrupt frames in a live MJPEG stream


class MjpegServer:
    """An HTTP MJPEG camera (multipart/x-mixed-replace) on 127.0.0.1 whose every ``corrupt_every``-th JPEG is
    garbage; counts what it sent. ``stop()`` hangs up on the clients, as a camera that dies."""

    def __init__(self, fps: float = 30.0, corrupt_every: int = 0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        frames = []
        for i in range(30):
            img = np.zeros((48, 64, 3), np.uint8)
            cv2.circle(img, (8 + 2 * i, 24), 6, (0, 255, 255), -1)
            frames.append(cv2.imencode(".jpg", img)[1].tobytes())
        self.good = self.bad = 0
        self._stopped = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i, t0 = 0, time.monotonic()
                try:
                    while not server._stopped.is_set():
                        data = frames[i % len(frames)]
                        bad = corrupt_every and i % corrupt_every == corrupt_every - 1
                        if bad:  # keeps the size and the multipart framing; the decoder finds no JPEG in it
                            data = bytes(np.random.RandomState(i).randint(0, 256, len(data), dtype=np.uint8))
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(data) + data + b"\r\n")
                        self.wfile.flush()
                        if bad:
                            server.bad += 1
                        else:
                            server.good += 1
                        i += 1
                        server._stopped.wait(max(0.0, t0 + i / fps - time.monotonic()))
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/cam.mjpg"

    def stop(self) -> None:
        self._stopped.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.mark.parametrize("corrupt_every", [30, 3])
def test_corrupt_frames_in_a_live_stream_are_skipped_and_counted_not_a_reconnect(corrupt_every):
    """One bad JPEG in 30 forced a full reconnect (losing a third of the frames); one in 3 delivered nothing."""
    cam = MjpegServer(fps=30, corrupt_every=corrupt_every)
    try:
        with S.open_source(cam.url, reconnect_initial_s=0.2, reconnect_max_s=1.0, read_timeout_s=2.0,
                           buffer_size=64) as src:
            deadline = time.monotonic() + 20
            while src.stats().corrupt < 6 and time.monotonic() < deadline:
                src.read(timeout=0.5)
            sent_good = cam.good  # before the stats, sent_bad after: the camera goes on sending meanwhile
            st = src.stats()
            sent_bad = cam.bad
        assert st.reconnects == 0 and st.failed_reads == 0, st
        assert st.corrupt >= 6, st
        # every good frame sent reached the source, but for the few still on the way (and the first ones,
        # sent while FFmpeg probed the stream)
        assert st.frames >= sent_good - 8, (st, sent_good, sent_bad)
        assert st.corrupt <= sent_bad
    finally:
        cam.stop()


def test_max_corrupt_in_row_zero_reconnects_at_the_first_bad_frame():
    cam = MjpegServer(fps=30, corrupt_every=10)
    try:
        with S.open_source(cam.url, reconnect_initial_s=0.1, reconnect_max_s=0.2, read_timeout_s=2.0,
                           max_corrupt_in_row=0) as src:
            deadline = time.monotonic() + 20
            while src.stats().reconnects < 1 and time.monotonic() < deadline:
                src.read(timeout=0.5)
            st = src.stats()
        assert st.reconnects >= 1 and st.corrupt == 0
    finally:
        cam.stop()


def test_a_dead_stream_is_still_lost_promptly_with_corrupt_frames_tolerated():
    cam = MjpegServer(fps=30)
    with S.open_source(cam.url, reconnect_initial_s=0.2, reconnect_max_s=0.5, read_timeout_s=2.0) as src:
        deadline = time.monotonic() + 20
        while src.stats().frames < 10 and time.monotonic() < deadline:
            src.read(timeout=0.5)
        cam.stop()  # the camera hangs up
        t = time.monotonic()
        while src.stats().connected and time.monotonic() < t + 10:
            src.read(timeout=0.1)
        lost_after = time.monotonic() - t
        st = src.stats()
    assert not st.connected and st.failed_reads == 1 and st.corrupt == 0, st
    assert lost_after < 2.0 + 1.0, lost_after  # within read_timeout_s: the retries do not delay it


def test_a_camera_that_does_not_open_leaves_no_thread_behind():
    import threading

    from aknet_edge.runtime.sources.capture import OpenCVSource

    before = set(threading.enumerate())
    src = OpenCVSource("/dev/video63", 63, cv2.CAP_V4L2, live=True, open_timeout_s=5)
    t = time.monotonic()
    with pytest.raises(S.SourceOpenError):
        src.start()  # opened on a capture thread of its own, with a deadline
    assert time.monotonic() - t < 5
    src.close()
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(threading.enumerate()) - before
