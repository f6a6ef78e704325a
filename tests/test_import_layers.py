"""Import layers: import-linter's contracts (pyproject.toml, [tool.importlinter]) hold, and an inverted import breaks them.

grimp, import-linter's graph, reads a package from its folder, but this repository maps folders to subpackages
(export/ is aknet_edge.export: [tool.setuptools.package-dir]). So lint-imports runs on a link tree of the installed
layout, from inside that tree (lint-imports puts its working directory first on sys.path, and reads the
pyproject.toml it finds there). .ci/run's main stage runs this file as a script for the same check with
lint-imports' full report: ``python tests/test_import_layers.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python < 3.11: the device stages, which install no import-linter either
    tomllib = None

REPO = Path(__file__).resolve().parents[1]
# the venv's own lint-imports first (this interpreter's bin/), then PATH
LINT_IMPORTS = (shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports"))
MISSING = ("import-linter is not installed (the `dev` extra)" if LINT_IMPORTS is None
           else "needs tomllib (Python >= 3.11) to read pyproject.toml" if tomllib is None else "")


def layout_view(repo: Path, dest: Path) -> Path:
    """A link tree of the installed layout of ``repo``'s packages under ``dest``, with pyproject.toml beside it.

    The top-level package becomes a folder of links to its files; each subpackage mapped from another folder is a
    link to that folder, placed where pip would install it.
    """
    package_dirs = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for name in sorted(package_dirs, key=lambda n: n.count(".")):  # parents before the subpackages mapped into them
        folder, target = repo / package_dirs[name], dest.joinpath(*name.split("."))
        if "." in name:
            target.symlink_to(folder, target_is_directory=True)
        else:
            target.mkdir(parents=True)
            for entry in folder.iterdir():
                (target / entry.name).symlink_to(entry)
    (dest / "pyproject.toml").symlink_to(repo / "pyproject.toml")
    return dest


def lint_imports(view: Path, capture: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(view)}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=view, env=env, capture_output=capture, text=True,
                          timeout=120)


def main() -> int:
    """CI's check (.ci/run): lint-imports on the installed layout, its report on stdout; exit status is its own."""
    if MISSING:
        print(f"lint-imports cannot run: {MISSING}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="aknet-import-layers-") as tmp:
        return lint_imports(layout_view(REPO, Path(tmp)), capture=False).returncode


pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING)


@pytest.fixture
def view(tmp_path):
    return layout_view(REPO, tmp_path / "view")


def _own_copy(view: Path, rel: str) -> Path:
    """``view/rel`` as a real file, every linked folder on the way copied, so it can be edited without the repo."""
    path = view
    for part in Path(rel).parts:
        path = path / part
        if path.is_symlink():
            real = path.resolve()
            path.unlink()
            if real.is_dir():
                shutil.copytree(real, path, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copyfile(real, path)
    return path


def _report(proc: subprocess.CompletedProcess) -> str:
    return " ".join((proc.stdout + proc.stderr).split())  # rich wraps long lines


def test_the_layers_hold(view):
    proc = lint_imports(view)
    out = _report(proc)
    assert proc.returncode == 0, out
    assert "0 broken" in out and "BROKEN" not in out, out


@pytest.mark.parametrize("rel, code, contract, chain", [
    # ground -> stage, and imports inside functions count: config once took the class names from synthetic (cv2)
    ("aknet_edge/config.py", "def _classes():\n    from .synthetic import CLASSES\n    return CLASSES\n",
     "CLIs over stages over the ground", "aknet_edge.config -> aknet_edge.synthetic"),
    ("aknet_edge/graph_io.py", "from aknet_edge.runtime import backends\n",
     "CLIs over stages over the ground", "aknet_edge.graph_io -> aknet_edge.runtime.backends"),
    ("aknet_edge/package.py", "from .calibration.options import CALIB_METHODS\n",
     "CLIs over stages over the ground", "aknet_edge.package -> aknet_edge.calibration.options"),
    # a stage -> a CLI
    ("aknet_edge/calibration/data.py", "from aknet_edge import build\n",
     "CLIs over stages over the ground", "aknet_edge.calibration.data -> aknet_edge.build"),
    # the export stage once took PARENT_ROWS from the runtime
    ("aknet_edge/export/onnx_export.py", "def _rows():\n    from aknet_edge.runtime.backends import PARENT_ROWS\n",
     "Export, calibration and the model libraries import no runtime",
     "aknet_edge.export.onnx_export -> aknet_edge.runtime.backends"),
    ("aknet_edge/runtime/events.py", "from aknet_edge.export import targets\n",
     "The runtime imports no build-side module", "aknet_edge.runtime.events -> aknet_edge.export.targets"),
    ("aknet_edge/runtime/events.py", "import torch\n",
     "The runtime imports no build-side module", "aknet_edge.runtime.events -> torch"),
    ("aknet_edge/export/targets.py", "from aknet_edge.calibration import options\n",
     "Export imports no calibration and no engine build", "aknet_edge.export.targets -> aknet_edge.calibration"),
    ("aknet_edge/media.py", "import cv2\n",
     "The ground imports no heavy dependency", "aknet_edge.media -> cv2"),
])
def test_an_inverted_import_breaks_its_contract(view, rel, code, contract, chain):
    path = _own_copy(view, rel)
    path.write_text(path.read_text() + "\n\n" + code)
    proc = lint_imports(view)
    out = _report(proc)
    assert proc.returncode != 0, out
    assert f"{contract} BROKEN" in out, out
    assert chain in out, out


def test_a_module_outside_every_layer_fails(view):
    # exhaustive: a new module under aknet_edge/ must be placed in a layer (pyproject.toml) before anything passes
    (view / "aknet_edge" / "newcomer.py").write_text("from . import errors\n")
    proc = lint_imports(view)
    out = _report(proc)
    assert proc.returncode != 0, out
    assert "aknet_edge.newcomer" in out, out


if __name__ == "__main__":
    sys.exit(main())
