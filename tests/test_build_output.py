"""What the build prints: its steps one line each where the output is not a terminal, and no quantizer advice
that does not apply (ONNX Runtime's "Please consider to run pre-processing before quantization", 8 lines a build
before; calibration/precision.py says why it is silenced rather than followed)."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from aknet_edge.calibration.precision import PREPROCESS_ADVICE, quantize_int8
from aknet_edge.cli_common import StepProgress

REPO = Path(__file__).resolve().parents[1]


def _conv_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], rng.standard_normal((4, 3, 3, 3)).ravel().tolist())
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_quantizing_logs_no_preprocessing_advice_and_the_filter_is_that_narrow(caplog):
    clips = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    with caplog.at_level(logging.INFO):
        q = quantize_int8(_conv_model(), clips, "minmax")
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)  # it did quantize
    assert not [r for r in caplog.records if PREPROCESS_ADVICE in r.getMessage()], caplog.text
    assert any("INT8 Q/DQ" in r.getMessage() for r in caplog.records)  # our own lines still come through
    # only around the quantizer call: the same words from anyone afterwards are not swallowed
    caplog.clear()
    logging.getLogger().warning("Please consider to run pre-processing before quantization (a later caller)")
    assert [r for r in caplog.records if PREPROCESS_ADVICE in r.getMessage()]


def test_steps_off_a_terminal_are_one_plain_line_each():
    out = io.StringIO()
    steps = StepProgress(3, "build", stream=out)
    for name in ("load model", "export + lower", "check"):
        steps.step(name)
    steps.close()
    assert out.getvalue() == "build 1/3: load model\nbuild 2/3: export + lower\nbuild 3/3: check\n"
    quiet = io.StringIO()
    steps = StepProgress(3, "build", enabled=False, stream=quiet)
    steps.step("load model")
    steps.close()
    assert quiet.getvalue() == ""


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="no pseudo-terminals here")
def test_steps_on_a_terminal_are_one_bar_redrawn_in_place():
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            steps = StepProgress(2, "build", stream=tty)
            steps.step("load model")
            steps.step("check")
            steps.close()
            tty.flush()
        time.sleep(0.1)
        os.set_blocking(master, False)
        shown = os.read(master, 65536).decode(errors="replace")
    finally:
        os.close(slave)
        os.close(master)
    assert "\r" in shown and "build: 2/2" in shown and "check" in shown  # tqdm's bar, as before


@pytest.mark.slow
def test_build_output_in_a_log_file_is_one_line_per_step_without_quantizer_advice(tmp_path):
    log = tmp_path / "build.log"
    with open(log, "w") as f:  # stdout and stderr into one file, as CI or `> build.log 2>&1` keeps them
        proc = subprocess.run([sys.executable, "-m", "aknet_edge.build", "--out", str(tmp_path / "pkg"),
                               "--no-compare", "--eval-clips-per-class", "1"], stdout=f, stderr=subprocess.STDOUT,
                              timeout=600, cwd=REPO)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert PREPROCESS_ADVICE not in text
    assert "\r" not in text  # no bar redrawn in place: nothing runs together
    steps = [line for line in text.splitlines() if re.match(r"build \d+/\d+: ", line)]
    assert steps == ["build 1/6: load model", "build 2/6: export + lower", "build 3/6: fp16",
                     "build 4/6: calibrate (synthetic)", "build 5/6: check", "build 6/6: evaluate"], text[-3000:]
    assert "package: " in text and "accuracy on" in text
