"""The design card's layout: export/, runtime/, calibration/ install as aknet_edge.* in both install modes."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

SUBPACKAGES = ("export", "runtime", "calibration")
PROBE = (
    "import site, sys; site.addsitedir(sys.argv[1]); sys.path.append(sys.argv[2]); "
    "import aknet_edge.export as e, aknet_edge.runtime as r, aknet_edge.calibration as c; "
    "print(e.__file__); print(r.__file__); print(c.__file__)\n"
    "try:\n    import runtime\nexcept ImportError:\n    print('no-top-level')\n"
)


def _pip(*args: str, cwd: Path = REPO) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, cwd=str(cwd), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _probe(site_dir: Path, tmp_path: Path) -> list[str]:
    # -S: the given site dir with its .pth files, then the test env's packages (numpy, ...) appended *without*
    # their .pth files, so the test env's own editable aknet_edge cannot answer; run outside the repo
    import sysconfig

    purelib = sysconfig.get_paths()["purelib"]
    proc = subprocess.run([sys.executable, "-S", "-c", PROBE, str(site_dir), purelib], capture_output=True, text=True,
                          cwd=str(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def _listed_packages() -> list:
    import re

    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^packages\s*=\s*\[(.*?)\]", text, re.S | re.M)
    return re.findall(r'"([^"]+)"', block.group(1)) if block else []


def test_pyproject_lists_every_package_folder():
    """setuptools' explicit package list must name nested packages too, or wheels ship without them."""
    listed = set(_listed_packages())
    for sub in SUBPACKAGES:
        for init in (REPO / sub).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / sub).parts
            assert ".".join(("aknet_edge", sub, *rel)) in listed, f"add {init.parent} to pyproject's packages"


@pytest.mark.slow
def test_wheel_install_maps_subpackages(tmp_path):
    _pip("wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"))
    wheel = next((tmp_path / "dist").glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for sub in SUBPACKAGES:
        assert f"aknet_edge/{sub}/__init__.py" in names
        assert not any(n.startswith(f"{sub}/") for n in names), f"generic top-level {sub}/ in the wheel"
    assert "aknet_edge/weights/demo-tiny.safetensors" in names
    assert "aknet_edge/runtime/web/preview.html" in names  # the preview page is package data
    assert "aknet_edge/runtime/schema/jsonl.schema.json" in names  # the JSON Lines schema too
    for sub in SUBPACKAGES:  # nested packages too (runtime/trt/, runtime/sources/): none left out of the wheel
        for init in (REPO / sub).rglob("__init__.py"):
            assert f"aknet_edge/{sub}/{init.relative_to(REPO / sub).as_posix()}" in names, init
    target = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(target), str(wheel))
    out = _probe(target, tmp_path)
    for line, sub in zip(out[:3], SUBPACKAGES):
        assert Path(line).is_relative_to(target / "aknet_edge" / sub)
    assert out[3] == "no-top-level"


@pytest.mark.slow
def test_editable_install_maps_subpackages(tmp_path):
    prefix = tmp_path / "prefix"
    # --ignore-installed: never touch (uninstall) the test environment's own install of aknet-edge
    _pip("install", "--no-deps", "--no-build-isolation", "--ignore-installed", "--prefix", str(prefix), "-e", ".")
    site_dir = next(prefix.glob("lib/python*/site-packages"))
    out = _probe(site_dir, tmp_path)
    for line, sub in zip(out[:3], SUBPACKAGES):
        assert Path(line) == REPO / sub / "__init__.py"
    assert out[3] == "no-top-level"
