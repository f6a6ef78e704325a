"""The runtime imports and runs a whole (short) stream with torch made unimportable."""

from __future__ import annotations

import pytest

from conftest import blocking_imports, run_py
from test_runtime_support import demo_package


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    return demo_package(tmp_path_factory)


def test_stream_runs_without_torch_tensorrt_pycuda(pkg):
    code = blocking_imports("torch", "tensorrt", "pycuda") + (
        "import aknet_edge.run\n"
        "from aknet_edge.runtime import Recognizer\n"
        "events = []\n"
        f"with Recognizer({str(pkg)!r}, 'synthetic://?seed=2&segments=2&speed=0&size=112', on_event=events.append,"
        " source_options={'block': True}) as rec:\n"
        "    results = list(rec)\n"
        "assert len(results) > 5, len(results)\n"
        "assert rec.backend.name == 'onnxruntime'\n"
        "bad = [m for m in ('torch', 'tensorrt', 'pycuda') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok', len(results))\n"
    )
    proc = run_py(code, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stderr[-2000:]
