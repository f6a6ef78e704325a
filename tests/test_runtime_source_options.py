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
    assert set(kinds) == {"camera", "csi", "network", "gstreamer", "file", "folder", "synthetic", "array"}
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
