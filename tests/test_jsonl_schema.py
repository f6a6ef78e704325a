"""One JSON Lines schema: every line the runtime writes validates against the schema that ships in the package.

The lines come from real runs through the public APIs (Recognizer on a file, the run CLI, an outage, a
MultiRecognizer with several streams, the Triton client's state changes); the schema
(aknet_edge/runtime/schema/jsonl.schema.json) and the producers (aknet_edge.runtime.records) must cover
the same line types, and the schema must reject what no producer writes.
"""

from __future__ import annotations  # Python 3.8 runs this file (the device venvs)

import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List

import pytest

from aknet_edge.runtime import MultiRecognizer, Recognizer, records
from aknet_edge.runtime.jsonl import JsonlSink, JsonlWriter
from aknet_edge.runtime.sinks import SinkSet
from aknet_edge.runtime.sources.memory import ArraySource
from aknet_edge.synthetic import iter_long_video, write_long_video

from conftest import REPO
from test_runtime_outage import _camera
from test_runtime_support import demo_package

jsonschema = pytest.importorskip("jsonschema")

DRAFT = "https://json-schema.org/draft/2020-12/schema"


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return demo_package(tmp_path_factory)


@pytest.fixture(scope="module")
def validator():
    schema = records.load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _lines(text: str) -> List[Dict[str, Any]]:
    return [json.loads(ln) for ln in text.splitlines()]


def _valid(validator, lines: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    assert lines
    for line in lines:
        errors = sorted(validator.iter_errors(line), key=str)
        assert not errors, f"{line}: {[e.message for e in errors]}"
        assert line["v"] == records.SCHEMA_VERSION
    return lines


def _of(lines: List[Dict[str, Any]], kind: str) -> List[Dict[str, Any]]:
    return [x for x in lines if x["type"] == kind]


def _schema_types(schema: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """type -> its subschema, from the top level's oneOf."""
    out = {}
    for ref in schema["oneOf"]:
        sub = schema["$defs"][ref["$ref"].rsplit("/", 1)[-1]]
        out[sub["properties"]["type"]["const"]] = sub
    return out


# -- the schema document and the producers


def test_the_schema_ships_in_the_runtime_package_as_draft_2020_12():
    import aknet_edge.runtime as runtime

    assert records.SCHEMA_PATH == Path(runtime.__file__).resolve().parent / "schema" / "jsonl.schema.json"
    schema = records.load_schema()
    assert schema == json.loads(records.SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["$schema"] == DRAFT
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["v"] == {"const": records.SCHEMA_VERSION} and isinstance(records.SCHEMA_VERSION, int)
    assert records.load_schema() is not schema  # a fresh dict: a caller may change its copy
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert '"schema/*.json"' in pyproject  # package data: the wheel carries it (test_packaging checks the wheel)


def test_every_schema_line_type_has_a_producer_and_the_enums_are_the_records(validator):
    schema = records.load_schema()
    types = _schema_types(schema)
    assert set(types) == set(records.PRODUCERS) == set(records.LINE_TYPES)
    assert set(schema["properties"]["type"]["enum"]) == set(records.LINE_TYPES)
    for kind, sub in types.items():
        assert sub["additionalProperties"] is False, kind
        assert {"type", "v"} <= set(sub["required"]), kind
    assert tuple(types["event"]["properties"]["state"]["enum"]) == records.EVENT_STATES
    assert tuple(types["event"]["properties"]["reason"]["enum"]) == records.EVENT_REASONS
    assert tuple(types["stream"]["properties"]["state"]["enum"]) == records.STREAM_STATES
    assert tuple(types["server"]["properties"]["state"]["enum"]) == records.SERVER_STATES
    # each producer's line is of its type and valid (the real runs below check the fields in use)
    result = SimpleNamespace(timestamp=2.0, window_start=0.0, label="a", confidence=0.9, top_k=[("a", 0.9)],
                             keypoints=[(1.0, 2.0, 3.0, 0.5)], latency_ms=3.0, fps=14.9, frame_index=30, stream=None)
    event = SimpleNamespace(label="a", start=1.0, end=2.0, confidence=0.8, peak=0.9, state="ended",
                            reason="stopped", stream="cam")
    made = {
        "result": records.result_record(result),
        "event": records.event_record(event),
        "stream": records.stream_record("lost", "cam", timestamp=None, frame=None, reconnects=0),
        "server": records.server_record("live", {"url": "127.0.0.1:8001", "outage_s": 1.5}),
        "clip": records.clip_record(SimpleNamespace(stream="cam", label="a", event_start=1.0, event_end=2.0,
                                                    start=0.0, end=3.0, path="/c/clip-cam.mp4", frames=10, fps=3.5,
                                                    bytes=1234, raw=False)),
    }
    assert set(made) == set(records.PRODUCERS)
    for kind, line in made.items():
        assert line["type"] == kind and line["v"] == records.SCHEMA_VERSION
        _valid(validator, [json.loads(json.dumps(line))])
    assert made["server"]["state"] == "restored"  # the Triton client's "live"


def test_the_recognisers_event_reasons_are_the_schemas():
    """Every reason a recogniser ends an event with is in the schema (the constants, wherever they live)."""
    import importlib

    found = set()
    for module in ("recognizer", "multistream", "lane", "pipeline"):
        try:
            mod = importlib.import_module(f"aknet_edge.runtime.{module}")
        except ImportError:
            continue
        for name in ("SOURCE_LOST", "STREAM_GAP", "END_OF_STREAM", "STOPPED", "ERROR", "SERVER_LOST"):
            value = getattr(mod, name, None)
            if isinstance(value, str):
                found.add(value)
    assert found and found <= set(records.EVENT_REASONS)


def _good_result() -> Dict[str, Any]:
    return {"stream": "cam", "type": "result", "v": 1, "timestamp": 2.0, "window_start": 0.0, "label": "a",
            "confidence": 0.9, "top_k": [["a", 0.9], ["b", 0.1]], "keypoints": [[1.0, 2.0, 3.0, 0.5]],
            "latency_ms": 3.0, "fps": 14.9, "frame": 30}


@pytest.mark.parametrize("case", [
    "no-v", "v-2", "v-string", "unknown-type", "no-type", "extra-field", "missing-field", "started-with-reason",
    "started-with-end", "ended-without-end", "unknown-reason", "restored-without-outage", "lost-with-outage",
    "server-lost-without-reason", "server-with-stream", "unknown-stream-state", "top-k-triple", "probability-2",
    "event-id-not-hex", "event-id-number",
])
def test_the_schema_rejects_lines_no_producer_writes(validator, case):
    event = {"type": "event", "v": 1, "state": "ended", "label": "a", "start": 1.0, "end": 2.0, "confidence": 0.8,
             "peak": 0.9}
    stream = {"type": "stream", "v": 1, "state": "restored", "timestamp": 3.0, "frame": 9, "reconnects": 1,
              "outage_s": 1.0}
    server = {"type": "server", "v": 1, "state": "lost", "url": "h:1", "reason": "refused"}
    for good in (_good_result(), event, {**event, "id": "0123456789abcdef0123456789abcdef"}, stream, server):
        assert validator.is_valid(good), good
    bad = {
        "no-v": {k: v for k, v in _good_result().items() if k != "v"},
        "v-2": {**_good_result(), "v": 2},
        "v-string": {**_good_result(), "v": "1"},
        "unknown-type": {**_good_result(), "type": "stats"},
        "no-type": {k: v for k, v in _good_result().items() if k != "type"},
        "extra-field": {**_good_result(), "colour": "red"},
        "missing-field": {k: v for k, v in _good_result().items() if k != "frame"},
        "started-with-reason": {**event, "state": "started", "end": None, "reason": "stopped"},
        "started-with-end": {**event, "state": "started"},
        "ended-without-end": {**event, "end": None},
        "unknown-reason": {**event, "reason": "tired"},
        "restored-without-outage": {k: v for k, v in stream.items() if k != "outage_s"},
        "lost-with-outage": {**stream, "state": "lost"},
        "server-lost-without-reason": {k: v for k, v in server.items() if k != "reason"},
        "server-with-stream": {**server, "stream": "cam"},
        "unknown-stream-state": {**stream, "state": "paused"},
        "top-k-triple": {**_good_result(), "top_k": [["a", 0.9, 1]]},
        "probability-2": {**_good_result(), "confidence": 2.0},
        "event-id-not-hex": {**event, "id": "front-10.9-move_left"},
        "event-id-number": {**event, "id": 7},
    }[case]
    assert not validator.is_valid(bad)


# -- lines from real runs


def test_a_file_run_writes_valid_result_and_event_lines(pkg, tmp_path, validator):
    video = tmp_path / "long.avi"
    write_long_video(video, seed=21, n_segments=3, fps=15, size=112)
    out = tmp_path / "out.jsonl"
    # enter=exit=0: events start at once and one is open at the end (reason "end of stream")
    with Recognizer(pkg, str(video), jsonl=str(out), enter=0.0, exit=0.0, min_duration_s=0.0) as rec:
        results = list(rec)
        events = list(rec.events)
    lines = _valid(validator, _lines(out.read_text()))
    assert {x["type"] for x in lines} == {"result", "event"}
    assert not any("stream" in x for x in lines)  # an unnamed recogniser
    assert len(_of(lines, "result")) == len(results) > 0 and len(_of(lines, "event")) == len(events) > 0
    assert _of(lines, "event")[-1].get("reason") == "end of stream"
    # the writer's lines are the records' (through JSON), field order included
    assert _of(lines, "result") == [json.loads(json.dumps(records.result_record(r))) for r in results]
    assert [list(x) for x in _of(lines, "result")][0] == ["type", "v", "timestamp", "window_start", "label",
                                                          "confidence", "top_k", "keypoints", "latency_ms", "fps",
                                                          "frame"]
    assert _of(lines, "event") == [json.loads(json.dumps(records.event_record(e))) for e in events]
    _check_event_ids(_of(lines, "event"))


def _check_event_ids(events: List[Dict[str, Any]]) -> None:
    """Every event line has an id; an event's started and ended lines share it, and no two events do."""
    assert all(isinstance(x.get("id"), str) and len(x["id"]) == 32 for x in events), events
    started = [x["id"] for x in events if x["state"] == "started"]
    assert len(set(started)) == len(started)  # one id per event
    open_ids: Dict[Any, str] = {}
    for x in events:  # per lane, an ended line closes the started one before it
        lane = (x.get("stream"), x.get("roi"), x.get("track"))
        if x["state"] == "started":
            open_ids[lane] = x["id"]
        else:
            assert open_ids.pop(lane) == x["id"], x


def test_the_run_cli_names_its_stream_on_every_valid_line(pkg, validator):
    proc = subprocess.run([sys.executable, "-m", "aknet_edge.run", "synthetic://?seed=1&segments=3&speed=2",
                           "--package", str(pkg), "--max-seconds", "3", "--jsonl", "-", "--enter", "0", "--exit",
                           "0"], capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = _valid(validator, _lines(proc.stdout))
    assert _of(lines, "result") and _of(lines, "event")
    assert all(isinstance(x.get("stream"), str) for x in lines)
    assert list(lines[0])[:3] == ["stream", "type", "v"]
    _check_event_ids(_of(lines, "event"))


@pytest.mark.parametrize("overlap", [True, False], ids=["head-thread", "inline"])
def test_an_outage_writes_valid_stream_lines(pkg, validator, overlap):
    out = io.StringIO()
    with Recognizer(pkg, _camera(before_s=4.0, outage_s=1.5, after_s=2.5), jsonl=out, enter=0.0, exit=0.0,
                    min_duration_s=0.0, overlap=overlap) as rec:
        list(rec)
    lines = _valid(validator, _lines(out.getvalue()))
    streams = _of(lines, "stream")
    assert [x["state"] for x in streams] == ["lost", "restored"]
    assert streams[1]["outage_s"] > 1.0 and streams[1]["reconnects"] >= 1
    lost_at = lines.index(streams[0])
    assert any(x["type"] == "event" and x.get("reason") == "source lost" for x in lines[lost_at:])
    assert _of(lines[lines.index(streams[1]):], "result")  # results resume


def test_several_streams_carry_their_names_on_valid_lines(pkg, validator):
    """MultiRecognizer: two healthy streams and one that is lost and comes back; every line names its stream."""
    sources: Dict[str, Any] = {}
    for name, seed, fps in (("front", 3, 15.0), ("rear", 4, 10.0)):
        _, frames = iter_long_video(seed, 2, fps, 112, (2.5, 3.0))
        sources[name] = ArraySource([f for _, f in frames], fps=fps)
    sources["cut"] = _camera(before_s=4.0, outage_s=1.5, after_s=2.5)
    out = io.StringIO()
    with MultiRecognizer(pkg, sources, jsonl=out, enter=0.0, exit=0.0, min_duration_s=0.0) as rec:
        results = list(rec)
    lines = _valid(validator, _lines(out.getvalue()))
    assert all(x["stream"] in sources for x in lines)
    assert {x["stream"] for x in _of(lines, "result")} == set(sources) and len(_of(lines, "result")) == len(results)
    assert {x["stream"] for x in _of(lines, "event")} == set(sources)
    streams = _of(lines, "stream")
    assert [(x["stream"], x["state"]) for x in streams] == [("cut", "lost"), ("cut", "restored")]
    assert any(x["type"] == "event" and x["stream"] == "cut" and x.get("reason") == "source lost" for x in lines)
    _check_event_ids(_of(lines, "event"))


def test_the_triton_clients_state_changes_make_valid_server_lines(pkg, validator):
    """The Triton client's own lost/restored callbacks (its real info dicts) through the writer; no server needed:
    the loss is reported as the client reports a failed request, the return as a successful probe."""
    pytest.importorskip("tritonclient.grpc")
    from aknet_edge import package as pk
    from aknet_edge.runtime import triton_client as tc

    out = io.StringIO()
    writer = JsonlWriter(out)
    client = tc.TritonStream(pk.load(pkg), "127.0.0.1:1", on_state=writer.write_server)
    try:
        client._lost(ConnectionRefusedError("failed to connect to all addresses\nmore detail"))
        client._ready = lambda: None  # the server answers again
        client._read_config = lambda: None  # ... with the same model (checked again on every return)
        client._next_try = 0.0
        assert client._try_restore()
    finally:
        client.close()
    lines = _valid(validator, _lines(out.getvalue()))
    assert [x["state"] for x in lines] == ["lost", "restored"]
    assert lines[0]["url"] == lines[1]["url"] == "127.0.0.1:1" and "\n" not in lines[0]["reason"]
    assert lines[1]["outage_s"] >= 0


# -- the JSON Lines sink


def test_the_jsonl_sink_writes_the_writers_lines_once_opened(pkg, tmp_path, validator):
    by_writer = tmp_path / "writer.jsonl"
    with Recognizer(pkg, "synthetic://?seed=3&segments=2&speed=0&block=true&size=112", jsonl=str(by_writer),
                    enter=0.0, exit=0.0, min_duration_s=0.0) as rec:
        results = list(rec)
        events = list(rec.events)
    path = tmp_path / "sink.jsonl"
    sinks = SinkSet([JsonlSink(path)])
    assert not path.exists()  # created when the pipeline opens its sinks, not before
    sinks.open()
    assert path.read_text() == ""
    for r in results:
        sinks.result(r)
    for e in events:
        sinks.event(e)
    sinks.stream_state("cam", "lost", {"timestamp": 4.0, "frame": 60, "reconnects": 0})
    sinks.stream_state("cam", "restored", {"timestamp": 9.5, "frame": 61, "reconnects": 1, "outage_s": 5.25})
    sinks.server_state("lost", {"url": "127.0.0.1:8001", "reason": "connection refused"})
    sinks.server_state("live", {"url": "127.0.0.1:8001", "outage_s": 2.0})
    sinks.close()
    assert not sinks.failed
    lines = _valid(validator, _lines(path.read_text()))
    written = _lines(by_writer.read_text())
    assert _of(lines, "result") == _of(written, "result") and _of(lines, "event") == _of(written, "event")
    assert [(x["stream"], x["state"]) for x in _of(lines, "stream")] == [("cam", "lost"), ("cam", "restored")]
    assert [x["state"] for x in _of(lines, "server")] == ["lost", "restored"]


def test_the_jsonl_sink_on_a_full_disk_warns_once_and_stays_quiet(caplog, validator):
    sink = JsonlSink("/dev/full")
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    sinks = SinkSet([sink])
    sinks.open()
    with caplog.at_level(logging.WARNING):
        for i in range(5):
            sinks.stream_state(None, "lost", {"timestamp": float(i), "frame": i, "reconnects": 0})
    sinks.close()
    assert sink.failed is not None and not sinks.failed  # the writer's failure, not the sink set's
    assert len([r for r in caplog.records if "writing failed" in r.getMessage()]) == 1
