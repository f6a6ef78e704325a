"""The model package: a folder whose ``manifest.json`` is the contract between build and runtime.

It carries the model config, labels, preprocessing, I/O names/shapes/dtypes,
every variant's file, precision and SHA-256, and any engine's TensorRT
version, GPU and build flags. NumPy-free and torch-free, so the runtime
loads it anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AknetError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


class PackageError(AknetError, ValueError):
    """A package is incomplete, corrupted, or was built for another TensorRT or GPU."""


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def variant_entry(root: Path, file: str, precision: str, kind: str = "onnx", **extra: Any) -> dict[str, Any]:
    return {"file": file, "precision": precision, "kind": kind, "sha256": sha256_file(root / file), **extra}


@dataclass
class Package:
    """A verified package on disk."""

    root: Path
    manifest: dict[str, Any]

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def variants(self) -> list[dict[str, Any]]:
        return list(self.manifest["variants"])

    def variant(self, precision: str, kind: str = "onnx") -> dict[str, Any]:
        for v in self.variants:
            if v["precision"] == precision and v["kind"] == kind:
                return v
        have = ", ".join(f"{v['kind']}:{v['precision']}" for v in self.variants)
        raise PackageError(f"{self.root} has no {kind} variant in {precision}; it has {have}")

    def path(self, entry: dict[str, Any]) -> Path:
        return self.root / entry["file"]

    def check_engine(self, entry: dict[str, Any], tensorrt_version: str, gpu: str) -> None:
        """Refuse an engine built for another TensorRT or GPU, saying how to rebuild."""
        built_v, built_gpu = entry.get("tensorrt_version", "?"), entry.get("gpu", "?")
        if built_v.split(".")[:2] != tensorrt_version.split(".")[:2] or built_gpu != gpu:
            raise PackageError(
                f"engine built for TensorRT {built_v} on {built_gpu}; this is {tensorrt_version} on {gpu}: rebuild "
                f"with python -m aknet_edge.build --from {self.root} --out <new dir>"
            )


def load(root: str | os.PathLike, verify: bool = True) -> Package:
    """Read and verify a package: schema version, files present, SHA-256 of every variant."""
    root = Path(root)
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise PackageError(f"{root} is not a model package (no {MANIFEST}); build one with python -m aknet_edge.build")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PackageError(f"{mpath} is unreadable or not JSON ({exc})") from None
    schema = manifest.get("schema_version")
    if schema != SCHEMA_VERSION:
        raise PackageError(f"{mpath} has schema version {schema}; this aknet_edge reads version {SCHEMA_VERSION}")
    for key in ("config", "labels", "preprocessing", "io", "variants"):
        if key not in manifest:
            raise PackageError(f"{mpath} lacks '{key}'; rebuild the package")
    if verify:
        for v in manifest["variants"]:
            p = root / v["file"]
            if not p.is_file():
                raise PackageError(f"{root}: variant file {v['file']} is missing; rebuild the package")
            if sha256_file(p) != v["sha256"]:
                raise PackageError(f"{root}: {v['file']} does not match its SHA-256 in the manifest (corrupted or "
                                   "edited); rebuild the package")
    return Package(root, manifest)
