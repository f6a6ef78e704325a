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
# the repository's sequence idle limit in these tests: longer than any pause between two steps of a test (local
# reference runs included) on a busy runner, short enough to wait out where a test needs the server to drop one
IDLE_S = 4.0
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
    # incremental=True (--incremental) names the server's per-frame streaming: the same results, not an error
    assert _results(Recognizer(PACKAGE, ArraySource(frames, color="BGR"), incremental=True, **remote)) == want
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
    assert snap.skipped_windows > 0  # the windows the outage cost are counted, as in whole-clip mode


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


def _other_weights(dst: Path) -> Path:
    """A copy of the test package with other weights in its whole-clip graph (its manifest records the new hash):
    the same labels, preprocessing, inputs and outputs -- another model."""
    import onnx
    from onnx import numpy_helper

    shutil.copytree(PACKAGE, dst)
    model = onnx.load(str(dst / "model.fp32.onnx"))
    init = next(i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and i.dims)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.01), init.name))
    onnx.save(model, str(dst / "model.fp32.onnx"))
    m = pk.read_manifest(dst)
    pk.write(dst, m.replace(variants=tuple(pk.Variant.of_file(dst, v.file, v.precision, v.kind, v.role)
                                           if v.file == "model.fp32.onnx" else v for v in m.variants)))
    return dst


def test_the_client_refuses_a_repository_written_from_another_package(server, package, tmp_path):
    other = pk.load(_other_weights(tmp_path / "same-labels-other-weights"))
    for client in (tc.TritonStream, tc.TritonClip):
        with pytest.raises(tc.TritonModelMismatchError, match=r"written from another package.*package-0.2.0.*"
                                                              r"same-labels-other-weights"):
            client(other, server.grpc_url).connect()


@needs_wiring
def test_the_package_finished_for_the_server_is_the_same_model(server, tmp_path, capsys):
    """README's server recipe: build --from PKG --out PKG_SERVER adds the server's TensorRT engine and rewrites the
    manifest (engine, command, batch profile); a repository written from either serves the other: the identity is
    the model's (triton_contract.model_sha256), not the manifest file's. Other weights are one error line."""
    from aknet_edge import run
    from aknet_edge import triton_contract
    from aknet_edge.cli_common import run_cli

    finished = tmp_path / "pkg_server"
    shutil.copytree(PACKAGE, finished)
    (finished / "model.fp16.plan").write_bytes(b"an engine for the server's TensorRT and GPU")
    m = pk.read_manifest(finished)
    engine = pk.Variant.of_file(finished, "model.fp16.plan", "fp16", "tensorrt", engine=pk.EngineInfo("10.3.0", "L4"))
    pk.write(finished, m.replace(variants=m.variants + (engine,), command="python -m aknet_edge.build --from pkg",
                                 build=dataclasses.replace(m.build, batch=(1, 4, 8))))
    assert pk.sha256_file(finished / pk.MANIFEST) != pk.sha256_file(PACKAGE / pk.MANIFEST)
    assert triton_contract.model_sha256(pk.load(finished).manifest) == triton_contract.model_sha256(
        pk.load(PACKAGE).manifest)
    for client in (tc.TritonStream, tc.TritonClip):
        client(pk.load(finished), server.grpc_url).connect().close()
    other = _other_weights(tmp_path / "other")
    assert run_cli(run.main, ["--package", str(other), "--backend", "triton", "--triton-url", server.grpc_url,
                              "synthetic://?speed=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: Triton model aknet_stream") and "written from another package" in err[-1]
    assert "package-0.2.0 (model sha256" in err[-1] and "other (model sha256" in err[-1]


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
    # the library's recognisers: a ConfigError before any connection (the URL here answers nothing)
    from aknet_edge.runtime.recognizer import Recognizer
    from aknet_edge.runtime.sources import ArraySource

    dead = f"127.0.0.1:{triton_server.free_port()}"
    for bad in (dict(triton_sequence_base=2 ** 64), dict(triton_sequence_base=0), dict(triton_camera=-1),
                dict(triton_camera=tc.MAX_CAMERAS)):
        with pytest.raises(ConfigError, match="expected a whole number"):
            Recognizer(PACKAGE, ArraySource(_footage(0, 3)), backend="triton", triton_url=dead, **bad).start()
    # every id the client sends fits 64 bits: the largest base with cameras numbered past the base's room
    # (tracks come and go over a long run) -- no error mid-run, distinct ids
    stream = tc.TritonStream(pk.load(PACKAGE), dead, sequence_base=tc.MAX_CORRID - tc.MAX_CAMERAS)
    ids = [stream.corrid(c) for c in (0, tc.MAX_CAMERAS - 1, tc.MAX_CAMERAS, 10 * tc.MAX_CAMERAS + 3)]
    assert ids[:2] == [tc.MAX_CORRID - tc.MAX_CAMERAS, tc.MAX_CORRID - 1] and len(set(ids)) == 4
    assert all(1 <= i <= tc.MAX_CORRID for i in ids)
    stream.close()


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
        _refuses_streaming_in_the_writers_words(clip_only, srv.grpc_url)
    finally:
        srv.stop()


def _refuses_streaming_in_the_writers_words(package_dir, url) -> None:
    """Per-frame streaming asked of a repository without aknet_stream: the writer's note, word for word, from the
    library (ConfigError) and the run CLI (one error line, exit 2), before any source opens."""
    import subprocess

    from aknet_edge.errors import ConfigError
    from aknet_edge.runtime.recognizer import Recognizer
    from aknet_edge.runtime.sources import ArraySource

    words = tr.mode_unavailable(tr.STREAM_MODEL)
    with pytest.raises(ConfigError) as err:
        Recognizer(package_dir, ArraySource(_footage(1, 5), color="BGR"), backend="triton", triton_url=url,
                   incremental=True).start()
    assert str(err.value) == words
    cmd = [sys.executable, "-m", "aknet_edge.run", "--package", str(package_dir), "--backend", "triton",
           "--triton-url", url, "--incremental", "synthetic://?seed=1&speed=0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1] == f"error: {words}", proc.stderr


@needs_wiring
def test_a_tsm_package_without_keypoints_or_split_graphs_is_served(tmp_path):
    """The TSM baseline (logits only, no split graphs): build --triton-repo writes aknet_clip only and says why;
    --backend triton runs its whole clips (the default and --no-incremental), equal to local ONNX Runtime, with
    no keypoints; per-frame streaming is refused in the writer's words."""
    pytest.importorskip("torch", reason="building the TSM package exports it with torch")
    from aknet_edge import build
    from aknet_edge.config import WEIGHTS_DIR
    from aknet_edge.runtime.recognizer import Recognizer
    from aknet_edge.runtime.sources import ArraySource

    pkg, repo = tmp_path / "tsm", tmp_path / "repo"
    assert build.main(["--checkpoint", str(WEIGHTS_DIR / "demo-tiny-tsm.safetensors"), "--precision", "fp32",
                       "--target", "onnxruntime", "--eval-clips-per-class", "1", "--no-compare", "--no-progress",
                       "--out", str(pkg), "--triton-repo", str(repo)]) == 0
    package = pk.load(pkg)
    assert package.manifest.config.arch == "tsm" and package.io("clip").output_names == ["logits"]
    assert sorted(p.name for p in repo.iterdir()) == [tr.CLIP_MODEL, tr.MARKER]
    srv = triton_server.TritonServer(repo, tmp_path)
    try:
        srv.start()
    except RuntimeError as exc:
        pytest.skip(f"tritonserver did not start here: {exc}")
    try:
        frames = _footage(11, 45)
        local = _results(Recognizer(pkg, ArraySource(frames, color="BGR"), incremental=False, threads=1))
        assert len(local) > 0 and all(not r[3] for r in local)  # no keypoints
        for opts in (dict(), dict(incremental=False)):
            remote = _results(Recognizer(pkg, ArraySource(frames, color="BGR"), backend="triton",
                                         triton_url=srv.grpc_url, **opts))
            assert len(remote) == len(local)
            for (t1, l1, c1, k1), (t2, l2, c2, _) in zip(remote, local):
                assert t1 == t2 and l1 == l2 and abs(c1 - c2) < 1e-3 and not k1
        _refuses_streaming_in_the_writers_words(pkg, srv.grpc_url)
    finally:
        srv.stop()


@needs_wiring
def test_whole_clips_for_more_cameras_than_the_servers_batch_maximum(server):
    """6 cameras in whole-clip mode against aknet_clip's max_batch_size 4: the windows of one step go in requests
    of at most 4 (the server refused a batch of 6 and the run ended), and equal local ONNX Runtime."""
    from aknet_edge.runtime.multistream import MultiRecognizer
    from aknet_edge.runtime.sources import ArraySource

    footage = {f"cam{i}": _footage(20 + i, 40) for i in range(6)}

    def multi(**opts):
        with MultiRecognizer(PACKAGE, {n: ArraySource(f, color="BGR") for n, f in footage.items()},
                             incremental=False, **opts) as rec:
            return sorted((r.stream, r.timestamp, r.label, r.confidence) for r in rec), rec.stats()

    want, _ = multi(threads=1)
    got, snap = multi(backend="triton", triton_url=server.grpc_url)
    assert len(want) >= 12 and len({w[0] for w in want}) == 6 and len(got) == len(want)
    for g, w in zip(got, want):
        assert g[:3] == w[:3] and abs(g[3] - w[3]) < 1e-4
    assert snap.server["requests"] >= len(want) / 4 and snap.server["outages"] == 0


def test_a_server_back_with_another_model_is_not_used(server, package, tmp_path, caplog):
    """After an outage the client checks the served model again: a server restarted on the same address with a
    repository written from another package (same labels, inputs and outputs) is refused (one error naming both,
    logged once; the client stays lost and keeps retrying), and the right one is used again once it is back."""
    other = _other_weights(tmp_path / "other-package")
    tr.write_triton_repo(other, tmp_path / "other-repo", idle_s=IDLE_S, instance_kind="cpu", threads=1)
    frames = list(np.random.default_rng(12).integers(0, 256, (40, 112, 112, 3), dtype=np.uint8))
    clip = preprocess_clip(frames[:8], package.clip_spec, "BGR")
    stream = tc.TritonStream(package, server.grpc_url, reconnect=_policy(), timeout_s=3.0).connect()
    clips = tc.TritonClip(package, server.grpc_url, reconnect=_policy(), timeout_s=3.0).connect()
    own_repo = server.repo
    try:
        assert stream.step(0, frames[0]) is not None and clips.infer(clip) is not None
        server.kill()
        assert stream.step(0, frames[1]) is None and stream.state == tc.LOST
        with pytest.raises(tc.TritonUnavailableError):
            clips.infer(clip)
        server.repo = tmp_path / "other-repo"
        server.start()
        deadline = time.monotonic() + 4.0
        k = 2
        while time.monotonic() < deadline:  # several probes (0.2 s backoff up to 1 s): all find the other model
            assert stream.step(0, frames[k % 40]) is None
            with pytest.raises(tc.TritonUnavailableError):
                clips.infer(clip)
            k += 1
            time.sleep(0.1)
        assert stream.state == clips.state == tc.LOST
        refused = [r.getMessage() for r in caplog.records if "written from another package" in r.getMessage()]
        assert len(refused) == 2 and all("package-0.2.0" in m and "other-package" in m for m in refused)
        server.kill()
        server.repo = own_repo
        server.start()
        deadline = time.monotonic() + 20.0
        res = None
        while res is None and time.monotonic() < deadline:
            res = stream.step(0, frames[k % 40])
            k += 1
            time.sleep(0.1)
        assert res is not None and stream.state == tc.LIVE
        np.testing.assert_allclose(clips.infer(clip).logits, clips.infer(clip).logits)
        assert clips.state == tc.LIVE and stream.stats().outages == clips.stats().outages == 1
    finally:
        server.kill()
        server.repo = own_repo
        server.start()
        stream.close()
        clips.close()


@needs_wiring
def test_two_recognisers_with_default_options_share_a_server_without_mixing(server):
    """Two devices' recognisers, default options (no sequence base given), one camera each, running at the same
    time against one server: each gets exactly the local carried-state results of its own frames."""
    from aknet_edge.runtime.recognizer import Recognizer
    from aknet_edge.runtime.sources import ArraySource

    footage = [_footage(30 + i) for i in range(2)]
    want = [_results(Recognizer(PACKAGE, ArraySource(f, color="BGR"), backend="onnxruntime",
                                exact_incremental=False, threads=1, overlap=False)) for f in footage]
    got = [None, None]
    stats = [None, None]

    def device(i):
        with Recognizer(PACKAGE, ArraySource(footage[i], color="BGR", speed=1.0), backend="triton",
                        triton_url=server.grpc_url) as rec:
            got[i] = [(r.timestamp, r.label, round(r.confidence, 5), r.keypoints) for r in rec]
            stats[i] = rec.stats().server

    threads = [threading.Thread(target=device, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == want and all(len(w) >= 5 for w in want)
    assert all(s["collisions"] == 0 and s["requests"] > 0 for s in stats)


def test_a_stalled_servers_timeout_is_part_of_the_outage(server, package):
    """A server that stops answering (SIGSTOP) longer than the client's timeout, then resumes: the outage each
    client reports runs from its unanswered request, so the timeout spent noticing the stall is in it."""
    import os
    import signal

    states = []
    kw = dict(reconnect=_policy(), timeout_s=1.0)
    stream = tc.TritonStream(package, server.grpc_url, on_state=lambda s, i: states.append(("stream", s, i)),
                             **kw).connect()
    clips = tc.TritonClip(package, server.grpc_url, on_state=lambda s, i: states.append(("clip", s, i)),
                          **kw).connect()
    frames = list(np.random.default_rng(13).integers(0, 256, (30, 112, 112, 3), dtype=np.uint8))
    clip = preprocess_clip(frames[:8], package.clip_spec, "BGR")
    assert stream.step(0, frames[0]) is not None and clips.infer(clip) is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        assert stream.step(0, frames[1]) is None  # noticed at its 1 s timeout
        clip_sent = time.monotonic()
        with pytest.raises(tc.TritonUnavailableError):
            clips.infer(clip)  # noticed at its 1 s timeout
        assert time.monotonic() - stopped >= 1.9
        while time.monotonic() - stopped < 3.0:
            time.sleep(0.05)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    resumed = time.monotonic()
    k = 2
    while time.monotonic() - resumed < 15 and (stream.state, clips.state) != (tc.LIVE, tc.LIVE):
        stream.step(0, frames[k % 30])
        try:
            clips.infer(clip)
        except tc.TritonUnavailableError:
            pass
        k += 1
    assert (stream.state, clips.state) == (tc.LIVE, tc.LIVE)
    restored = {who: info["outage_s"] for who, s, info in states if s == tc.LIVE}
    # from the request, not from the timeout: about 3.0 and 2.0 s (from the timeouts: about 2.0 and 1.0)
    # (the requests leave a little after the clock readings: preparing them on a busy runner can take a while)
    assert restored["stream"] >= resumed - stopped - 0.5 and restored["clip"] >= resumed - clip_sent - 0.5
    assert stream.stats().outage_s == pytest.approx(restored["stream"], abs=0.01)
    stream.close()
    clips.close()
