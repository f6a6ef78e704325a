"""Environment settings: one parser, one list, documented in the README; library calls change no process state."""

from __future__ import annotations

from pathlib import Path

import pytest

from aknet_edge import settings
from aknet_edge.errors import ConfigError

from conftest import REPO, run_py


@pytest.mark.parametrize("value,expected", [("1", True), ("TRUE", True), ("yes", True), ("on", True),
                                            ("0", False), ("false", False), ("", False), ("Off", False)])
def test_flag_values(value, expected):
    assert settings.flag("AKNET_ORT_CPU", {"AKNET_ORT_CPU": value}) is expected


def test_flag_rejects_what_it_cannot_read():
    with pytest.raises(ConfigError, match=r"AKNET_ORT_SPIN='maybe': expected 1/true/yes/on or 0/false/no/off"):
        settings.flag("AKNET_ORT_SPIN", {"AKNET_ORT_SPIN": "maybe"})
    with pytest.raises(KeyError, match="not an aknet_edge setting"):
        settings.raw("AKNET_TYPO")


def test_cache_dir_follows_the_variable(tmp_path):
    assert settings.cache_dir({"AKNET_EDGE_CACHE": str(tmp_path)}) == tmp_path
    assert settings.cache_dir({}) == Path("~/.cache/aknet_edge").expanduser()


def test_every_variable_the_code_reads_is_a_documented_setting():
    import re

    readme = (REPO / "README.md").read_text()
    found = set()
    for folder in ("aknet_edge", "runtime", "export", "calibration"):
        for path in (REPO / folder).rglob("*.py"):
            found |= set(re.findall(r"\b(AKNET_[A-Z_]+)\b", path.read_text()))
    assert found == set(settings.SETTINGS)
    for name in settings.SETTINGS:
        assert f"`{name}`" in readme, f"README lacks {name}"
    # and only settings.py reads the environment for them
    for folder in ("aknet_edge", "runtime", "export", "calibration"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name != "settings.py":
                assert not re.search(r"environ(\.get)?[\[(]\s*['\"]AKNET_", path.read_text()), path


def test_library_calls_leave_process_state_alone():
    r = run_py(
        "import torch, onnxruntime as ort\n"
        "torch.set_num_threads(3)\n"
        "from aknet_edge.config import preset\n"
        "from aknet_edge.model import build_model\n"
        "from aknet_edge.export.onnx_export import to_onnx\n"
        "from aknet_edge.export.lower import lower\n"
        "from aknet_edge.evaluate import evaluate, heldout_synthetic\n"
        "m = build_model(preset('demo-tiny')).eval()\n"
        "lower(to_onnx(m), 'tensorrt-8.5')\n"
        "x, y = heldout_synthetic(m.cfg, 1)\n"
        "evaluate(m, x, y)\n"
        "print(torch.get_num_threads())\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "3"
