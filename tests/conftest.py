import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
