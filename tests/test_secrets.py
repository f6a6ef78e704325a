"""Camera credentials never reach a log, telemetry, the page, JSON Lines or an error message."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import List

import pytest

from aknet_edge.redact import MASK, redact
from aknet_edge.runtime import MultiRecognizer, Recognizer
from aknet_edge.runtime import sources as S

REPO = Path(__file__).resolve().parents[1]
PKG = Path(__file__).parent / "data" / "package-0.2.0"
SECRET = "s3cr3tPW"
CAM = f"rtsp://admin:{SECRET}@127.0.0.1:9/stream?open_timeout_s=1"  # a closed port: never opens


@pytest.mark.parametrize("text, want", [
    (f"rtsp://admin:{SECRET}@cam/s", f"rtsp://admin:{MASK}@cam/s"),
    (f"opened http://u:{SECRET}@h:80/x?a=1", f"opened http://u:{MASK}@h:80/x?a=1"),
    (f"udp://h:5000?token={SECRET}&fifo_size=1", f"udp://h:5000?token={MASK}&fifo_size=1"),
    (f"x?Password={SECRET}", f"x?Password={MASK}"),
    ("rtsp://cam/stream?transport=tcp", "rtsp://cam/stream?transport=tcp"),  # nothing secret: unchanged
    ("user@example.com a=b", "user@example.com a=b"),
    # an unencoded '@' in the password, or in the user name: everything up to the authority's last '@'
    (f"rtsp://admin:p@{SECRET}@cam:554/s", f"rtsp://admin:{MASK}@cam:554/s"),
    (f"rtsp://me@corp.com:{SECRET}@cam/s", f"rtsp://me@corp.com:{MASK}@cam/s"),
    (f"mqtt://u:{SECRET}@broker:1883/aknet", f"mqtt://u:{MASK}@broker:1883/aknet"),
    # any key with a secret word, any case; GStreamer properties, option lists, reprs, JSON, headers
    (f"rtspsrc location=rtsp://cam/s user-id=admin user-pw={SECRET} ! decodebin",
     f"rtspsrc location=rtsp://cam/s user-id=admin user-pw={MASK} ! decodebin"),
    (f"ffmpeg_options=fflags=nobuffer,passwd={SECRET} buffer_size=1",
     f"ffmpeg_options=fflags=nobuffer,passwd={MASK} buffer_size=1"),
    (f"https://h/x?client_secret={SECRET}&X-Amz-Signature={SECRET}&apiKey={SECRET}",
     f"https://h/x?client_secret={MASK}&X-Amz-Signature={MASK}&apiKey={MASK}"),
    (f"PASSWORD={SECRET} AKNET_PREVIEW_TOKEN={SECRET}", f"PASSWORD={MASK} AKNET_PREVIEW_TOKEN={MASK}"),
    (f"?token={SECRET}==&x=1", f"?token={MASK}&x=1"),  # base64's '=' is the value's
    (f"{{'password': '{SECRET}', 'fps': 15}}", f"{{'password': '{MASK}', 'fps': 15}}"),
    (f'{{"auth_token": "{SECRET}"}}', f'{{"auth_token": "{MASK}"}}'),
    (f"(('fflags', 'nobuffer'), ('pass', '{SECRET}'))", f"(('fflags', 'nobuffer'), ('pass', '{MASK}'))"),
    (f"Authorization: Bearer {SECRET}", f"Authorization: Bearer {MASK}"),
    (f"Authorization: Basic {SECRET}", f"Authorization: Basic {MASK}"),
    # not secrets: other words, the help's placeholders
    ("keyint=30 passthrough=1 keypoints=17", "keyint=30 passthrough=1 keypoints=17"),
    ("expected KEY=VALUE (e.g. buffer_size=2)", "expected KEY=VALUE (e.g. buffer_size=2)"),
    ("open /?token=TOKEN or send 'Authorization: Bearer TOKEN'",
     "open /?token=TOKEN or send 'Authorization: Bearer TOKEN'"),
    ("password=<password> token=$AKNET_PREVIEW_TOKEN", "password=<password> token=$AKNET_PREVIEW_TOKEN"),
    ("the preview token is empty", "the preview token is empty"),
])
def test_redact(text, want):
    assert redact(text) == want and SECRET not in redact(text)


def test_every_toolkit_error_is_masked_when_it_is_made():
    """Not only the CLI's error line: ``str(exc)`` of any AknetError a library caller catches or logs."""
    from aknet_edge.errors import ConfigError
    from aknet_edge.runtime import Recognizer

    assert SECRET not in str(ConfigError(f"bad {CAM}")) and SECRET not in repr(ConfigError(f"bad {CAM}").args)
    for uri, options in ((f"foo://admin:{SECRET}@cam/s", {}),  # unknown scheme
                         (f"synthetic://admin:{SECRET}@cam/?seed=1&passwd={SECRET}", {}),  # no such option
                         (CAM, {"rtsp_transport": "carrier-pigeon"})):  # a bad option value
        with pytest.raises(Exception) as err:
            S.open_source(uri, start=False, **options)
        assert "admin" in str(err.value) and SECRET not in str(err.value), str(err.value)
    with pytest.raises(S.SourceError) as err:  # unreachable: the Recognizer's error
        with Recognizer(PKG, CAM) as rec:
            list(rec)
    assert "admin:***@127.0.0.1" in str(err.value) and SECRET not in str(err.value)


def test_the_toolkits_log_records_are_masked_whatever_logging_the_application_set_up():
    """An application's own handler on a toolkit logger (no CLI, no filter installed): message, arguments and
    the traceback of a logged exception carry no password."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("aknet_edge.runtime.sources.base")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        logger.info("opening %s", CAM)
        logger.debug(f"opened {{'password': '{SECRET}'}}")
        try:
            raise RuntimeError(f"libav could not open {CAM}")
        except RuntimeError:
            logger.exception("capture failed")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    text = stream.getvalue()
    assert "opening rtsp://admin:***@" in text and "RuntimeError: libav could not open" in text
    assert SECRET not in text, text


def test_source_options_describe_secret_values_masked():
    from aknet_edge.runtime.sources.options import NetworkOptions

    opts = NetworkOptions.parse({"ffmpeg_options": {"fflags": "nobuffer", "password": SECRET}})
    assert dict(opts.ffmpeg_options)["password"] == SECRET  # what FFmpeg gets is the real one
    assert "fflags=nobuffer" in opts.describe() and SECRET not in opts.describe()


def test_json_lines_that_quote_other_programs_words_carry_no_password():
    from aknet_edge.runtime.records import server_record, stream_record

    lost = server_record("lost", {"url": f"grpc://u:{SECRET}@10.0.0.5:8001",
                                  "reason": f"failed to connect to grpc://u:{SECRET}@10.0.0.5:8001 (token={SECRET})"})
    gone = stream_record("lost", "cam", timestamp=None, frame=None, reconnects=0, reason=f"lost {CAM}")
    assert SECRET not in json.dumps(lost) + json.dumps(gone) and lost["url"].startswith("grpc://u:***@")


def test_a_source_shows_only_its_redacted_uri():
    src = S.open_source(CAM, start=False)
    assert SECRET not in src.uri and "admin" in src.uri
    assert SECRET in str(src._target)  # the real one still opens the device


def test_the_run_cli_keeps_the_password_out_of_every_output(tmp_path):
    """A camera that never answers next to one that runs: stdout, stderr (log, --stats), JSON Lines and the
    page's /state.json read while the run goes on."""
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "aknet_edge.run", f"cam={CAM}",
                             "a=synthetic://?seed=1&segments=2&speed=2&size=112", "--package", str(PKG),
                             "--jsonl", str(out), "--stats", "1", "--max-seconds", "5", "--preview-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    err: List[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    pages = []
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        url = next((ln.split("preview: ", 1)[1].strip() for ln in list(err) if ln.startswith("preview: ")), None)
        if url is not None:
            try:
                pages.append(urllib.request.urlopen(url + "state.json", timeout=5).read().decode())
            except OSError:
                pass
        time.sleep(0.5)
    stdout, _ = proc.communicate(timeout=60)
    reader.join(10)
    stderr = "".join(err)
    assert proc.returncode == 0, stderr[-3000:]
    assert pages and '"stream":"cam"' in pages[-1]  # the page was read, the camera on it
    text = stdout + stderr + out.read_text() + "".join(pages)
    assert "cam" in stderr and MASK in stderr  # the camera is named, its secret masked
    assert SECRET not in text, [ln for ln in text.splitlines() if SECRET in ln]


def test_the_run_cli_error_line_is_redacted(tmp_path):
    """The issue's command: one unreachable credentialed camera, every output asked for; one error line, exit 2,
    no JSON Lines file left behind, the password nowhere."""
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "aknet_edge.run", f"rtsp://user:{SECRET}@127.0.0.1:1/x",
                           "--package", str(PKG), "--jsonl", str(out), "--preview-port", "0", "--max-seconds", "3",
                           "--stats", "1"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error:")
    assert "rtsp://user:***@127.0.0.1:1/x" in proc.stderr.strip().splitlines()[-1]
    assert SECRET not in proc.stdout + proc.stderr + (out.read_text() if out.exists() else "")


def test_a_recognizer_keeps_the_password_out_of_its_label_stats_page_and_jsonl(caplog):
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    uri = f"synthetic://admin:{SECRET}@cam/?seed=1&segments=2&speed=0&size=112&block=true"
    with Recognizer(PKG, uri, jsonl=out, preview_port=0, max_seconds=4) as rec:
        results = list(rec)
        label, shown = rec.lane.label, rec.source.uri
        stats = json.dumps(rec.stats().to_dict())
        page = urllib.request.urlopen(rec.preview.url + "state.json", timeout=5).read().decode()
    assert results and "admin:***@cam" in label and shown.startswith("synthetic://admin:***@cam/")
    seen = "\n".join(r.getMessage() for r in caplog.records) + out.getvalue() + page + stats + label
    assert SECRET not in seen, [ln for ln in seen.splitlines() if SECRET in ln][:3]


def test_the_library_keeps_the_password_out_of_logs_telemetry_page_and_jsonl(caplog):
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    with MultiRecognizer(PKG, {"cam": CAM, "a": "synthetic://?seed=1&segments=2&speed=2&size=112"}, jsonl=out,
                         preview_port=0, max_seconds=3) as rec:
        results = list(rec)
        stats = rec.stats()
        page = urllib.request.urlopen(rec.preview.url + "state.json", timeout=5).read().decode()
    assert results
    seen = "\n".join(r.getMessage() for r in caplog.records) + out.getvalue() + page + json.dumps(stats.to_dict()) \
        + json.dumps({k: v.to_dict() for k, v in stats.streams.items()})
    assert SECRET not in seen, [ln for ln in seen.splitlines() if SECRET in ln][:3]
