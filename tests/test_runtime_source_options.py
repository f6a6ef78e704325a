"""Source options: the typed per-kind dataclasses, their one parser and printer (no capture)."""

from __future__ import annotations

import pytest

from aknet_edge.errors import ConfigError
from aknet_edge.runtime import sources as S
from aknet_edge.runtime.sources import options as O


def test_parse_query_and_keywords_alike_keywords_win():
    a = O.SyntheticOptions.parse({"speed": "0"}, "seed=3&speed=2&loop", source="synthetic://")
    assert (a.seed, a.speed, a.loop) == (3, 0.0, True)  # a bare ?loop is a flag
    assert a == O.SyntheticOptions.parse({"seed": 3, "speed": 0, "loop": True})
    with pytest.raises(AttributeError):
        a.seed = 4  # frozen


def test_describe_reads_back():
    a = O.NetworkOptions.parse({"ffmpeg_options": {"rtsp_transport": "tcp"}, "reconnect_max_attempts": 3})
    assert "ffmpeg_options=rtsp_transport=tcp" in a.describe().split()
    assert O.NetworkOptions.parse(query=a.to_query()) == a
    b = O.CameraOptions()
    assert "width=auto" in b.describe() and O.CameraOptions.parse(query=b.to_query()) == b


def test_dashes_and_case():
    a = O.ArrayOptions.parse({"buffer-size": "2", "color": "bgr"})
    assert (a.buffer_size, a.color) == (2, "BGR")
    with pytest.raises(ConfigError, match="color='XYZ'.*one of RGB/BGR"):
        O.ArrayOptions(color="XYZ")


def test_unknown_options_all_named_with_suggestions_and_known_list():
    with pytest.raises(O.SourceOptionError) as info:
        O.CameraOptions.parse({"widht": 640, "realtime": 1, "zzz": 1}, source="/dev/video0")
    msg = str(info.value)
    assert msg.startswith("/dev/video0: ")
    assert "'widht' (did you mean 'width'?)" in msg
    assert "'realtime' (an option of file sources)" in msg
    assert "'zzz'" in msg and "camera sources accept" in msg and "reconnect_max_attempts" in msg


@pytest.mark.parametrize("cls, kw", [
    (O.SyntheticOptions, {"size": "big"}),
    (O.SyntheticOptions, {"seed": True}),  # a bool is not an integer
    (O.SyntheticOptions, {"fps": "nan"}),
    (O.SyntheticOptions, {"seg_min": 3, "seg_max": 2}),
    (O.CsiOptions, {"flip": 9}),
    (O.CsiOptions, {"fps": 29.97}),
    (O.LiveOptions, {"reconnect_initial_s": 2, "reconnect_max_s": 1}),
    (O.LiveOptions, {"reconnect": "fast"}),
    (O.NetworkOptions, {"ffmpeg_options": "rtsp_transport"}),
])
def test_bad_values(cls, kw):
    with pytest.raises(ConfigError):
        cls.parse(kw)


def test_reconnect_policy_object_or_fields_not_both():
    p = S.ReconnectPolicy(initial_s=0.1, max_s=1.0, factor=3, max_attempts=2)
    a = O.LiveOptions.parse({"reconnect": p})
    assert a.reconnect == p and a.reconnect_max_attempts == 2
    with pytest.raises(O.SourceOptionError, match="not both"):
        O.LiveOptions.parse({"reconnect": p, "reconnect_max_s": 2})


def test_every_kind_declares_its_options():
    kinds = {c.kind: set(c.names()) for c in O.OPTION_CLASSES}
    assert set(kinds) == {"camera", "csi", "network", "gstreamer", "file", "folder", "synthetic", "array",
                          "rosbag2"}
    assert all({"buffer_size", "block"} <= names for names in kinds.values())
    assert "realtime" in kinds["file"] and "realtime" not in kinds["network"]
    assert "reconnect_initial_s" in kinds["network"] and "reconnect_initial_s" not in kinds["file"]
    text = O.usage()
    assert all(f"{k}:" in text for k in kinds)


def test_parse_option_pairs_for_command_lines():
    pairs = O.parse_option_pairs(["speed=0", "buffer_size=2", "ffmpeg_options=a=b,c=d", "speed=1"])
    assert pairs == {"speed": "1", "buffer_size": "2", "ffmpeg_options": "a=b,c=d"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        O.parse_option_pairs(["speed"])
    src = S.open_source("synthetic://?segments=1&size=32", start=False, **O.parse_option_pairs(["speed=0"]))
    assert src.options.speed == 0.0


def test_array_source_keywords_are_checked():
    import numpy as np

    frames = [np.zeros((4, 4, 3), np.uint8)] * 3
    src = S.ArraySource(frames, 5.0, repeat=2, block=True)
    assert (src.options.fps, src.options.repeat, src.block) == (5.0, 2, True)
    with pytest.raises(O.SourceOptionError, match="'sped'"):
        S.ArraySource(frames, fps=5.0, sped=1)
    with pytest.raises(TypeError, match="not both"):
        S.SyntheticSource("synthetic://", options=O.SyntheticOptions(), seed=2)
    with pytest.raises(TypeError, match="expected a SyntheticOptions"):
        S.SyntheticSource("synthetic://", options=O.FolderOptions())


def test_options_are_imported_without_numpy_or_cv2():
    import subprocess
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('numpy', 'cv2', 'torch'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import importlib.util\n"
            "import aknet_edge.runtime\n"
            "spec = importlib.util.find_spec('aknet_edge.runtime.sources')\n"
            "import os\n"
            "path = os.path.join(os.path.dirname(spec.origin), 'options.py')\n"
            "s = importlib.util.spec_from_file_location('opts', path)\n"
            "m = importlib.util.module_from_spec(s); sys.modules['opts'] = m; s.loader.exec_module(m)\n"
            "print(m.SyntheticOptions.parse(query='speed=0').speed)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "0.0", out.stderr


# --------------------------------------------------------------------------- what a user of a live source can set


LIVE_KINDS = (O.CameraOptions, O.CsiOptions, O.NetworkOptions, O.PipelineOptions)


@pytest.mark.parametrize("cls", LIVE_KINDS, ids=lambda c: c.kind)
def test_every_live_kind_takes_buffer_reconnect_and_timeouts_from_a_command_line(cls):
    pairs = ["buffer_size=2", "reconnect_initial_s=0.25", "reconnect_max_s=4", "reconnect_factor=3",
             "reconnect_max_attempts=7", "open_timeout_s=2.5", "read_timeout_s=1.5", "max_corrupt_in_row=3"]
    a = cls.parse(O.parse_option_pairs(pairs))  # as --source-option KEY=VALUE gives them
    assert (a.buffer_size, a.open_timeout_s, a.read_timeout_s, a.max_corrupt_in_row) == (2, 2.5, 1.5, 3)
    assert a.reconnect == S.ReconnectPolicy(initial_s=0.25, max_s=4.0, factor=3.0, max_attempts=7)
    assert cls.parse(query=a.to_query()) == a
    with pytest.raises(ConfigError, match="read_timeout_s='0'.*> 0"):
        cls.parse({"read_timeout_s": "0"})


@pytest.mark.parametrize("cls", (O.CameraOptions, O.CsiOptions), ids=lambda c: c.kind)
def test_cameras_take_size_and_frame_rate(cls):
    a = cls.parse({"width": "640", "height": "480", "fps": "30"})
    assert (a.width, a.height, a.fps) == (640, 480, 30)


def test_rtsp_transport_option():
    assert O.NetworkOptions().rtsp_transport is None  # auto: tcp unless the environment says otherwise
    assert O.NetworkOptions.parse({"rtsp-transport": "UDP"}).rtsp_transport == "udp"
    with pytest.raises(ConfigError, match=r"rtsp_transport='http'.*one of tcp/udp"):
        O.NetworkOptions.parse({"rtsp_transport": "http"})
    with pytest.raises(O.SourceOptionError, match="one way, not both"):
        O.NetworkOptions.parse({"rtsp_transport": "udp", "ffmpeg_options": "rtsp_transport=tcp"})
    assert "rtsp_transport" in O.usage()
    with pytest.raises(O.SourceOptionError, match="'rtsp_transport'.*an option of network sources"):
        O.CameraOptions.parse({"rtsp_transport": "tcp"})


def test_pipeline_finite_option():
    assert O.PipelineOptions().finite is None
    assert O.PipelineOptions.parse({"finite": "1"}).finite is True


def test_ffmpeg_options_merge_the_users_environment():
    from aknet_edge.runtime.sources.capture import LIVE_FFMPEG_OPTIONS, ffmpeg_capture_options

    rtsp, env = "rtsp://cam/1", "OPENCV_FFMPEG_CAPTURE_OPTIONS"
    assert ffmpeg_capture_options(rtsp, True, environ={}) == {**LIVE_FFMPEG_OPTIONS, "rtsp_transport": "tcp"}
    # the user's variable is kept, over our defaults; the source's options over it; the transport last
    user = {env: "probesize;32|fflags;+genpts"}
    assert ffmpeg_capture_options(rtsp, True, environ=user) == {
        "fflags": "+genpts", "analyzeduration": LIVE_FFMPEG_OPTIONS["analyzeduration"], "probesize": "32",
        "rtsp_transport": "tcp"}
    assert ffmpeg_capture_options(rtsp, True, {"probesize": "64"}, "udp", environ=user) == {
        "probesize": "64", "fflags": "+genpts", "rtsp_transport": "udp"}  # given options replace our defaults
    assert ffmpeg_capture_options(rtsp, True, environ={env: "rtsp_transport;udp"})["rtsp_transport"] == "udp"
    assert "rtsp_transport" not in ffmpeg_capture_options(rtsp, True, environ={env: "rtsp_flags;prefer_tcp"})
    assert ffmpeg_capture_options("http://cam/a.mjpg", True, environ={}) == LIVE_FFMPEG_OPTIONS  # not RTSP
    assert ffmpeg_capture_options("/v.mp4", False, environ={}) == {}  # files: OpenCV's own defaults


def test_rtsp_transport_on_a_stream_without_one_is_an_error():
    with pytest.raises(O.SourceOptionError, match="only rtsp:// streams"):
        S.open_source("http://127.0.0.1:9/cam.mjpg", rtsp_transport="udp", start=False)
    src = S.open_source("rtsp://127.0.0.1:9/cam", rtsp_transport="udp", start=False)
    assert src.options.rtsp_transport == "udp" and ("rtsp_transport", "udp") in src.options.ffmpeg_options
