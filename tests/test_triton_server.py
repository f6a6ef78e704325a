"""A real Triton Inference Server on 127.0.0.1 serving the repository aknet_edge.triton_repo writes.

The server (tests/peers/triton_server.py) is pip's tritonserver with Triton's ONNX Runtime backend
(../shared/triton), in the venv .ci/run makes; where it cannot start, these tests skip with the reason.
The client is aknet_edge.runtime.triton_client over gRPC.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from aknet_edge import package as pk
from aknet_edge import triton_repo as tr
from aknet_edge.preprocess import preprocess_clip, preprocess_frame
from aknet_edge.runtime.backends import OnnxRuntimeBackend
from aknet_edge.runtime.sources import ReconnectPolicy
from aknet_edge.runtime.window import IncrementalEncoder

sys.path.insert(0, str(Path(__file__).parent / "peers"))
import triton_server  # noqa: E402
from conftest import assert_valid_jsonl  # noqa: E402

PACKAGE = Path(__file__).parent / "data" / "package-0.2.0"
IDLE_S = 2.0  # the repository's sequence idle limit in these tests
pytestmark = pytest.mark.slow

_why = triton_server.unavailable()
if _why:
    pytestmark = [pytest.mark.slow, pytest.mark.skip(reason=f"no Triton server here: {_why}")]
else:
    from aknet_edge.runtime import triton_client as tc


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("triton_server")
    repo = work / "repo"
    tr.write_triton_repo(PACKAGE, repo, idle_s=IDLE_S, instance_kind="cpu", threads=1)
    srv = triton_server.TritonServer(repo, work)
    try:
        srv.start()
    except RuntimeError as exc:
        pytest.skip(f"tritonserver did not start here: {exc}")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def package():
    return pk.load(PACKAGE)


@pytest.fixture(scope="module")
def local(package):
    return OnnxRuntimeBackend(package, threads=1)


def _policy() -> ReconnectPolicy:
    return ReconnectPolicy(initial_s=0.2, max_s=1.0)


def test_aknet_clip_equals_local_onnxruntime_under_concurrent_requests(server, package, local):
    clips = np.random.default_rng(0).standard_normal((6, 8, 3, 112, 112)).astype(np.float32)
    client = tc.TritonClip(package, server.grpc_url).connect()
    got = [None] * 6
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, client.infer(clips[i:i + 1])))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    two = client.infer(clips[:2])  # a batch of two in one request
    for i in range(6):
        ref = local.infer_clip(clips[i])
        np.testing.assert_allclose(got[i].logits, ref.logits, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(got[i].keypoints, ref.keypoints)
    np.testing.assert_allclose(two.logits, local.infer_clip(clips[:2]).logits, atol=1e-5, rtol=0)
    assert client.stats().bytes_sent == 8 * clips[0].nbytes
    client.close()


def test_aknet_stream_for_8_cameras_equals_the_local_carried_state_path(server, package, local):
    """8 cameras as 8 sequences, all sent together each step; camera 2 restarts its grid at step 10."""
    spec = package.clip_spec
    stream = tc.TritonStream(package, server.grpc_url, sequence_base=100).connect()
    rng = np.random.default_rng(1)
    cams = 8
    encoders = [IncrementalEncoder(local, spec.frames, exact=False) for _ in range(cams)]
    compared = 0
    for k in range(14):
        frames = rng.integers(0, 256, (cams, 90, 120, 3), dtype=np.uint8)
        if k == 10:
            stream.restart(2)
            encoders[2] = IncrementalEncoder(local, spec.frames, exact=False)
        res = stream.step_many([(c, frames[c], "BGR") for c in range(cams)])
        for c in range(cams):
            encoders[c].push(preprocess_frame(frames[c], spec, "BGR"))
            assert res[c] is not None and res[c].steps == encoders[c].count
            if not encoders[c].ready:
                assert res[c].output is None
                continue
            ref = local.head(encoders[c].window())
            np.testing.assert_allclose(res[c].output.logits, ref.logits, atol=1e-5, rtol=0)
            np.testing.assert_array_equal(res[c].output.keypoints, ref.keypoints)
            compared += 1
    s = stream.stats()
    assert compared == 8 * 7 - 4  # windows full from step 7; camera 2's restart at step 10 costs it 4
    assert s.requests == 14 * cams and s.sequence_restarts == 0 and s.outages == 0
    assert s.bytes_sent == 14 * cams * 112 * 112 * 3  # one 37.6 kB uint8 frame per camera-step
    stream.close()


def _whole_clip(local, package, frames):
    return local.infer_clip(preprocess_clip(list(frames), package.clip_spec, "BGR"))


def test_a_sequence_idle_past_the_servers_limit_is_restarted_with_its_window(server, package, local):
    stream = tc.TritonStream(package, server.grpc_url, sequence_base=200).connect()
    rng = np.random.default_rng(2)
    frames = list(rng.integers(0, 256, (12, 112, 112, 3), dtype=np.uint8))
    for f in frames[:10]:
        assert stream.step(0, f, "BGR") is not None
    time.sleep(IDLE_S + 2.5)  # the server drops the sequence
    res = stream.step(0, frames[10], "BGR")
    assert res is not None and res.restarted and res.steps == 8
    # the replayed window starts from zero state at its first frame: it is the whole-clip result on its frames
    np.testing.assert_allclose(res.output.logits, _whole_clip(local, package, frames[3:11]).logits, atol=1e-5, rtol=0)
    res = stream.step(0, frames[11], "BGR")
    assert not res.restarted and res.steps == 9
    s = stream.stats()
    assert s.sequence_restarts == 1 and s.replayed == 7 and s.outages == 0
    stream.close()


def test_server_killed_and_restarted_mid_stream_recovers_without_restarting_the_client(server, package, local):
    states = []
    stream = tc.TritonStream(package, server.grpc_url, sequence_base=300, reconnect=_policy(), timeout_s=3.0,
                             on_state=lambda state, info: states.append((state, info))).connect()
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (2, 112, 112, 3), dtype=np.uint8) for _ in range(40)]
    for k in range(9):
        res = stream.step_many([(c, frames[k][c], "BGR") for c in range(2)])
        assert all(r is not None and (r.output is not None) == (k >= 7) for r in res)
    server.kill()
    k = 9
    res = stream.step_many([(c, frames[k][c], "BGR") for c in range(2)])
    assert res == [None, None] and stream.state == tc.LOST and states[0][0] == tc.LOST
    assert stream.stats().outages == 1
    server.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        k += 1
        res = stream.step_many([(c, frames[k][c], "BGR") for c in range(2)])
        if res[0] is not None:
            break
        time.sleep(0.1)
    assert res[0] is not None, "no result within 30 s of the server's restart"
    assert stream.state == tc.LIVE and [s for s, _ in states] == [tc.LOST, tc.LIVE]
    for c in range(2):  # the first window after the outage: the last 8 samples, replayed from zero state
        window = [frames[j][c] for j in range(k - 7, k + 1)]
        assert res[c].steps == 8
        np.testing.assert_allclose(res[c].output.logits, _whole_clip(local, package, window).logits, atol=1e-5,
                                   rtol=0)
    res = stream.step_many([(c, frames[k + 1][c], "BGR") for c in range(2)])
    assert all(r is not None and r.steps == 9 for r in res)
    s = stream.stats()
    assert s.outages == 1 and s.outage_s > 0 and s.skipped >= 2 and s.state == tc.LIVE
    stream.close()


def test_unreachable_server_and_mismatched_model_are_clear_errors_before_any_result(server, package, tmp_path):
    dead = f"127.0.0.1:{triton_server.free_port()}"
    with pytest.raises(tc.TritonUnavailableError, match=f"cannot use Triton at {dead}"):
        tc.TritonStream(package, dead, timeout_s=2.0).connect()
    with pytest.raises(Exception, match="expected HOST:PORT"):
        tc.TritonStream(package, "localhost")
    # a package whose labels differ from the served model's
    other = tmp_path / "other"
    shutil.copytree(PACKAGE, other)
    m = package.manifest
    labels = tuple(reversed(m.labels))
    pk.write(other, m.replace(labels=labels, config=dataclasses.replace(m.config, labels=labels)))
    with pytest.raises(tc.TritonModelMismatchError, match="labels differ"):
        tc.TritonStream(pk.load(other), server.grpc_url).connect()
    with pytest.raises(tc.TritonModelMismatchError, match="labels differ"):
        tc.TritonClip(pk.load(other), server.grpc_url).connect()


def test_backend_for_the_recogniser_streams_frames_and_runs_whole_clips(server, package, local):
    """TritonBackend: step() per grid sample (None until the server's window is full), restart() on a grid
    restart, infer_clip() through aknet_clip."""
    backend = tc.TritonBackend(package, server.grpc_url, camera=5, sequence_base=400)
    assert backend.streams_frames and not backend.has_split and backend.clip is not None
    spec = package.clip_spec
    frames = list(np.random.default_rng(4).integers(0, 256, (10, 112, 112, 3), dtype=np.uint8))
    outs = [backend.step(f, "RGB") for f in frames]
    assert all(o is None for o in outs[:7]) and all(o is not None for o in outs[7:])
    np.testing.assert_allclose(outs[7].logits, local.infer_clip(preprocess_clip(frames[:8], spec, "RGB")).logits,
                               atol=1e-5, rtol=0)  # the first window starts from zero state: the whole clip
    backend.restart()
    assert backend.step(frames[0], "RGB") is None and backend.stats().requests == 11
    clip = preprocess_clip(frames[2:10], spec, "RGB")
    np.testing.assert_allclose(backend.infer_clip(clip).logits, local.infer_clip(clip).logits, atol=1e-5, rtol=0)
    backend.close()


# -- through the recognisers and the run CLI (runtime/recognizer.py, runtime/multistream.py, aknet_edge/run.py)

def _wired() -> bool:
    from aknet_edge.runtime.backend_choice import BACKENDS

    return "triton" in BACKENDS


needs_wiring = pytest.mark.skipif(not _wired(), reason="the recognisers do not offer backend 'triton' yet "
                                                       "(the edits to runtime/backends.py, recognizer.py, "
                                                       "multistream.py and aknet_edge/run.py are not applied)")


def _footage(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(n)]


def _results(rec):
    with rec:
        return [(r.timestamp, r.label, round(r.confidence, 5), r.keypoints) for r in rec]


@needs_wiring
def test_recognisers_over_triton_equal_the_local_carried_path(server):
    """Recognizer and MultiRecognizer (3 streams, 3 sequences) with backend triton give the results of the local
    carried-state path on the same frames."""
    from aknet_edge.runtime.multistream import MultiRecognizer
    from aknet_edge.runtime.recognizer import Recognizer
    from aknet_edge.runtime.sources import ArraySource

    local = dict(backend="onnxruntime", exact_incremental=False, threads=1, overlap=False)
    remote = dict(backend="triton", triton_url=server.grpc_url, triton_sequence_base=500)
    frames = _footage(5)
    want = _results(Recognizer(PACKAGE, ArraySource(frames, color="BGR"), **local))
    got = _results(Recognizer(PACKAGE, ArraySource(frames, color="BGR"), **remote))
    assert len(want) >= 5 and got == want
    footage = {f"cam{i}": _footage(10 + i, 45 + 5 * i) for i in range(3)}

    def multi(**opts):
        with MultiRecognizer(PACKAGE, {n: ArraySource(f, color="BGR") for n, f in footage.items()}, **opts) as rec:
            return sorted((r.stream, r.timestamp, r.label, round(r.confidence, 5), tuple(r.keypoints)) for r in rec)

    local.pop("overlap")
    want = multi(**local)
    assert len({r[0] for r in want}) == 3 and multi(**remote) == want


@needs_wiring
def test_run_cli_refuses_an_unreachable_server_and_a_mismatched_model(server, package, tmp_path, capsys):
    from aknet_edge import run
    from aknet_edge.cli_common import run_cli

    dead = f"127.0.0.1:{triton_server.free_port()}"
    assert run_cli(run.main, ["--package", str(PACKAGE), "--backend", "triton", "--triton-url", dead]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: cannot use Triton at {dead}")
    assert run_cli(run.main, ["--package", str(PACKAGE), "--backend", "triton"]) == 2
    assert "--backend triton needs --triton-url" in capsys.readouterr().err
    other = tmp_path / "other"
    shutil.copytree(PACKAGE, other)
    m = package.manifest
    labels = tuple(reversed(m.labels))
    pk.write(other, m.replace(labels=labels, config=dataclasses.replace(m.config, labels=labels)))
    out = tmp_path / "out.jsonl"
    assert run_cli(run.main, ["--package", str(other), "--backend", "triton", "--triton-url", server.grpc_url,
                              "--jsonl", str(out)]) == 2
    assert "labels differ" in capsys.readouterr().err and not out.exists()  # before any result


@needs_wiring
def test_a_server_outage_shows_in_json_lines_events_and_telemetry(server, tmp_path):
    """The server killed mid-stream and restarted: "server" lost/restored lines, the open event ends with reason
    "server lost", results resume, and the telemetry counts the outage."""
    import json

    from aknet_edge.runtime.recognizer import Recognizer
    from aknet_edge.runtime.sources import ArraySource

    out = tmp_path / "out.jsonl"
    frames = _footage(6, 180)  # 12 s at 15 fps, paced: the client probes 0.5, 1.5, 3.5 and 7.5 s after the loss

    def chaos():
        time.sleep(3.0)  # windows (and with enter=0 an event) from 2 s on
        server.kill()
        time.sleep(0.5)
        server.start()

    rec = Recognizer(PACKAGE, ArraySource(frames, color="BGR", speed=1.0), backend="triton", jsonl=str(out),
                     triton_url=server.grpc_url, triton_sequence_base=600, enter=0.0, exit=0.0)
    t = threading.Thread(target=chaos)
    with rec:
        t.start()
        results = list(rec)
        snap = rec.stats()
    t.join()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert_valid_jsonl(lines)
    server_lines = [x for x in lines if x["type"] == "server"]
    assert [x["state"] for x in server_lines] == ["lost", "restored"] and server_lines[1]["outage_s"] > 0.4
    lost_at = lines.index(server_lines[0])
    assert any(x["type"] == "event" and x.get("reason") == "server lost" for x in lines[lost_at:])
    assert any(x["type"] == "result" for x in lines[lines.index(server_lines[1]):])
    assert snap.server["outages"] == 1 and snap.server["state"] == "live" and len(results) > 5


@needs_wiring
def test_whole_clip_mode_survives_the_server_going_away_too(server, tmp_path):
    """--no-incremental (aknet_clip): the same server lines, "server lost" event ends and resumed results as the
    default streaming mode, not the end of the run."""
    import json
    import os
    import signal

    from aknet_edge.runtime.recognizer import Recognizer
    from aknet_edge.runtime.sources import ArraySource

    out = tmp_path / "out.jsonl"
    frames = _footage(7, 180)

    def chaos():
        time.sleep(3.0)
        os.kill(server.proc.pid, signal.SIGSTOP)  # a stalled server first: requests time out
        time.sleep(2.0)
        server.kill()
        time.sleep(0.3)
        server.start()

    rec = Recognizer(PACKAGE, ArraySource(frames, color="BGR", speed=1.0), backend="triton", jsonl=str(out),
                     triton_url=server.grpc_url, incremental=False, enter=0.0, exit=0.0)
    t = threading.Thread(target=chaos)
    with rec:
        t.start()
        results = list(rec)
        snap = rec.stats()
    t.join()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert_valid_jsonl(lines)
    server_lines = [x for x in lines if x["type"] == "server"]
    assert [x["state"] for x in server_lines] == ["lost", "restored"]
    # the stall is in the outage: it began when the request that timed out went out, not at its timeout
    assert server_lines[1]["outage_s"] >= 2.0
    lost_at = lines.index(server_lines[0])
    assert any(x["type"] == "event" and x.get("reason") == "server lost" for x in lines[lost_at:])
    assert any(x["type"] == "result" for x in lines[lines.index(server_lines[1]):])
    assert snap.server["outages"] == 1 and snap.skipped_windows > 0 and len(results) > 5


def test_the_client_refuses_a_repository_written_from_another_package(server, package, tmp_path):
    other = tmp_path / "same-labels-other-weights"
    shutil.copytree(PACKAGE, other)
    manifest = other / pk.MANIFEST
    manifest.write_text(manifest.read_text() + "\n")  # another package: same labels, inputs and graphs' names
    with pytest.raises(tc.TritonModelMismatchError, match=r"written from another package.*package-0.2.0.*"
                                                          r"same-labels-other-weights"):
        tc.TritonStream(pk.load(other), server.grpc_url).connect()
    with pytest.raises(tc.TritonModelMismatchError, match="written from another package"):
        tc.TritonClip(pk.load(other), server.grpc_url).connect()


def test_two_devices_with_default_ids_never_mix_and_a_collision_is_detected(server, package, caplog):
    rng = np.random.default_rng(9)
    frames = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(12)]
    a = tc.TritonStream(package, server.grpc_url).connect()
    b = tc.TritonStream(package, server.grpc_url).connect()
    assert a.corrid(0) != b.corrid(0)  # random bases per run
    for k in range(10):  # interleaved, camera 0 on both devices
        ra, rb = a.step(0, frames[k]), b.step(0, frames[k])
        assert ra.steps == rb.steps == k + 1
    assert a.stats().collisions == b.stats().collisions == 0
    # forced onto the same ids (an operator's mistake): detected, counted, and both move on to fresh ids
    c = tc.TritonStream(package, server.grpc_url, sequence_base=4242).connect()
    d = tc.TritonStream(package, server.grpc_url, sequence_base=4242).connect()
    for k in range(10):
        c.step(0, frames[k])
        d.step(0, frames[k])
    assert c.stats().collisions + d.stats().collisions >= 1
    assert c.corrid(0) != d.corrid(0)
    assert [r for r in caplog.records if "fed by another client" in r.getMessage()]
    rc, rd = c.step(0, frames[10]), d.step(0, frames[10])
    assert rc.steps >= 1 and rd.steps >= 1 and rc.steps == c._camera(0).sent and rd.steps == d._camera(0).sent
    for s in (a, b, c, d):
        s.close()


def test_correlation_ids_are_bound_checked():
    from aknet_edge.errors import ConfigError

    for bad in (0, -1, 2 ** 64, 2 ** 64 - 1, 1.5, True):
        with pytest.raises(ConfigError, match="64-bit"):
            tc.check_sequence_base(bad)
    assert 1 <= tc.check_sequence_base(None) <= tc.MAX_CORRID


@needs_wiring
def test_a_repository_with_only_aknet_clip_runs_in_the_mode_it_serves(tmp_path):
    """A package without split graphs: the writer leaves out aknet_stream and says why; --backend triton then runs
    whole clips (auto), equal to local ONNX Runtime, and refuses nothing it can serve."""
    from aknet_edge import graph_io
    from aknet_edge.runtime.recognizer import Recognizer
    from aknet_edge.runtime.sources import ArraySource

    clip_only = tmp_path / "clip_only"
    clip_only.mkdir()
    package = pk.load(PACKAGE)
    shutil.copy(PACKAGE / "model.fp32.onnx", clip_only)
    m = package.manifest
    pk.write(clip_only, m.replace(io={graph_io.CLIP: m.io[graph_io.CLIP]},
                                  variants=tuple(v for v in m.variants if v.role == graph_io.CLIP)))
    repo = tr.write_triton_repo(clip_only, tmp_path / "repo", instance_kind="cpu", threads=1)
    assert set(repo.models) == {tr.CLIP_MODEL} and tr.mode_unavailable(tr.STREAM_MODEL) in repo.notes[0]
    srv = triton_server.TritonServer(tmp_path / "repo", tmp_path)
    try:
        srv.start()
    except RuntimeError as exc:
        pytest.skip(f"tritonserver did not start here: {exc}")
    try:
        frames = _footage(8, 45)
        remote = _results(Recognizer(clip_only, ArraySource(frames, color="BGR"), backend="triton",
                                     triton_url=srv.grpc_url))
        local = _results(Recognizer(clip_only, ArraySource(frames, color="BGR"), incremental=False))
        assert len(remote) == len(local) > 0
        for (t1, l1, c1, _), (t2, l2, c2, _) in zip(remote, local):
            assert t1 == t2 and l1 == l2 and abs(c1 - c2) < 1e-3
    finally:
        srv.stop()
