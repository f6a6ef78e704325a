"""The model on a Triton Inference Server: the edge keeps capture, sampling, smoothing and events.

Why a client of our own over ``tritonclient``: a Triton server is another machine that may restart, drop a
camera's sequence or go away, and the edge must ride that out like a lost camera instead of stopping.

:class:`TritonStream` drives ``aknet_stream`` (:mod:`aknet_edge.triton_repo`): each grid sample of a camera
goes as one uint8 frame (S x S x 3, resized here exactly as :func:`aknet_edge.preprocess.preprocess_frame`
resizes, in the colour order the repository declares), the camera's correlation id is ``sequence_base +
camera``, and the server keeps the camera's shift state, feature ring and step counter. The client keeps the
last T - 1 frames each camera sent since its sequence started, so that when the server lost the sequence (its
idle timeout, a restart) the client starts it again and replays them: the first result after the restart is
a full window (and equals the whole-clip graph on those T frames), not T samples later.

* ``restart(camera)`` (a grid restart at the edge) sends START with the camera's next frame and forgets its
  history.
* A request refused because the server no longer knows the sequence ("must specify the START flag") restarts
  the sequence (counted in ``sequence_restarts``) and the step goes on.
* A server that cannot be reached (connection refused, reset, deadline) makes the client "lost": steps return
  None at once and keep the frames; the server is probed again with exponential backoff (the cameras'
  :class:`~aknet_edge.runtime.sources.ReconnectPolicy`), and once it answers (with the same model: checked
  again, a server back with another repository stays "lost" with one error logged) every camera's sequence
  restarts with its replay. ``state``, :meth:`stats` and the ``on_state`` callback report it; the outage runs
  from the request that went unanswered, so the timeout that noticed a stalled server is part of it.
* Correlation ids: a random base per client (47 bits above room for 65,536 cameras) unless one is given, so two
  devices sharing a server do not collide by default; one that happens anyway (the server's step count for a
  sequence differs from what this client sent) is one warning naming the id, counted (``collisions``), healed on a
  fresh random id with the camera's replay.

:class:`TritonClip` runs ``aknet_clip`` (whole float32 clips, stateless; a batch beyond the served
``max_batch_size`` goes in several requests) and rides out outages the same way. :class:`TritonBackend` is both
as a :class:`~aknet_edge.runtime.backends.Backend` for the recogniser, in the modes the repository serves.

Before any result, :meth:`TritonStream.connect` checks the served model against the package (input and output
names, types and dims; labels; preprocessing; stream mode; the model's identity,
:func:`aknet_edge.triton_contract.model_sha256`) and names the first mismatch.
"""

from __future__ import annotations

import collections
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from aknet_edge import graph_io
from aknet_edge import package as pk
from aknet_edge import triton_contract as tr
from aknet_edge.errors import AknetError, ConfigError, DependencyError, InputShapeError
from aknet_edge.package import Package

from .backends import Backend, ClipOutput
from .sources.options import ReconnectPolicy

log = logging.getLogger(__name__)

LIVE, LOST = "live", "lost"
_START_REQUIRED = "must specify the START flag"
# gRPC status codes that mean "the server is not there (now)", not "the request is wrong"
_UNREACHABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN", "ABORTED", "INTERNAL")


MAX_CORRID = (1 << 64) - 1  # Triton's correlation ids are unsigned 64-bit (0: no sequence)
MAX_CAMERAS = 1 << 16  # lanes one client may number from its base


def _random_base() -> int:
    """A fresh sequence base: 47 random bits above room for 65536 cameras (two devices sharing a server collide
    with probability about 2^-47 per pair, instead of always with a fixed default)."""
    return (secrets.randbits(47) << 16) | 1


def check_sequence_base(base: Optional[int]) -> int:
    """``base`` checked against Triton's 64-bit ids (None: a random one for this run)."""
    if base is None:
        return _random_base()
    if isinstance(base, bool) or not isinstance(base, (int, np.integer)) or not 1 <= int(base) <= MAX_CORRID - \
            MAX_CAMERAS:
        raise ConfigError(f"triton sequence base {base!r}: expected a whole number from 1 to {MAX_CORRID - MAX_CAMERAS}"
                          " (Triton's correlation ids are 64-bit and 0 means none), or none for a random one per run")
    return int(base)


class TritonError(AknetError, RuntimeError):
    """The Triton server refused a request for a reason retrying will not fix."""


class TritonUnavailableError(TritonError, ConnectionError):
    """The Triton server cannot be reached (at start: the CLI's error exit 2)."""


class TritonModelMismatchError(TritonError, ConfigError):
    """The served model is not the package's model (names, types, dims, labels or preprocessing differ)."""


def _grpc() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as exc:
        raise DependencyError("the triton backend needs tritonclient: pip install 'tritonclient[grpc]' (or the "
                              "aknet-edge[triton] extra)") from exc
    return grpcclient


def parse_url(url: str) -> str:
    """``HOST:PORT`` of Triton's gRPC endpoint (a ``grpc://`` prefix is accepted); anything else is an error."""
    text = str(url).strip()
    if text.startswith("grpc://"):
        text = text[len("grpc://"):]
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in text:
        raise ConfigError(f"--triton-url {url!r}: expected HOST:PORT of Triton's gRPC endpoint (e.g. "
                          "127.0.0.1:8001)")
    return text


def _status(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    try:
        return str(status() if callable(status) else status or "").replace("StatusCode.", "")
    except Exception:  # pragma: no cover - defensive
        return ""


def _message(exc: BaseException) -> str:
    msg = getattr(exc, "message", None)
    try:
        return str(msg() if callable(msg) else msg or exc)
    except Exception:  # pragma: no cover - defensive
        return str(exc)


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    return _status(exc) in _UNREACHABLE and _START_REQUIRED not in _message(exc)


def resize_like_preprocess(frame: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (size, size, 3) with the interpolation :func:`preprocess_frame` uses.

    The server does the rest of the preprocessing; resizing here keeps the request small (37.6 kB at 112).
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputShapeError(f"expected a uint8 colour frame of shape (H, W, 3), got {frame.dtype} {frame.shape}")
    if frame.shape[:2] == (size, size):
        return frame
    import cv2

    interp = cv2.INTER_AREA if min(frame.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(frame, (size, size), interpolation=interp)


@dataclass
class TritonStats:
    """Counters of one client (read with :meth:`TritonStream.stats`)."""

    state: str = LIVE
    requests: int = 0  # inference requests answered
    sequence_restarts: int = 0  # sequences the server had lost (idle timeout, restart), started again
    replayed: int = 0  # frames sent again after such restarts
    outages: int = 0  # times the server became unreachable
    outage_s: float = 0.0  # total time unreachable (the current outage included)
    skipped: int = 0  # steps that got no result because the server was unreachable
    collisions: int = 0  # sequences another client fed too (its step count ran ahead of ours): moved to a new id
    bytes_sent: int = 0  # tensor payload sent (frames or clips)
    bytes_received: int = 0  # tensor payload received (logits, keypoints, scores, steps, corrid)

    def to_dict(self) -> Dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class StreamStep:
    """One camera's answer to one frame: the window's scores once the server holds T frames of the sequence."""

    camera: int
    steps: int  # frames in the server's sequence, this one included
    output: Optional[ClipOutput]  # batch 1; None until the window is full
    restarted: bool = False  # the server had lost the sequence; it was restarted (and replayed) for this step


@dataclass
class _Camera:
    history: Deque[np.ndarray]
    start: bool = True  # the next request starts the sequence
    corrid: int = 0  # its correlation id on the server
    sent: int = 0  # frames this client sent in the current sequence (the server's step count must equal it)


class _Client:
    """Connection, health, backoff and the model checks shared by the stream and clip clients."""

    model = ""

    def __init__(self, package: Package, url: str, model: Optional[str] = None, timeout_s: float = 5.0,
                 reconnect: Optional[ReconnectPolicy] = None,
                 on_state: Optional[Callable[[str, Dict[str, Any]], None]] = None) -> None:
        self.grpc = _grpc()
        self.package = package
        self.url = parse_url(url)
        self.model = model or self.model
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s < 1e6:
            raise ConfigError(f"timeout_s={timeout_s!r}: expected a finite number of seconds > 0")
        self.timeout_s = float(timeout_s)
        self.reconnect = reconnect or ReconnectPolicy()
        self.on_state = on_state
        self._stats = TritonStats()
        self._lock = threading.Lock()
        self._attempt = 0
        self._next_try = 0.0
        self._lost_at = 0.0
        self._refused = ""  # the last mismatch a restored server was refused for (logged once)
        self.config: Dict[str, Any] = {}
        self.client = self.grpc.InferenceServerClient(self.url)

    # -- health
    @property
    def state(self) -> str:
        return self._stats.state

    def stats(self) -> TritonStats:
        with self._lock:
            s = TritonStats(**self._stats.__dict__)
        if s.state == LOST:
            s.outage_s += time.monotonic() - self._lost_at
        return s

    def _ready(self) -> Optional[str]:
        """None when the server and the model are ready; else why not."""
        try:
            if not self.client.is_server_ready(client_timeout=self.timeout_s):
                return "the server is not ready"
            if not self.client.is_model_ready(self.model, client_timeout=self.timeout_s):
                return f"model {self.model} is not ready (not in the server's repository, or failed to load)"
        except Exception as exc:  # tritonclient wraps gRPC errors in InferenceServerException
            return f"{_status(exc) or type(exc).__name__}: {_message(exc)}"
        return None

    def connect(self) -> "_Client":
        """Check the server and the model against the package, before any result."""
        why = self._ready()
        if why is not None:
            raise TritonUnavailableError(f"cannot use Triton at {self.url}: {why}; start the server (README: "
                                         "Serving with Triton) or fix --triton-url")
        self._read_config()
        return self

    def _read_config(self) -> None:
        """Read the served model's config and check it against the package (at connect, and again whenever the
        server comes back: a restarted server may serve another repository)."""
        try:
            self.config = self.client.get_model_config(self.model, as_json=True,
                                                       client_timeout=self.timeout_s)["config"]
        except Exception as exc:
            raise TritonUnavailableError(f"cannot read model {self.model}'s config from Triton at {self.url}: "
                                         f"{_message(exc)}") from None
        try:
            self._check_config()
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # not a config aknet_edge wrote
            if isinstance(exc, AknetError):
                raise
            raise self._mismatch("its config is not one aknet_edge.triton_repo writes", f"{type(exc).__name__}: "
                                 f"{exc}", "a repository written by build --triton-repo") from None

    def _mismatch(self, what: str, server: Any, package: Any) -> TritonModelMismatchError:
        return TritonModelMismatchError(
            f"Triton model {self.model} at {self.url} does not match the package {self.package.root}: {what} "
            f"(server: {server}; package: {package}); write the repository from this package (python -m "
            "aknet_edge.build --from PACKAGE --triton-repo DIR) and restart the server, or run the package the "
            "server was written from")

    def _param(self, key: str) -> Optional[str]:
        p = self.config.get("parameters", {}).get(key)
        return None if p is None else p.get("string_value")

    def _check_tensors(self, kind: str, have: Sequence[Dict[str, Any]],
                       want: Sequence[Tuple[str, str, Tuple[int, ...]]]) -> None:
        got = {t["name"]: (t.get("data_type", ""), tuple(int(d) for d in t.get("dims", []))) for t in have}
        names = [n for n, _, _ in want]
        if sorted(got) != sorted(names):
            raise self._mismatch(f"{kind} names differ", sorted(got), sorted(names))
        for name, dtype, dims in want:
            if got[name] != (tr.TRITON_DTYPES[dtype], tuple(dims)):
                raise self._mismatch(f"{kind} {name} differs", f"{got[name][0]} {list(got[name][1])}",
                                     f"{tr.TRITON_DTYPES[dtype]} {list(dims)}")

    def _check_common(self) -> None:
        labels = self._param(tr.PARAM_LABELS)
        if labels is None or json.loads(labels) != self.package.labels:
            raise self._mismatch("labels differ", labels, json.dumps(self.package.labels))
        pre = self._param(tr.PARAM_PREPROCESSING)
        want = self.package.manifest.preprocessing.to_dict()
        if pre is None or json.loads(pre) != json.loads(json.dumps(want)):
            raise self._mismatch("preprocessing differs", pre, json.dumps(want, sort_keys=True))
        # then the model itself: the same labels and inputs are not enough (another checkpoint, other weights);
        # its identity (triton_contract.model_sha256) is the same for a package finished for the server (engine)
        sha, mine, what = self._param(tr.PARAM_MODEL), tr.model_sha256(self.package.manifest), "model"
        if sha is None and self._param(tr.PARAM_MANIFEST) is not None:  # a repository written before model_sha256
            sha, mine, what = self._param(tr.PARAM_MANIFEST), pk.sha256_file(self.package.root / tr.MANIFEST_FILE), \
                "manifest"
        if sha != mine:
            raise self._mismatch("it was written from another package", f"{self._param(tr.PARAM_PACKAGE) or '?'} "
                                 f"({what} sha256 {(sha or 'none recorded')[:16]})",
                                 f"{self.package.root.name} ({what} sha256 {mine[:16]})")

    def _check_config(self) -> None:
        raise NotImplementedError

    # -- outages
    def _lost(self, exc: BaseException, since: Optional[float] = None) -> None:
        """The server failed a request; ``since``: when that request went out (a stalled server is noticed only at
        its timeout, and that wait belongs to the outage)."""
        now = time.monotonic()
        with self._lock:
            if self._stats.state == LOST:
                self._attempt += 1
                self._next_try = now + self.reconnect.delay(self._attempt)
                return
            self._stats.state, self._stats.outages = LOST, self._stats.outages + 1
            self._lost_at, self._attempt = (now if since is None else min(since, now)), 1
            self._next_try = now + self.reconnect.delay(1)
        log.warning("Triton at %s unreachable (%s: %s); retrying with backoff, recognition goes on without results",
                    self.url, _status(exc) or type(exc).__name__, _message(exc).splitlines()[0][:200])
        self._forget_sequences()
        if self.on_state is not None:
            self.on_state(LOST, {"url": self.url, "reason": _message(exc).splitlines()[0][:200]})

    def _try_restore(self) -> bool:
        """While lost: probe the server when the backoff allows; True once it answers again."""
        if self._stats.state == LIVE:
            return True
        now = time.monotonic()
        if now < self._next_try:
            return False
        why = self._ready()
        if why is None:
            try:  # the same model as at connect? (the server may have come back with another repository)
                self._read_config()
            except TritonModelMismatchError as exc:
                if str(exc) != self._refused:
                    self._refused = str(exc)
                    log.error("%s; still treated as lost (retrying with backoff)", exc)
                why = "it serves another model"
            except TritonUnavailableError as exc:
                why = str(exc)
        if why is not None:
            with self._lock:
                self._attempt += 1
                self._next_try = time.monotonic() + self.reconnect.delay(self._attempt)
            log.debug("Triton at %s still unreachable: %s", self.url, why)
            return False
        self._refused = ""
        outage = time.monotonic() - self._lost_at
        with self._lock:
            self._stats.state = LIVE
            self._stats.outage_s += outage
        log.info("Triton at %s is back after %.1f s", self.url, outage)
        if self.on_state is not None:
            self.on_state(LIVE, {"url": self.url, "outage_s": round(outage, 3)})
        return True

    def _forget_sequences(self) -> None:
        pass

    def close(self) -> None:
        try:
            self.client.close()
        except Exception as exc:  # pragma: no cover - closing a dead channel
            log.debug("closing the Triton client: %s", exc)

    def __enter__(self) -> "_Client":
        return self.connect()

    def __exit__(self, *exc: Any) -> None:
        self.close()


class TritonStream(_Client):
    """Per-camera streaming through ``aknet_stream``: one uint8 frame per grid sample, state on the server."""

    model = tr.STREAM_MODEL

    def __init__(self, package: Package, url: str, model: Optional[str] = None, sequence_base: Optional[int] = None,
                 replay: bool = True, **kwargs: Any) -> None:
        super().__init__(package, url, model, **kwargs)
        self.sequence_base = check_sequence_base(sequence_base)
        self.replay = replay
        spec = package.clip_spec
        self.frames, self.size = spec.frames, spec.size
        self.color = "BGR"
        self._cameras: Dict[int, _Camera] = {}
        head = package.io(graph_io.CLIP_HEAD)
        if head is None:
            raise TritonModelMismatchError(f"{package.root}: {tr.mode_unavailable(tr.STREAM_MODEL)}")
        self._outputs = [t.name for t in head.outputs]
        self._head = head

    def _check_config(self) -> None:
        cfg = self.config
        self._check_tensors("input", cfg.get("input", []), [(tr.IMAGE_INPUT, "uint8", (self.size, self.size, 3))])
        want = [(t.name, t.dtype, t.static_shape) for t in self._head.outputs]
        want += [(tr.STEPS_OUTPUT, "int64", (1,)), (tr.CORRID_OUTPUT, "uint64", (1,))]
        self._check_tensors("output", cfg.get("output", []), want)
        self._check_common()
        mode = self._param(tr.PARAM_MODE)
        if mode != tr.STREAM_MODE:
            raise self._mismatch("stream mode differs", mode, tr.STREAM_MODE)
        color = self._param(tr.PARAM_COLOR)
        if color not in tr.COLORS:
            raise self._mismatch("input colour order", color, " or ".join(tr.COLORS))
        if color != self.color:  # a server back with the repository rewritten for the other order: the replays too
            for cam in self._cameras.values():
                cam.history = collections.deque((np.ascontiguousarray(f[:, :, ::-1]) for f in cam.history),
                                                maxlen=cam.history.maxlen)
        self.color = color
        if "sequence_batching" not in cfg:
            raise self._mismatch("no sequence batcher", "none", "sequence_batching with implicit state")

    def corrid(self, camera: int) -> int:
        """The camera's correlation id: the base + the camera below :data:`MAX_CAMERAS` (the base leaves room for
        them, so the id fits Triton's 64 bits); a camera numbered beyond (tracks come and go over a long run) gets
        a random id of its own instead of an error mid-run."""
        cam = self._camera(camera)
        if not cam.corrid:
            camera = int(camera)
            cam.corrid = self.sequence_base + camera if camera < MAX_CAMERAS else \
                _random_base() + camera % MAX_CAMERAS
        return cam.corrid

    def restart(self, camera: int = 0) -> None:
        """The camera's next frame starts a new sequence (a grid restart at the edge): its history is dropped."""
        cam = self._camera(camera)
        cam.history.clear()
        cam.start = True

    def _camera(self, camera: int) -> _Camera:
        cam = self._cameras.get(camera)
        if cam is None:
            if isinstance(camera, bool) or not isinstance(camera, (int, np.integer)) or camera < 0:
                raise ConfigError(f"camera={camera!r}: expected a whole number >= 0")
            cam = self._cameras[int(camera)] = _Camera(collections.deque(maxlen=max(0, self.frames - 1)))
        return cam

    def _forget_sequences(self) -> None:
        for cam in self._cameras.values():
            cam.start = True  # the server's state is gone or stale: start again (with the replay)

    def prepare(self, image: np.ndarray, color: str = "BGR") -> np.ndarray:
        """A captured frame -> the uint8 (S, S, 3) the server takes (resized, in the repository's colour order)."""
        x = resize_like_preprocess(image, self.size)
        if color not in tr.COLORS:
            raise ConfigError(f"color={color!r}: expected one of {', '.join(tr.COLORS)}")
        return np.ascontiguousarray(x[:, :, ::-1] if color != self.color else x)

    # -- requests
    def _request(self, camera: int, frame: np.ndarray, start: bool) -> Tuple[List[Any], List[Any], Dict[str, Any]]:
        g = self.grpc
        inp = g.InferInput(tr.IMAGE_INPUT, [1, self.size, self.size, 3], "UINT8")
        inp.set_data_from_numpy(frame[None])
        outs = [g.InferRequestedOutput(n) for n in self._outputs + [tr.STEPS_OUTPUT, tr.CORRID_OUTPUT]]
        return [inp], outs, dict(sequence_id=self.corrid(camera), sequence_start=start, client_timeout=self.timeout_s)

    def _answer(self, camera: int, result: Any, restarted: bool) -> StreamStep:
        arrays = {n: result.as_numpy(n) for n in self._outputs + [tr.STEPS_OUTPUT, tr.CORRID_OUTPUT]}
        corrid = int(arrays[tr.CORRID_OUTPUT].reshape(-1)[0])
        if corrid != self.corrid(camera):
            raise TritonError(f"Triton answered camera {camera}'s request as sequence {corrid}, not "
                              f"{self.corrid(camera)}: another client uses the same correlation ids? give each "
                              "edge device its own sequence base")
        steps = int(arrays[tr.STEPS_OUTPUT].reshape(-1)[0])
        with self._lock:
            self._stats.requests += 1
            self._stats.bytes_received += sum(a.nbytes for a in arrays.values())
        cam = self._camera(camera)
        if steps != cam.sent:  # another client feeds (or restarted) this sequence: its frames are mixed with ours
            self._collision(camera, cam, steps)
            return StreamStep(camera, steps, None, restarted)
        out = Backend._outputs(arrays) if steps >= self.frames else None
        return StreamStep(camera, steps, out, restarted)

    def _collision(self, camera: int, cam: _Camera, steps: int) -> None:
        """Detected: the server counted ``steps`` frames in a sequence this client sent ``cam.sent`` to. The camera
        moves to a fresh random correlation id and starts again (with its replay); the window's scores are dropped."""
        old = cam.corrid
        cam.corrid = _random_base() + int(camera) % MAX_CAMERAS
        cam.start = True
        with self._lock:
            self._stats.collisions += 1
        log.warning("Triton sequence %d (camera %d) was fed by another client too (the server counted %d frames, "
                    "this client sent %d); moved to sequence %d. Two devices sharing a server must not share "
                    "correlation ids: leave --triton-sequence-base unset (random per run) or give each its own",
                    old, camera, steps, cam.sent, cam.corrid)

    def _send(self, camera: int, frame: np.ndarray, start: bool) -> Any:
        inputs, outputs, kw = self._request(camera, frame, start)
        with self._lock:
            self._stats.bytes_sent += frame.nbytes
        cam = self._camera(camera)
        cam.sent = 1 if start else cam.sent + 1
        return self.client.infer(self.model, inputs, outputs=outputs, **kw)

    def _start_sequence(self, camera: int, frame: np.ndarray, dropped: bool) -> Any:
        """START (with the replayed history when ``replay``) then this frame; the last answer."""
        cam = self._camera(camera)
        history = list(cam.history) if self.replay else []
        if not self.replay:
            cam.history.clear()
        frames = history + [frame]
        result = None
        for i, f in enumerate(frames):
            result = self._send(camera, f, start=(i == 0))
        cam.start = False
        with self._lock:
            self._stats.replayed += len(history)
            self._stats.sequence_restarts += int(dropped)
        return result

    def step(self, camera: int, image: np.ndarray, color: str = "BGR") -> Optional[StreamStep]:
        """Send one camera's next grid sample; its window's scores once full, or None while the server is lost."""
        return self.step_many([(camera, image, color)])[0]

    def step_many(self, items: Sequence[Tuple[int, np.ndarray, str]]) -> List[Optional[StreamStep]]:
        """One sample each for several cameras, sent together so the server batches them (one per camera)."""
        cams = [int(c) for c, _, _ in items]
        if len(set(cams)) != len(cams):
            raise ConfigError(f"step_many: one frame per camera per call, got cameras {cams}")
        frames = [self.prepare(img, color) for _, img, color in items]
        if not self._try_restore():
            with self._lock:
                self._stats.skipped += len(items)
            for c, f in zip(cams, frames):
                self._camera(c).history.append(f)
            return [None] * len(items)
        results: List[Optional[StreamStep]] = [None] * len(items)
        sent_at = time.monotonic()
        try:
            pending = self._send_all(cams, frames)
            for i, (c, f) in enumerate(zip(cams, frames)):
                res, exc = pending[i]
                restarted = False
                if exc is not None:
                    if _START_REQUIRED not in _message(exc):
                        raise exc
                    log.info("Triton dropped camera %d's sequence %d (idle timeout or restart); starting it again "
                             "with %d replayed frames", c, self.corrid(c), len(self._camera(c).history))
                    res, restarted = self._start_sequence(c, f, dropped=True), True
                elif res is None:  # a START this step: sent (and replayed) one by one, in order
                    res = self._start_sequence(c, f, dropped=False)
                results[i] = self._answer(c, res, restarted)
                self._camera(c).history.append(f)
        except Exception as exc:
            if not _unreachable(exc):
                if isinstance(exc, AknetError):
                    raise
                raise TritonError(f"Triton at {self.url} refused {self.model}'s request: {_message(exc)}") from None
            self._lost(exc, since=sent_at)
            with self._lock:
                self._stats.skipped += sum(r is None for r in results)
            for (c, f), r in zip(zip(cams, frames), results):
                if r is None:
                    self._camera(c).history.append(f)
        return results

    def _send_all(self, cams: List[int], frames: List[np.ndarray]) -> List[Tuple[Any, Optional[BaseException]]]:
        """Send the cameras' frames concurrently (async gRPC); a camera whose sequence must start is left for
        :meth:`_start_sequence` (its replay must arrive in order)."""
        out: List[Tuple[Any, Optional[BaseException]]] = [(None, None)] * len(cams)
        done = threading.Semaphore(0)
        sent = []
        for i, (c, f) in enumerate(zip(cams, frames)):
            if self._camera(c).start:
                continue
            inputs, outputs, kw = self._request(c, f, start=False)

            def callback(result: Any, error: Any, i: int = i) -> None:
                out[i] = (result, error)
                done.release()

            with self._lock:
                self._stats.bytes_sent += f.nbytes
            self._camera(c).sent += 1
            self.client.async_infer(self.model, inputs, callback, outputs=outputs, **kw)
            sent.append(i)
        deadline = time.monotonic() + self.timeout_s + 1.0
        for _ in sent:
            if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"no answer from Triton at {self.url} within {self.timeout_s:.1f} s")
        for i in sent:
            err = out[i][1]
            if err is not None and _unreachable(err):
                raise err
        return out


class TritonClip(_Client):
    """Whole float32 clips through ``aknet_clip`` (stateless; the server batches concurrent requests)."""

    model = tr.CLIP_MODEL

    def _check_config(self) -> None:
        io = self.package.io(graph_io.CLIP)
        assert io is not None
        self._check_tensors("input", self.config.get("input", []),
                            [(t.name, t.dtype, t.static_shape) for t in io.inputs])
        self._check_tensors("output", self.config.get("output", []),
                            [(t.name, t.dtype, t.static_shape) for t in io.outputs])
        self._check_common()
        batch = self.config.get("max_batch_size", 0)
        if not isinstance(batch, int) or batch < 1:  # 0: no batch axis, which the package's graphs always have
            raise self._mismatch("max_batch_size", batch, "1 or more (the writer writes the build's batch maximum)")
        self.max_batch = batch
        self._output_names = io.output_names

    def infer(self, clip: np.ndarray) -> ClipOutput:
        """(B, T, 3, S, S) or (T, 3, S, S) float32 -> ClipOutput; raises :class:`TritonUnavailableError` while the
        server is lost.

        B may exceed the served ``max_batch_size`` (more cameras than the build's batch maximum): the clips go
        in requests of at most that many, sent together (the server's dynamic batcher and instances take them).
        """
        if not self._try_restore():
            raise TritonUnavailableError(f"Triton at {self.url} is unreachable (retrying with backoff)")
        clip = np.ascontiguousarray(clip, dtype=np.float32)
        if clip.ndim == 4:  # one clip (T, 3, S, S)
            clip = clip[None]
        sent_at = time.monotonic()
        try:
            parts = self._infer_parts([clip[i:i + self.max_batch] for i in range(0, len(clip), self.max_batch)])
        except Exception as exc:
            if _unreachable(exc):
                self._lost(exc, since=sent_at)
                raise TritonUnavailableError(f"Triton at {self.url} became unreachable: {_message(exc)}") from None
            raise TritonError(f"Triton at {self.url} refused {self.model}'s request: {_message(exc)}") from None
        arrays = {n: np.concatenate([p[n] for p in parts]) if len(parts) > 1 else parts[0][n]
                  for n in self._output_names}
        with self._lock:
            self._stats.requests += len(parts)
            self._stats.bytes_sent += clip.nbytes
            self._stats.bytes_received += sum(a.nbytes for a in arrays.values())
        return Backend._outputs(arrays)

    def _infer_parts(self, parts: List[np.ndarray]) -> List[Dict[str, np.ndarray]]:
        """One request per part (concurrent when several); each part's outputs, in order."""
        g = self.grpc

        def request(part: np.ndarray) -> Tuple[List[Any], List[Any]]:
            inp = g.InferInput(graph_io.CLIP_INPUT, list(part.shape), "FP32")
            inp.set_data_from_numpy(part)
            return [inp], [g.InferRequestedOutput(n) for n in self._output_names]

        def arrays(res: Any) -> Dict[str, np.ndarray]:
            return {n: res.as_numpy(n) for n in self._output_names}

        if len(parts) == 1:
            inputs, outputs = request(parts[0])
            return [arrays(self.client.infer(self.model, inputs, outputs=outputs, client_timeout=self.timeout_s))]
        out: List[Tuple[Any, Any]] = [(None, None)] * len(parts)
        done = threading.Semaphore(0)
        for i, part in enumerate(parts):
            inputs, outputs = request(part)

            def callback(result: Any, error: Any, i: int = i) -> None:
                out[i] = (result, error)
                done.release()

            self.client.async_infer(self.model, inputs, callback, outputs=outputs, client_timeout=self.timeout_s)
        deadline = time.monotonic() + self.timeout_s + 1.0
        for _ in parts:
            if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"no answer from Triton at {self.url} within {self.timeout_s:.1f} s")
        errors = [e for _, e in out if e is not None]
        if errors:
            raise next((e for e in errors if _unreachable(e)), errors[0])
        return [arrays(r) for r, _ in out]


class TritonBackend(Backend):
    """The recogniser's backend for a Triton server.

    ``streams_frames``: the recogniser sends each grid sample's uint8 frame with :meth:`step` (server-side
    carried-state streaming, ``aknet_stream``) and calls :meth:`restart` on a grid restart; whole clips
    (``incremental=False``) go to ``aknet_clip`` through :meth:`infer_clip` when the server has it.
    """

    name = "triton"
    streams_frames = True  # per instance: False when the repository has no aknet_stream
    remote = True
    options = ("url", "camera", "sequence_base", "timeout_s", "reconnect", "on_state")

    def __init__(self, package: Package, url: str, camera: int = 0, sequence_base: Optional[int] = None,
                 timeout_s: float = 5.0, reconnect: Optional[ReconnectPolicy] = None,
                 on_state: Optional[Callable[[str, Dict[str, Any]], None]] = None) -> None:
        super().__init__(package, "fp32")
        if isinstance(camera, bool) or not isinstance(camera, (int, np.integer)) or not 0 <= camera < MAX_CAMERAS:
            raise ConfigError(f"triton camera {camera!r}: expected a whole number from 0 to {MAX_CAMERAS - 1}")
        self.camera = int(camera)
        sequence_base = check_sequence_base(sequence_base)  # bad input is refused whichever models are served
        kw: Dict[str, Any] = dict(timeout_s=timeout_s, reconnect=reconnect, on_state=on_state)
        self.stream: Optional[TritonStream] = None
        self.clip: Optional[TritonClip] = None
        why: List[str] = []
        if package.io(graph_io.CLIP_HEAD) is None:  # no split graphs: the writer left aknet_stream out too
            why.append(f"{package.root}: {tr.mode_unavailable(tr.STREAM_MODEL)}")
        else:
            try:
                self.stream = TritonStream(package, url, sequence_base=sequence_base, **kw).connect()
            except TritonUnavailableError as exc:  # a clip-only repository (or none at all: raised below)
                why.append(str(exc))
        try:
            self.clip = TritonClip(package, url, **kw).connect()
        except TritonUnavailableError as exc:
            why.append(str(exc))
        if self.stream is None and self.clip is None:  # a server down says so once, not once per model
            raise TritonUnavailableError("; ".join(dict.fromkeys(why)))
        self.streams_frames = self.stream is not None
        self.whole_clips = self.clip is not None
        if self.stream is None:
            log.info("Triton at %s: %s", url, tr.mode_unavailable(tr.STREAM_MODEL))
        if self.clip is None:
            log.info("Triton at %s: %s", url, tr.mode_unavailable(tr.CLIP_MODEL))
        self.has_split = False  # the split graphs run on the server, inside aknet_stream
        # the client in use (its state and counters are the backend's): the stream until whole clips run
        self._active: _Client = self.stream or self.clip  # type: ignore[assignment]

    @property
    def state(self) -> str:
        return self._active.state

    def stats(self) -> TritonStats:
        """The counters of the client in use: the stream's, or the clip's once whole clips run."""
        return self._active.stats()

    def infer_clip(self, clip: np.ndarray) -> Optional[ClipOutput]:  # type: ignore[override]
        """Whole clips through aknet_clip; None while the server is unreachable (the outage is reported through
        ``on_state`` and retried with backoff; the windows meanwhile are skipped), as the streaming mode does."""
        if self.clip is not None:
            self._active = self.clip
        try:
            return super().infer_clip(clip)
        except TritonUnavailableError:
            return None

    def step(self, image: np.ndarray, color: str = "BGR", camera: Optional[int] = None) -> Optional[ClipOutput]:
        """One grid sample; the window's scores when the server's window is full (None otherwise, or while lost)."""
        assert self.stream is not None, tr.mode_unavailable(tr.STREAM_MODEL)
        self._active = self.stream
        res = self.stream.step(self.camera if camera is None else camera, image, color)
        return None if res is None else res.output

    def step_many(self, items: List[Tuple[int, np.ndarray, str]]) -> List[Optional[ClipOutput]]:
        """One grid sample each for several cameras, sent together (the server batches them)."""
        assert self.stream is not None, tr.mode_unavailable(tr.STREAM_MODEL)
        self._active = self.stream
        return [None if res is None else res.output for res in self.stream.step_many(items)]

    def restart(self, camera: Optional[int] = None) -> None:
        assert self.stream is not None
        self.stream.restart(self.camera if camera is None else camera)

    def _run(self, role: str, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if role != graph_io.CLIP or self.clip is None:
            raise TritonError(tr.mode_unavailable(tr.CLIP_MODEL) if role == graph_io.CLIP else
                              f"the Triton backend runs {tr.STREAM_MODEL} per frame and {tr.CLIP_MODEL} for whole "
                              f"clips; {role} is not served")
        out = self.clip.infer(feed[graph_io.CLIP_INPUT])
        return {graph_io.LOGITS: out.logits, graph_io.KEYPOINTS: out.keypoints,
                graph_io.KEYPOINT_SCORES: out.keypoint_scores}

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        if self.clip is not None:
            self.clip.close()
        super().close()


__all__ = ["LIVE", "LOST", "MAX_CAMERAS", "MAX_CORRID", "StreamStep", "TritonBackend", "TritonClip", "TritonError",
           "TritonModelMismatchError", "TritonStats", "TritonStream", "TritonUnavailableError", "check_sequence_base",
           "parse_url", "resize_like_preprocess"]
