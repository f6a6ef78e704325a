"""One inference interface over ONNX Runtime and TensorRT, chosen from the package.

Why: the runtime above this module must not care which engine runs the model,
and must import without torch, TensorRT or pycuda. Each backend runs the
package's whole-clip graph (``infer_clip``) and, when the package carries the
split graphs, the per-frame encoder and the clip head (``encode_frame``,
``head``) used for incremental streaming.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from aknet_edge import graph_io, settings
from aknet_edge.errors import AknetError, DependencyError, InputShapeError
from aknet_edge.package import AUTO, Package, PackageError, Variant

log = logging.getLogger(__name__)

# the frame encoder's optional parent-row index input (int32, one entry per output row): a row a shift state adds
# copies row ``parent_rows[r]`` instead of row 0, so several cameras' exact chains fork in one call
# (export.onnx_export.to_split_onnx(parent_rows=True); runtime.window.encode_batch)
PARENT_ROWS = graph_io.PARENT_ROWS


class BackendError(AknetError, RuntimeError):
    """The requested backend cannot run this package here."""


@dataclass
class ClipOutput:
    """What the clip graph (or the head) returns, batch first."""

    logits: np.ndarray  # (B, classes)
    keypoints: np.ndarray  # (B, K, 3) normalised (t, y, x); K = 0 for models without keypoints (TSM)
    keypoint_scores: np.ndarray  # (B, K)


State = List[np.ndarray]


class Backend:
    """The backend contract: what every backend runs, and its capabilities, declared (never probed).

    Capabilities, read as attributes by the pipeline:

    * ``batches`` -- ``infer_clip``/``head`` take B windows in one call (every backend here does);
    * ``has_split`` -- the per-frame encoder and the clip head exist (incremental mode);
    * ``concurrent_roles`` -- two threads may run different graphs (encoder, head) at once, so the
      pipeline overlaps one step's head with the next step's encoding;
    * ``streams_frames`` -- per-frame streaming with server-side state: the pipeline sends each grid
      sample's frame with :meth:`step_many` and calls :meth:`restart` on a grid restart (Triton);
    * ``max_streams`` -- the most cameras one step may batch (None: no limit);
    * ``whole_clips`` -- ``infer_clip`` is served; ``remote`` -- a server runs the model (``stats()``), and
      its ``infer_clip``/``step_many`` answer None while it is unreachable (the windows are skipped).

    A backend is a context manager: what it acquired (sessions, engines, channels) is released on exit
    (or :meth:`close`), also after an error in the middle of a run.
    """

    name = "base"
    batches = True
    concurrent_roles = False
    streams_frames = False
    whole_clips = True  # infer_clip is served (a Triton repository may hold only aknet_stream)
    remote = False  # a server runs the model: ``stats()`` reports its state and counters
    # the keyword options open_backend passes on to this backend (anything else is an error naming it)
    options: Tuple[str, ...] = ()

    def __init__(self, package: Package, precision: str) -> None:
        self._closed = False
        self.package = package
        self.precision = precision
        self.frames = package.clip_spec.frames
        encoder = package.io(graph_io.FRAME_ENCODER)
        states = encoder.state_inputs if encoder is not None else []
        self.state_names: List[str] = [t.name for t in states]
        self.state_shapes: List[Tuple[int, ...]] = [t.static_shape for t in states]
        # packages from 0.2.0 on: the frame and each state have their own row axis, and a state with more rows
        # than its layer's input forks the new rows from row 0 (the exact incremental mode relies on it)
        self.state_fork = bool(states) and all(graph_io.is_rows_axis(t.shape[0]) for t in states)
        self._state_outputs = [graph_io.state_output(n) for n in self.state_names]
        # whether the encoder takes PARENT_ROWS (exact incremental mode batched across cameras with forking)
        self.parent_rows = encoder is not None and PARENT_ROWS in encoder.input_names and bool(states)
        self.has_split = False
        # the most cameras one step may batch (None: no limit; TensorRT engines: the build's --max-streams)
        self.max_streams: Optional[int] = None

    # -- contract
    def infer_clip(self, clip: np.ndarray) -> ClipOutput:
        """(T, 3, S, S) or (B, T, 3, S, S) float32 -> ClipOutput with a batch axis."""
        return self._outputs(self._run(graph_io.CLIP, {graph_io.CLIP_INPUT: self._batched(clip, "a clip", "3, S, S")}))

    def _batched(self, x: np.ndarray, what: str, rest: str) -> np.ndarray:
        """(T, ...) or (B, T, ...) -> contiguous float32 (B, T, ...), or a clear shape error."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 4:
            x = x[None]
        if x.ndim != 5 or x.shape[1] != self.frames:
            raise InputShapeError(f"expected {what} (B, {self.frames}, {rest}), got {x.shape}")
        return np.ascontiguousarray(x)

    def zero_state(self, batch: int = 1) -> State:
        """The encoder's initial shift state (zeros), one array per state input."""
        return [np.zeros((batch, *s), np.float32) for s in self.state_shapes]

    def encode_frame(self, frame: np.ndarray, state: State,
                     parents: Optional[np.ndarray] = None) -> tuple[np.ndarray, State]:
        """(F, 3, S, S) frames + state -> (features (R, C, h, w), next state).

        With ``state_fork`` a state may have more rows than the frames (see ``backbone.fork_rows``):
        new rows copy row 0, or row ``parents[r]`` on an encoder with :attr:`parent_rows`.
        """
        self._need_split()
        frame = np.asarray(frame, dtype=np.float32)
        if frame.ndim == 3:
            frame = frame[None]
        if len(state) != len(self.state_names):
            raise InputShapeError(f"expected {len(self.state_names)} state arrays, got {len(state)}")
        feed = {graph_io.FRAME_INPUT: np.ascontiguousarray(frame)}
        feed.update({n: np.ascontiguousarray(s, dtype=np.float32) for n, s in zip(self.state_names, state)})
        if parents is not None and not self.parent_rows:
            raise BackendError(f"{self.package.root}: this frame encoder has no {PARENT_ROWS} input; batch cameras "
                               "with full rows (runtime.window.encode_batch) or rebuild the package")
        if self.parent_rows:
            rows = max([frame.shape[0]] + [s.shape[0] for s in state])
            if parents is None:  # one camera: every new row forks from row 0
                parents = np.zeros(rows, np.int32)
            parents = np.ascontiguousarray(parents, dtype=np.int32)
            if parents.ndim != 1 or parents.shape[0] < rows:
                raise InputShapeError(f"{PARENT_ROWS}: expected ({rows},) row indices, got {parents.shape}")
            feed[PARENT_ROWS] = parents
        out = self._run(graph_io.FRAME_ENCODER, feed)
        return out[graph_io.FEATURES], [out[n] for n in self._state_outputs]

    def head(self, features: np.ndarray) -> ClipOutput:
        """(T, C, h, w) or (B, T, C, h, w) cached features -> ClipOutput."""
        self._need_split()
        return self._outputs(self._run(graph_io.CLIP_HEAD,
                                       {graph_io.FEATURES: self._batched(features, "features", "C, h, w")}))

    def step_many(self, items: List[Tuple[int, np.ndarray, str]]) -> List[Optional[ClipOutput]]:
        """``streams_frames`` backends: one (camera, image, color) grid sample each for several cameras; each
        camera's window scores once its server-side window is full (None before, or while the server is lost)."""
        raise BackendError(f"backend {self.name} does not stream frames (streams_frames is False)")

    def restart(self, camera: int = 0) -> None:
        """``streams_frames`` backends: the camera's next sample starts a new server-side window."""
        raise BackendError(f"backend {self.name} does not stream frames (streams_frames is False)")

    def stats(self) -> Any:
        """``streams_frames`` backends: the server's state and counters (an object with ``to_dict()``)."""
        raise BackendError(f"backend {self.name} keeps no server statistics")

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` released what this backend acquired."""
        return self._closed

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- helpers
    def _need_split(self) -> None:
        if not self.has_split:
            raise BackendError(f"{self.package.root} has no frame_encoder/clip_head graphs for {self.name} "
                               f"{self.precision}; run whole clips (incremental=False) or rebuild the package")

    @staticmethod
    def _outputs(out: dict[str, np.ndarray]) -> ClipOutput:
        """The graph's outputs; a graph without keypoints (the TSM baseline: ``logits`` only) gets K = 0."""
        logits = out[graph_io.LOGITS]
        pts, scores = out.get(graph_io.KEYPOINTS), out.get(graph_io.KEYPOINT_SCORES)
        if pts is None or scores is None:
            b = logits.shape[0]
            pts, scores = np.zeros((b, 0, 3), np.float32), np.zeros((b, 0), np.float32)
        return ClipOutput(logits, pts, scores)

    def _run(self, role: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


def _pick_precision(package: Package, kind: str, precision: str) -> str:
    """The package's one rule for choosing a precision, with the backend's error type."""
    try:
        return package.choose_precision(kind, precision)
    except PackageError as exc:
        raise BackendError(str(exc)) from None


def _split_available(roles: Dict[str, Variant]) -> bool:
    return all(r in roles for r in graph_io.SPLIT_ROLES)


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime: CPU by default; CUDA/TensorRT execution providers when installed and asked for."""

    name = "onnxruntime"
    concurrent_roles = True  # InferenceSession.run is thread-safe, and each role has its own session
    options = ("providers", "threads")

    def __init__(self, package: Package, precision: str = AUTO, providers: Optional[List[str]] = None,
                 threads: Optional[int] = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise DependencyError("the onnxruntime backend needs onnxruntime: pip install onnxruntime "
                                  "(or onnxruntime-gpu)") from exc
        precision = _pick_precision(package, "onnx", precision)
        super().__init__(package, precision)
        available = ort.get_available_providers()
        if providers is None:
            providers = ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in available]
        if missing:
            raise BackendError(f"onnxruntime providers {missing} are not available here; available: {available}")
        opts = ort.SessionOptions()
        # default: leave one core to the capture and inference threads (measured faster end to end on
        # 2-core boards, and no slower for the bare backend: bench/runtime_bench.py)
        opts.intra_op_num_threads = int(threads) if threads else max(1, (os.cpu_count() or 2) - 1)
        opts.log_severity_level = 3
        if not settings.flag("AKNET_ORT_SPIN"):
            # spinning intra-op threads steal the cores the capture and inference threads need
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.providers = providers
        self._sessions: Dict[str, Any] = {}
        roles = package.roles("onnx", precision)
        for role, entry in roles.items():
            self._sessions[role] = ort.InferenceSession(str(package.path(entry)), opts, providers=providers)
        if graph_io.CLIP not in self._sessions:
            raise BackendError(f"{package.root}: no whole-clip onnx graph in {precision}")
        self.has_split = _split_available(roles)
        self._inspect_sessions()

    def _inspect_sessions(self) -> None:
        # read once: get_outputs() builds new NodeArg objects on every call, a measurable cost per window
        self._output_names = {role: [o.name for o in sess.get_outputs()] for role, sess in self._sessions.items()}
        enc = self._sessions.get(graph_io.FRAME_ENCODER)
        if enc is not None:
            self.parent_rows = bool(self.state_names) and PARENT_ROWS in [i.name for i in enc.get_inputs()]

    def _run(self, role: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self._output_names[role]
        return dict(zip(names, self._sessions[role].run(names, feed)))

    def close(self) -> None:
        self._sessions.clear()
        super().close()


class TensorRTBackend(Backend):
    """TensorRT engines from the package through :class:`~aknet_edge.runtime.trt.EngineRunner`."""

    name = "tensorrt"

    def __init__(self, package: Package, precision: str = "auto") -> None:
        from aknet_edge.runtime import trt as rt

        precision = _pick_precision(package, "tensorrt", precision)
        super().__init__(package, precision)
        self._runners: Dict[str, Any] = {}
        from aknet_edge.runtime.device_memory import gpu_identity

        entries = package.roles("tensorrt", precision)
        version = rt.format_version(rt.trt_version())
        for entry in entries.values():  # refuse engines from another TensorRT/GPU with the rebuild command
            package.check_engine(entry, version, gpu_identity()[0])
            rt.check_engine_plugins(entry.engine.plugins if entry.engine else (), entry.file)
        try:
            for role, entry in entries.items():
                runner = rt.EngineRunner(package.path(entry))
                runner.__enter__()
                self._runners[role] = runner
        except BaseException:
            self.close()
            raise
        self.has_split = _split_available(entries)
        self.max_streams = engine_max_streams(package)

    def _run(self, role: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._runners[role].infer(feed)

    def close(self) -> None:
        for runner in self._runners.values():
            try:
                runner.__exit__(None, None, None)
            except Exception as exc:
                log.debug("closing engine runner failed: %s", exc)
        self._runners.clear()
        super().close()


def engine_max_streams(package: Package) -> int:
    """How many cameras the package's TensorRT engines were built to batch: the build's ``--max-streams``.

    Packages from before the field (0.3.0 and older): the batch profile's MAX, the most windows their whole-clip
    engine takes in one call.
    """
    build = package.manifest.build
    recorded = getattr(build, "max_streams", None)
    return int(recorded) if recorded else int(build.batch[2])


__all__ = ["PARENT_ROWS", "Backend", "BackendError", "ClipOutput", "OnnxRuntimeBackend", "TensorRTBackend",
           "engine_max_streams"]
