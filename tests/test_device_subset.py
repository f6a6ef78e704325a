"""The device-side subset and the install metadata the device relies on.

The subset (tests/conftest.py: DEVICE_TESTS) names tests by file and function: a renamed test must not silently
drop out of what .ci/run runs under Python 3.8, 3.10 and 3.12. And OpenCV stays out of the base dependencies, so
that installing aknet-edge never shadows JetPack's (or Debian's) cv2 with a pip wheel.
"""

from __future__ import annotations

import ast

import pytest

from conftest import DEVICE_TESTS, REPO

try:
    import tomllib
except ImportError:  # Python < 3.11: pytest itself depends on tomli there
    import tomli as tomllib


def _test_functions(path) -> set:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name.startswith("test_")}


@pytest.mark.parametrize("name", sorted(DEVICE_TESTS))
def test_every_device_test_named_exists(name):
    path = REPO / "tests" / name
    assert path.is_file(), f"DEVICE_TESTS names {name}, which does not exist"
    wanted = DEVICE_TESTS[name]
    if wanted != "*":
        missing = sorted(set(wanted) - _test_functions(path))
        assert not missing, f"DEVICE_TESTS names tests that {name} does not have: {missing}"


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_opencv_wheel_is_an_extra_not_a_dependency():
    project = _pyproject()["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("opencv")], project["dependencies"]
    extras = project["optional-dependencies"]
    for extra in ("opencv", "build"):  # build: the README's training and test commands get pip's OpenCV from it
        assert any(d.startswith("opencv-python-headless") for d in extras[extra]), extra
    assert project["requires-python"] == ">=3.8"


def test_device_marker_is_registered():
    markers = _pyproject()["tool"]["pytest"]["ini_options"]["markers"]
    assert any(m.startswith("device:") for m in markers)
