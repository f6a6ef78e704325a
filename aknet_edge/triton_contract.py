"""The Triton model repository's contract: the names :mod:`aknet_edge.triton_repo` writes and
:mod:`aknet_edge.runtime.triton_client` reads (model names, tensors, config parameters, data types).

Ground (pyproject.toml, [tool.importlinter]): the writer is build-side and the client is the runtime's, which may
import no build-side module, so the names both sides share live here. Imports only the package contract.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict

from . import package as pk

CLIP_MODEL = "aknet_clip"
STREAM_MODEL = "aknet_stream"
MARKER = "aknet_triton.json"  # at the repository root: what wrote it, and from which package
MODEL_VERSION = "1"
LABELS_FILE = pk.LABELS_FILE
MANIFEST_FILE = pk.MANIFEST

# aknet_stream's tensors
IMAGE_INPUT = "image"  # uint8 (S, S, 3), resized like aknet_edge.preprocess, in the repository's colour order
START, READY, CORRID = "START", "READY", "CORRID"  # sequence batcher controls
STEPS_OUTPUT = "steps"  # int64: frames in this sequence so far, this one included (a window is full at T)
CORRID_OUTPUT = "corrid"  # uint64: the correlation id the server routed this request as (the client checks it)
RING_STATE = "feature_ring"  # (T, C, h, w) the last T frame features, oldest first
COUNT_STATE = "step_count"  # (1,) int64
# config parameters the client reads
PARAM_LABELS = "aknet_labels"
PARAM_PREPROCESSING = "aknet_preprocessing"
PARAM_COLOR = "aknet_input_color"
PARAM_MANIFEST = "aknet_manifest_sha256"  # the manifest file's SHA-256 (which package file exactly; for messages)
PARAM_MODEL = "aknet_model_sha256"  # model_sha256(manifest): which model (what the client compares)
PARAM_PACKAGE = "aknet_package"  # the package folder's name the repository was written from (for messages)
PARAM_MODE = "aknet_stream_mode"
STREAM_MODE = "carried"

# numpy dtype name -> Triton model-config data type
TRITON_DTYPES: Dict[str, str] = {
    "float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "int64": "TYPE_INT64",
    "int32": "TYPE_INT32", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "uint64": "TYPE_UINT64", "bool": "TYPE_BOOL",
}
COLORS = ("RGB", "BGR")  # the colour orders aknet_stream takes frames in


def mode_unavailable(model: str) -> str:
    """What the repository writer and the Triton client both say when a mode cannot be served (one wording)."""
    if model == STREAM_MODEL:
        return (f"per-frame streaming ({STREAM_MODEL}) is not in this repository: it needs the package's "
                "frame_encoder/clip_head graphs; run whole clips (--no-incremental, served by "
                f"{CLIP_MODEL}) or write the repository from a package with split graphs")
    return (f"whole clips ({CLIP_MODEL}) are not in this repository; run per-frame streaming (the default, "
            f"served by {STREAM_MODEL}) or write the repository with {CLIP_MODEL}")


def model_sha256(manifest: pk.Manifest) -> str:
    """The model's identity: SHA-256 over what decides its answers -- its config, labels, preprocessing, graph I/O,
    the checkpoint's hash and every ONNX graph's hash (role, precision) -- and nothing a build on the server adds.

    Why not the manifest file's hash: ``build --from PKG --out PKG_SERVER`` compiles the server's TensorRT engine
    from the same graphs and rewrites the manifest (engine, command, batch profile), and the edge keeps running
    PKG; that is the same model. Another checkpoint, other weights or another calibration changes a graph's hash.
    """
    d = manifest.to_dict()
    ident: Dict[str, Any] = {k: d.get(k) for k in ("config", "labels", "preprocessing", "io", "source_sha256")}
    ident["graphs"] = sorted((v.role, v.precision, v.sha256) for v in manifest.variants if v.kind == "onnx")
    return hashlib.sha256(json.dumps(ident, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()

