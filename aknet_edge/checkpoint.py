"""Checkpoint I/O: our format is safetensors weights with the config JSON in its metadata.

Nothing here unpickles untrusted data: our files are safetensors, and public
TSM ``.pth`` checkpoints are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .config import ModelConfig
from .errors import CheckpointError, ConfigError
from .model import build_model, compact_kernel

log = logging.getLogger(__name__)
FORMAT = "aknet_edge.checkpoint/1"
from .config import DEMO_WEIGHTS  # noqa: E402  (re-exported: the bundled demo model)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, extra: dict[str, str] | None = None) -> Path:
    """Write weights + config atomically (temporary file, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    cfg: ModelConfig = model.cfg
    meta = {"format": FORMAT, "config": cfg.to_json(), **(extra or {})}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({exc})") from None


def load_checkpoint(path: str | os.PathLike = DEMO_WEIGHTS, map_location: str = "cpu") -> nn.Module:
    """Build the model described by the checkpoint's config and load its weights (eval mode)."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(
            f"{path} has no aknet_edge config in its metadata (format {meta.get('format')!r}); "
            "save checkpoints with aknet_edge.checkpoint.save_checkpoint or import TSM weights with import_tsm"
        )
    try:
        cfg = ModelConfig.from_json(meta["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its config is invalid: {exc}") from None
    model = build_model(cfg)
    state = load_file(str(path), device=map_location)
    _load_strict(model, state, str(path))
    return model.eval()


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
        if wrong:
            parts.append(
                "shape mismatch " + ", ".join(f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:5])
            )
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


# -- public TSM checkpoints ------------------------------------------------

@dataclass
class ImportReport:
    """What a TSM import loaded, compacted and left out."""

    loaded: list[str] = field(default_factory=list)
    compacted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped_shape: list[str] = field(default_factory=list)


_PREFIX = re.compile(r"^(module\.)?(base_model\.)?")


def tsm_key_to_ours(key: str, cut: int) -> str | None:
    """Map a TSM checkpoint key (``module.base_model.layer1.0.conv1.net.weight``) to ours.

    Our own TSM baseline's keys map to themselves, so a baseline trained here seeds an AK-Net the same way.
    """
    k = _PREFIX.sub("", key).replace(".net.", ".")
    if k.startswith("encoder."):  # already our naming (an aknet_edge TSM baseline's state dict)
        return k
    if k.startswith("new_fc."):
        return "fc." + k[len("new_fc.") :]
    if k.startswith(("conv1.", "bn1.")):
        return "encoder." + k
    m = re.match(r"layer(\d)\.", k)
    if m:
        return ("encoder." + k) if int(m.group(1)) <= cut else k
    if k.startswith("fc."):
        return k
    return None


def import_tsm(
    model: nn.Module, source: str | os.PathLike | dict[str, torch.Tensor], strict: bool = False
) -> ImportReport:
    """Load a public TSM ResNet checkpoint into a TSM baseline or an AK-Net.

    Frame-encoder stages load as they are; for AK-Net the 2D later stages are
    compacted into its 1D stages with ``compact_kernel`` (the config's mode).
    The classifier loads only where the class count matches. ``strict`` turns
    missing or unexpected keys into an error that lists them.
    """
    state = _read_tsm(source)
    cfg: ModelConfig = model.cfg
    own = model.state_dict()
    report = ImportReport()
    new_state: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        ours = tsm_key_to_ours(key, cfg.cut)
        if ours is None or ours not in own:
            report.unexpected.append(key)
            continue
        target = own[ours]
        if value.dim() == 4 and target.dim() == 3:
            value = compact_kernel(value, cfg.compact)
            report.compacted.append(ours)
        if value.shape != target.shape:
            report.skipped_shape.append(f"{ours}: {tuple(value.shape)} vs {tuple(target.shape)}")
            continue
        new_state[ours] = value.to(target.dtype)
        report.loaded.append(ours)
    report.missing = sorted(set(own) - set(new_state))
    if strict and (report.missing or report.unexpected or report.skipped_shape):
        raise CheckpointError(
            f"TSM checkpoint does not fit: missing {report.missing[:10]}, unexpected {report.unexpected[:10]}, "
            f"shape mismatches {report.skipped_shape[:5]}"
        )
    model.load_state_dict(new_state, strict=False)
    log.info("TSM import: %d loaded (%d compacted to 1D), %d missing, %d unexpected",
             len(report.loaded), len(report.compacted), len(report.missing), len(report.unexpected))
    return report


def _read_tsm(source: str | os.PathLike | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(source, dict):
        obj = source
    else:
        try:
            obj = torch.load(str(source), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"TSM checkpoint {source} does not exist") from None
        except Exception as exc:
            raise CheckpointError(
                f"cannot read {source} as a weights-only PyTorch checkpoint ({exc}); "
                "only tensors and plain containers are accepted"
            ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError("TSM checkpoint must be a state dict (or a dict with 'state_dict') of tensors")
    return dict(obj)


def config_json(path: str | os.PathLike) -> dict:
    """The config stored in a checkpoint, as a dict (for packaging without building the model)."""
    return json.loads(read_metadata(path)["config"])
