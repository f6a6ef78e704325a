from __future__ import annotations  # Python 3.8 runs this file (the device venvs)

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- the device-side subset
# What runs on a Jetson (aknet_edge.runtime, aknet_edge.package, python -m aknet_edge.run, python -m
# aknet_edge.build --from) must work on Python 3.8-3.12 without torch. These tests exercise it and get the
# `device` marker; .ci/run runs `pytest -m device` under 3.8, 3.10 and 3.12 in venvs without torch (the runtime
# tests then use the committed package tests/data/package-0.2.0, see test_runtime_support.demo_package).
# File -> test functions ("*": all of them). Every test in a tests/test_device_*.py file is a device test too.
# tests/test_device_subset.py checks that each name here is a test that exists.
DEVICE_TESTS = {
    "test_package.py": "*",            # the package contract and the 0.2.0 package through the recogniser
    "test_no_torch.py": "*",           # the runtime side imports with torch blocked
    "test_runtime_no_torch.py": "*",   # a full stream with torch, TensorRT and pycuda blocked
    "test_runtime_cli.py": "*",        # python -m aknet_edge.run: JSON Lines, SIGINT, one-line errors
    "test_runtime_sources.py": "*",    # files, folders, synthetic, typed errors, reconnect policy
    "test_runtime_source_options.py": "*",
    "test_runtime_preview.py": "*",    # MJPEG preview over HTTP
    "test_sampling.py": "*",           # the live window takes the frames training takes
    "test_runtime_rtsp.py": "*",       # a real RTSP server, both transports, kill and restart
    "test_runtime_gstreamer.py": "*",  # bounded opens, missing elements, finite pipelines
    "test_runtime_faults.py": "*",     # output faults, size changes, several readers, a TSM package
    "test_runtime_outage.py": "*",     # a lost source is visible and ends what it must
    "test_jsonl_schema.py": "*",       # every JSON Lines line valid against the shipped schema
    "test_pipeline.py": "*",           # lanes, the backend contract, sinks, lifecycle, one stats type
    "test_per_person.py": "*",         # regions and tracked actors as lanes
    "test_start_outage.py": "*",       # a camera down at start does not stop the others
    "test_secrets.py": "*",            # camera credentials in no output
    "test_preview_security.py": "*",   # the page under attack: rebinding, trickling clients, tokens
    "test_image_encodings.py": "*",    # every sensor_msgs encoding a camera driver publishes
    "test_event_clips.py": "*",        # a clip per event: span, frames, follow-up record, retention, full disk
    "test_metrics_health.py": "*",     # /metrics equal to the stats, /healthz, /readyz through an outage
    "test_site_config.py": "*",        # --config site.yaml: two cameras and every output, one-line errors
    "test_mqtt.py": "*",               # events to a real mosquitto through outages and restarts, the spool
    "test_webhook.py": "*",            # events POSTed, signed, retried; recognition never waits
    "test_runtime_incremental.py": [
        "test_every_window_equals_whole_clip",
        "test_grid_sampler_picks_nearest_frame_and_survives_drops",
        "test_window_ring_is_the_last_t_tensors_in_order_across_wraps",
        "test_overlapped_head_gives_the_sequential_results_and_events",
        "test_a_failing_callback_on_the_head_thread_stops_recognition_with_its_error",
    ],
    "test_runtime_events.py": ["test_long_video_file", "test_hysteresis_and_min_duration"],
    "test_settings.py": ["test_flag_values", "test_flag_rejects_what_it_cannot_read",
                         "test_cache_dir_follows_the_variable"],
    "test_multistream.py": "*",        # N cameras, one backend: equal to N recognisers, independent
    "test_multistream_cli.py": "*",    # run SRC [SRC ...]: "stream" on every line, per-stream stats and videos
    "test_multistream_encoder.py": ["test_batched_encoder_equals_separate_encoders", "test_batched_encoder_carried_only"],
    "test_triton_repo.py": "*",        # the Triton model repository (torch-free parts; others skip)
    "test_preview_page.py": "*",       # overlay layout and colours, the self-contained page
    "test_plugins.py": "*",            # --plugin-lib: checked before loading, loaded, recorded
    "test_int8_forms.py": "*",         # both INT8 graph forms and which TensorRT each serves
    "test_trt_runtime.py": "*",        # the pure build plan, the FP32 islands to pin; GPU tests skip
    "test_build.py": [                 # what python -m aknet_edge.build --from checks before TensorRT runs
        "test_from_package_for_onnxruntime_is_refused_before_anything_runs",
        "test_engine_cache_key_covers_every_input",
        "test_engine_precision_follows_the_package_and_the_calibration_mode",
        "test_option_combinations_the_era_table_rules_out",
    ],
}
DEVICE_FILE_PREFIX = "test_device_"
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _is_device_file(name: str) -> bool:
    return name in DEVICE_TESTS or name.startswith(DEVICE_FILE_PREFIX)


# --------------------------------------------------------------------------- the ROS 2 node's tests
# tests/test_ros2_*.py (marker `ros2`) run in .ci/run's ros2 stage: a Python 3.12 venv with pip's ROS 2 Jazzy
# wheels and no torch; where rclpy is missing (the main suite) the ones that need it skip with the reason.
# The network rule: every process that initialises rclpy in a test talks to loopback only, in a DDS domain of
# its own. The session fixture below sets both for the pytest process, whose children (the node under test,
# peers) inherit them; tests/peers/ros2_peer.py refuses to start rclpy without them, and
# tests/test_ros2_network.py fails when they are not in force.
ROS2_FILE_PREFIX = "test_ros2_"


def ros_test_env(pid: int | None = None) -> dict:
    """The variables every ROS test process runs with: discovery on localhost only (Jazzy's
    ROS_AUTOMATIC_DISCOVERY_RANGE; Humble's ROS_LOCALHOST_ONLY where ROS_DISTRO says humble) and a DDS domain
    derived from the pid (1-100), so parallel runs do not see each other."""
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "ROS_DOMAIN_ID": str(1 + (os.getpid() if pid is None else pid) % 100)}
    if os.environ.get("ROS_DISTRO") in ("humble", "iron"):
        env["ROS_LOCALHOST_ONLY"] = "1"
    return env


@pytest.fixture(autouse=True, scope="session")
def _ros_loopback_only():
    """Every test session runs with ros_test_env() (before any fixture or test starts rclpy)."""
    saved = {k: os.environ.get(k) for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_LOCALHOST_ONLY",
                                            "ROS_STATIC_PEERS")}
    os.environ.pop("ROS_STATIC_PEERS", None)  # peers named elsewhere would be contacted off loopback
    os.environ.update(ros_test_env())
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def pytest_ignore_collect(collection_path, config):
    """Without torch, test files outside the device subset (and the torch-free ROS 2 tests) are not even imported
    (most import torch)."""
    name = collection_path.name
    if (not HAS_TORCH and name.startswith("test_") and name.endswith(".py") and not _is_device_file(name)
            and not name.startswith(ROS2_FILE_PREFIX)):
        return True
    return None  # pytest decides as usual


def pytest_report_header(config):
    if not HAS_TORCH:
        return ("torch is not installed: only the device-side tests run (tests/conftest.py: DEVICE_TESTS); "
                "the others skip or are not collected")
    return None


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config, items):
    no_torch = pytest.mark.skip(reason="torch is not installed: only the device-side subset runs here (DEVICE_TESTS)")
    for item in items:
        name = item.path.name
        wanted = DEVICE_TESTS.get(name)
        func = getattr(item, "originalname", item.name)
        if name.startswith(ROS2_FILE_PREFIX):
            item.add_marker(pytest.mark.ros2)  # torch-free; those needing rclpy skip without it themselves
        elif name.startswith(DEVICE_FILE_PREFIX) or wanted == "*" or (wanted and func in wanted):
            item.add_marker(pytest.mark.device)
        elif not HAS_TORCH:
            item.add_marker(no_torch)


@pytest.fixture(autouse=True, scope="session")
def _threads():
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:
        pass
    yield


def run_py(code: str, env: dict | None = None, timeout: float = 120):
    """Run Python code in a fresh interpreter (import-isolation tests)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=str(REPO))


def run_build_cli(*args: str, block_torch: bool = True):
    """``python -m aknet_edge.build --no-progress ARGS`` in a fresh interpreter (torch unimportable by default)."""
    code = (blocking_imports("torch") if block_torch else "import sys\n") + (
        "import runpy\n"
        f"sys.argv = ['aknet_edge.build', '--no-progress', *{list(args)!r}]\n"
        "runpy.run_module('aknet_edge.build', run_name='__main__', alter_sys=True)\n")
    return run_py(code, timeout=120)


def one_error(proc) -> str:
    """The single ``error:`` line of a CLI that exited 2 without a traceback."""
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return errors[0]


def blocking_imports(*names: str) -> str:
    """Python source that makes ``names`` unimportable in a fresh interpreter (as if not installed).

    A meta-path finder answers ModuleNotFoundError for them: nothing stands in for the real module.
    """
    return (
        "import sys\n"
        "class _NotInstalled:\n"
        f"    names = {set(names)!r}\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in self.names:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (blocked by the test)', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _NotInstalled())\n"
    )


def assert_valid_jsonl(lines) -> None:
    """Every JSON Lines record valid against the shipped schema (aknet_edge.runtime.records; a no-op without
    jsonschema, which the device venvs of .ci/run install)."""
    try:
        import jsonschema
    except ImportError:
        return
    from aknet_edge.runtime import records

    validator = jsonschema.Draft202012Validator(records.load_schema())
    for line in lines:
        errors = [e.message for e in validator.iter_errors(line)]
        assert not errors, (line, errors)
