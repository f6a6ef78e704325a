"""Builder-config pieces that are the same in every supported era: profile, DLA, timing cache.

Why apart from build.py: these only use names every supported TensorRT has,
and each carries its own checks (ONNX input shapes against the settings, DLA
core count, a timing cache from another TensorRT/GPU), which would bury the
build's per-era flow.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aknet_edge.errors import ConfigError
from aknet_edge.io_utils import atomic_write_bytes

from .settings import BuildSettings

log = logging.getLogger(__name__)


def add_batch_profile(builder: Any, network: Any, config: Any, settings: BuildSettings) -> None:
    """One optimization profile over the batch axis of every network input."""
    profile = builder.create_optimization_profile()
    found = []
    for i in range(int(network.num_inputs)):
        tensor = network.get_input(i)
        name = tensor.name
        dims = tuple(int(d) for d in tensor.shape)
        found.append(f"{name} {dims}")
        if name == settings.input_name:
            sample = settings.input_shape
            if len(dims) != len(sample) + 1 or any(d not in (-1, s) for d, s in zip(dims[1:], sample)):
                raise ConfigError(f"input {name!r} has shape {dims} in the ONNX, which does not fit "
                                  f"input_shape {sample} with a leading batch axis")
        else:
            sample = dims[1:]
            if not dims or any(d < 0 for d in sample):
                raise ConfigError(f"input {name!r} has dynamic non-batch axes {dims}; "
                                  "only the batch axis may be dynamic")
        if dims and dims[0] != -1 and settings.batch != (dims[0],) * 3:
            raise ConfigError(f"input {name!r} has a fixed batch of {dims[0]} in the ONNX but batch={settings.batch}; "
                              "export with a dynamic batch axis or set batch to "
                              f"({dims[0]}, {dims[0]}, {dims[0]})")
        lo, opt, hi = settings.batch
        profile.set_shape(name, (lo,) + tuple(sample), (opt,) + tuple(sample), (hi,) + tuple(sample))
    if not any(entry.startswith(settings.input_name + " ") for entry in found):
        raise ConfigError(f"the ONNX has no input named {settings.input_name!r}; its inputs: {', '.join(found)}")
    config.add_optimization_profile(profile)


def configure_dla(trt: Any, builder: Any, config: Any, core: int) -> None:
    """Jetson: run layers on a DLA core, falling back to the GPU for the rest."""
    available = int(builder.num_DLA_cores)
    if core >= available:
        raise ConfigError(f"DLA core {core} requested but this device has {available} DLA core(s) "
                          "(only Jetson Xavier/Orin have DLA)")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(core)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def load_timing_cache(config: Any, path: Path) -> None:
    """Reuse tactic timings from an earlier build with the same TensorRT version."""
    blob = path.read_bytes() if path.is_file() else b""
    timing_cache = config.create_timing_cache(blob)
    if timing_cache is None or not config.set_timing_cache(timing_cache, False):
        log.warning("timing cache %s does not fit this TensorRT/GPU; starting an empty one", path)
        timing_cache = config.create_timing_cache(b"")
        config.set_timing_cache(timing_cache, False)
    elif blob:
        log.info("using timing cache %s", path)


def save_timing_cache(config: Any, path: Path) -> None:
    """Keep the timings for the next build (same TensorRT and GPU)."""
    timing_cache = config.get_timing_cache()
    if timing_cache is None:
        return
    atomic_write_bytes(path, bytes(timing_cache.serialize()))
    log.info("saved timing cache %s", path)
