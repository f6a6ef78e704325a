"""Every TensorRT call aknet_edge makes: engine build, INT8 calibration, inference.

Why one package: TensorRT's Python API changed shape twice (10.0 removed the
binding API, ``build_engine`` and ``max_workspace_size``; 11.0 removed the
FP16/INT8 builder flags and implicit INT8 calibration, and made every network
strongly typed). Keeping all of it here lets ``tests/test_trt_names.py`` check
each name every module uses against the names the real bindings define, per
era. Which versions we claim and what each era changes is written once, in
:mod:`aknet_edge.trt_eras`, shared with export/targets.py.

Modules, by job:

* ``version``: import tensorrt, parse and check its version, the logger,
  the errors (``X is not available in TensorRT N``).
* ``settings``, ``onnx_info``, ``plan``: what to build, what the ONNX carries,
  and the per-version decisions; pure, testable without TensorRT.
* ``build``, ``build_config``: carrying a plan out into a serialized engine.
* ``islands``: which layers a weakly typed FP16/INT8 build pins to FP32 (pure).
* ``plugins``: plugin libraries loaded before parsing and deserialising, and
  the plugins a graph or an engine needs.
* ``calibrators``: implicit-INT8 calibrators, made on demand (8.5 to 10.x).
* ``runner``: loading and running an engine.

Conventions the static check relies on (keep them when editing):

* The TensorRT module is always the local name ``trt``; the objects it hands
  out are always named ``builder``, ``network``, ``config``, ``parser``,
  ``parser_error``, ``profile``, ``tensor``, ``timing_cache``, ``runtime``,
  ``engine``, ``context``, ``layer``, ``registry``, ``creator`` (or
  ``self._engine`` and so on). Never give these
  names to non-TensorRT objects, modules included.
* Code valid only in some eras lives in a helper whose name ends with the eras
  it runs in: ``_trt8`` (8.5 to 9.x), ``_trt86`` (8.6+ names), ``_trt10``,
  ``_trt11`` (the numbers of ``trt_eras.API_ERAS``), e.g.
  ``_set_precision_flags_trt8_trt10``. Functions without such a suffix must
  only use names that exist in every supported version.

Importing this package imports neither tensorrt, pycuda, onnx nor torch.
"""

from __future__ import annotations

from .build import build_serialized_engine
from .calibrators import CALIBRATION_METHODS, make_calibrator
from .islands import LayerView, PinPlan, plan_pinning
from .onnx_info import OnnxGraphInfo, PluginNode, inspect_onnx
from .plan import BuildPlan, plan_build
from .plugins import (LoadedPlugin, check_engine_plugins, check_library_file, load_plugin_libraries, loaded_plugins,
                      plugin_records)
from .runner import EngineRunner, TensorSpec
from .settings import PRECISIONS, BuildSettings, PathLike
from .version import (INSTALL_HINT, LOGGER_NAME, MAX_VERSION_EXCLUSIVE, MIN_VERSION, EngineBuildError,
                      EngineRuntimeError, TensorRTFeatureError, UnsupportedTensorRTError, Version, api_era,
                      check_supported, format_version, get_trt_logger, load_tensorrt, parse_trt_version, require,
                      trt_version)

__all__ = [
    "BuildPlan", "BuildSettings", "CALIBRATION_METHODS", "EngineBuildError", "EngineRunner", "EngineRuntimeError",
    "INSTALL_HINT", "LOGGER_NAME", "LayerView", "LoadedPlugin", "MAX_VERSION_EXCLUSIVE", "MIN_VERSION",
    "OnnxGraphInfo", "PRECISIONS", "PathLike", "PinPlan", "PluginNode", "TensorRTFeatureError", "TensorSpec",
    "UnsupportedTensorRTError", "Version", "api_era", "build_serialized_engine", "check_engine_plugins",
    "check_library_file", "check_supported", "format_version", "get_trt_logger", "inspect_onnx", "load_plugin_libraries",
    "load_tensorrt", "loaded_plugins", "make_calibrator", "parse_trt_version", "plan_build", "plan_pinning",
    "plugin_records", "require", "trt_version",
]

# Private helpers tests/test_trt_runtime.py tests directly, where they were before the split.
from .calibrators import _calibration_array, _read_calibration_cache  # noqa: E402,F401
