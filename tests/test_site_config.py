"""``python -m aknet_edge.run --config site.yaml``: a site with two cameras and every output runs from one file;
per-camera source options and thresholds apply to their camera only; flags override the file;
``--print-config`` reads back to itself; ``--check-config`` checks; every malformed file is one error line
naming the file, the line and the key.
"""

from __future__ import annotations  # Python 3.8 runs this file (the device venvs)

import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from aknet_edge.cli_common import run_cli
from aknet_edge.run import main, parser
from aknet_edge.site_config import flag_keys

from conftest import REPO

yaml = pytest.importorskip("yaml")

PKG = Path(__file__).parent / "data" / "package-0.2.0"
SYN = "synthetic://?seed=1&segments=3&size=112"


def _write(path: Path, text: str) -> Path:
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


class _Hooks(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: keeps every POST's body."""

    bodies: List[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        self.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mqtt_broker(tmp_path: Path) -> Optional[Any]:
    """A mosquitto broker on a free loopback port and a subscriber to everything, or None where either is missing."""
    if shutil.which("mosquitto") is None:
        return None
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        return None
    port = _free_port()
    conf = _write(tmp_path / "mosquitto.conf", f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got: List[Any] = []
    try:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2) if hasattr(mqtt, "CallbackAPIVersion") \
            else mqtt.Client()
    except Exception:
        broker.terminate()
        return None
    client.on_message = lambda c, u, msg: got.append((msg.topic, msg.payload))
    deadline = time.monotonic() + 10
    while True:
        try:
            client.connect("127.0.0.1", port)
            break
        except OSError:
            if time.monotonic() > deadline:
                broker.terminate()
                return None
            time.sleep(0.1)
    client.subscribe("#")
    client.loop_start()
    return broker, client, got, port


def test_a_site_with_two_cameras_and_every_output_runs_from_one_file(tmp_path):
    keys = flag_keys(parser())
    hooks = None
    extra = ""
    if "webhook" in keys:  # the webhook output (its own tests check it in depth); here: it takes the file's list
        _Hooks.bodies = []
        hooks = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
        threading.Thread(target=hooks.serve_forever, daemon=True).start()
        extra += f"webhook: [http://127.0.0.1:{hooks.server_address[1]}/hook]\n"
    broker = _mqtt_broker(tmp_path) if "mqtt" in keys else None
    if broker is not None:
        extra += f"mqtt: mqtt://127.0.0.1:{broker[3]}\n"
    clips = tmp_path / "clips"
    site = _write(tmp_path / "site.yaml", f"""
package: {PKG}
backend: onnxruntime
cameras:
  front: {SYN}&speed=2
  rear:                           # the same scenes: only its own settings differ
    uri: {SYN}
    source_options: {{speed: 2, buffer_size: 6}}
    enter: 1.0                    # no action is ever that sure: this camera has no events
    exit: 1.0
jsonl: {tmp_path / 'out.jsonl'}
output_video: {tmp_path / 'out.avi'}
stats: 1
preview_port: 0
metrics_port: 0
event_clips: {clips}
pre_roll: 0.5
post_roll: 0.5
max_seconds: 8                  # room for the HTTP checks below on a busy runner
""" + extra)
    proc = subprocess.Popen([sys.executable, "-m", "aknet_edge.run", "--config", str(site)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    try:
        assert proc.stderr is not None
        err: List[str] = []
        urls: Dict[str, str] = {}
        while len(urls) < 2:
            line = proc.stderr.readline()
            if not line:
                break
            err.append(line)
            for name in ("preview", "metrics"):
                if line.startswith(name + ": "):
                    urls[name] = line.split(None, 1)[1].strip()
        assert set(urls) == {"preview", "metrics"}, "".join(err)[-3000:]
        base = urls["metrics"][:-len("metrics")]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _status(base + "readyz") != 200:
            time.sleep(0.1)
        assert _status(base + "readyz") == 200 and _status(base + "healthz") == 200
        with urllib.request.urlopen(urls["preview"], timeout=5) as resp:
            assert resp.status == 200
        _, rest = proc.communicate(timeout=60)
        err.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if hooks is not None:
            hooks.shutdown()
    stderr = "".join(err)
    assert proc.returncode == 0, stderr[-3000:]
    lines = [json.loads(ln) for ln in (tmp_path / "out.jsonl").read_text().splitlines()]
    results = {s: [x for x in lines if x["type"] == "result" and x["stream"] == s] for s in ("front", "rear")}
    assert results["front"] and results["rear"]
    events = [x for x in lines if x["type"] == "event"]
    assert events and {x["stream"] for x in events} == {"front"}  # rear's thresholds are its own
    ended = [x for x in events if x["state"] == "ended"]
    clip_lines = [x for x in lines if x["type"] == "clip"]
    assert sorted((c["label"], c["event_start"]) for c in clip_lines) == sorted((e["label"], e["start"])
                                                                               for e in ended)
    assert all(Path(c["path"]).is_file() and Path(c["path"]).parent == clips for c in clip_lines)
    assert (tmp_path / "out-front.avi").stat().st_size > 0 and (tmp_path / "out-rear.avi").stat().st_size > 0
    assert "source live" in stderr  # --stats: telemetry lines on stderr
    # rear's source options reached its source (the source logs what it resolved when it opens)
    opened = [ln for ln in stderr.splitlines() if "opened synthetic://" in ln]
    assert any("size=112&speed=2" not in ln and "speed=2.0" in ln and "buffer_size=6" in ln for ln in opened)
    if hooks is not None:
        assert _Hooks.bodies, "the webhook got nothing"
    if broker is not None:
        proc_b, client, got, _ = broker
        client.loop_stop()
        proc_b.terminate()
        proc_b.wait(10)
        assert got, "the MQTT broker got nothing"


CASES = [  # (name, file text, line, what the one error line must say)
    ("unknown-key", "package: {pkg}\npreview_prot: 8080\n", 2, "preview_prot: unknown setting; did you mean "
                                                               "preview_port?"),
    ("wrong-type", "metrics_port: eighty\n", 1, "metrics_port: expected a whole number, got 'eighty'"),
    ("bad-choice", "backend: tensorflow\n", 1, "backend: expected one of "),
    ("not-a-bool", "overlap: maybe\n", 1, "overlap: expected true or false, got 'maybe'"),
    ("out-of-range", "event_clips: {tmp}/c\npre_roll: -1\n", 2, "pre_roll: -1.0: expected a finite number >= 0"),
    ("camera-unknown-key", "cameras:\n  front:\n    urn: x\n", 3, "cameras.front.urn: unknown camera setting; did "
                                                                   "you mean uri?"),
    ("camera-no-uri", "cameras:\n  front:\n    enter: 0.5\n", 2, "cameras.front: no uri"),
    ("camera-source-option", "cameras:\n  front:\n    uri: " + SYN + "\n    source_options:\n      fsp: 15\n", 5,
     "cameras.front.source_options.fsp: " + SYN + ": unknown synthetic source option 'fsp' (did you mean 'fps'?)"),
    ("camera-threshold", "cameras:\n  front:\n    uri: x\n    enter: 1.5\n", 4,
     "cameras.front.enter: expected a number in [0, 1], got 1.5"),
    ("camera-thresholds-together", "exit: 0.4\ncameras:\n  front:\n    uri: x\n    enter: 0.3\n", 3,
     "cameras.front: exit=0.4, enter=0.3: expected 0 <= exit <= enter <= 1"),
    ("camera-name", "cameras:\n  front door: x\n", 2, "cameras.front door: stream name 'front door'"),
    ("twice", "jsonl: a.jsonl\nmax_seconds: 3\njsonl: b.jsonl\n", 3, "jsonl: given twice (first on line 1)"),
    ("not-yaml", "cameras: [a\n", 2, "not valid YAML"),
    ("cameras-list", "cameras: [rtsp://a, rtsp://b]\n", 1, "cameras: expected a mapping of camera names"),
    ("flag-only", "check_config: true\n", 1, "check_config: unknown setting here (it is a command-line flag only)"),
]


@pytest.mark.parametrize("name, text, line, words", CASES, ids=[c[0] for c in CASES])
def test_a_malformed_config_is_one_error_line_naming_its_key(name, text, line, words, tmp_path, capsys):
    site = _write(tmp_path / "site.yaml", text.format(pkg=PKG, tmp=tmp_path))
    rc = run_cli(main, ["--config", str(site), "--check-config"])
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert rc == 2 and not out.out and len(err) == 1, out
    assert err[0].startswith(f"error: {site}:{line}: ") and words in err[0], err[0]


def test_flags_override_the_file_and_print_config_reads_back_to_itself(tmp_path, capsys):
    site = _write(tmp_path / "site.yaml", f"""
package: {PKG}
cameras:
  door:
    uri: rtsp://guard:hunter2@10.0.0.7/stream
    source_options: {{rtsp_transport: udp}}
    min_duration: 0.5
    roi: {{desk: [0, 0, 0.5, 1]}}
  yard: {SYN}
jsonl: a.jsonl
max_seconds: 30
overlap: false
source_option: {{open_timeout_s: 5}}
""")
    assert run_cli(main, ["--config", str(site), "--print-config", "--jsonl", "b.jsonl", "--overlap"]) == 0
    printed = capsys.readouterr().out
    cfg = yaml.safe_load(printed)
    assert cfg["jsonl"] == "b.jsonl" and cfg["overlap"] is True and cfg["max_seconds"] == 30  # flags win
    assert cfg["package"] == str(PKG) and cfg["source_option"] == ["open_timeout_s=5"]
    assert cfg["roi"] == ["door:desk=0,0,0.5,1"]
    assert cfg["cameras"] == {"door": {"uri": "rtsp://guard:***@10.0.0.7/stream",  # secrets masked
                                       "source_options": {"rtsp_transport": "udp"}, "min_duration": 0.5},
                              "yard": {"uri": SYN}}
    assert cfg["enter"] == 0.5 and cfg["preview_port"] is None  # defaults are printed too
    # what it printed is a config: read back, it prints itself (the password aside, which it masked)
    again = _write(tmp_path / "again.yaml", printed.replace("guard:***@", "guard:hunter2@"))
    assert run_cli(main, ["--config", str(again), "--print-config"]) == 0
    assert capsys.readouterr().out == printed
    # SRC on the command line replaces the file's cameras
    assert run_cli(main, ["--config", str(site), "--print-config", "solo=" + SYN]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["cameras"] == {"solo": {"uri": SYN}}


def test_check_config_checks_and_opens_nothing(tmp_path, capsys):
    clips = tmp_path / "clips"
    site = _write(tmp_path / "site.yaml", f"""
package: {PKG}
cameras:
  a: {SYN}
  b: {SYN}
jsonl: {tmp_path / 'never.jsonl'}
metrics_port: 0
event_clips: {clips}
""")
    assert run_cli(main, ["--config", str(site), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert "configuration OK: 2 camera(s) (a, b)" in out
    assert not (tmp_path / "never.jsonl").exists()  # nothing ran
    # a value of the file that a check refuses names the file's line; given as a flag, the flag
    bad = _write(tmp_path / "bad.yaml", f"package: {PKG}\nthreads: 0\n")
    assert run_cli(main, ["--config", str(bad), "--check-config"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}:2: threads: 0: expected a whole number >= 1"
    assert run_cli(main, ["--config", str(bad), "--check-config", "--threads", "-3"]) == 2
    assert capsys.readouterr().err.strip() == "error: --threads -3: expected a whole number >= 1"


def test_without_pyyaml_the_error_says_what_to_install(tmp_path):
    site = _write(tmp_path / "site.yaml", "max_seconds: 1\n")
    code = ("import sys; sys.modules['yaml'] = None\n"
            "from aknet_edge.cli_common import run_cli\nfrom aknet_edge.run import main\n"
            f"sys.exit(run_cli(main, ['--config', {str(site)!r}, '--check-config']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --config needs PyYAML: pip install 'aknet-edge[config]'"
