"""The runtime side (and everything it needs) imports with torch made unimportable."""

from conftest import blocking_imports, run_py

BLOCK_TORCH = blocking_imports("torch")


def test_runtime_modules_import_without_torch():
    code = BLOCK_TORCH + (
        "import aknet_edge, aknet_edge.runtime, aknet_edge.preprocess, aknet_edge.synthetic, "
        "aknet_edge.keys, aknet_edge.config, aknet_edge.errors, aknet_edge.data, aknet_edge.package, "
        "aknet_edge.runtime.trt, aknet_edge.runtime.device_memory\n"
        "from aknet_edge.config import preset\n"
        "from aknet_edge.preprocess import preprocess_clip\n"
        "from aknet_edge.synthetic import make_clip\n"
        "x = preprocess_clip(make_clip(1, seed=0), preset('demo-tiny').clip)\n"
        "assert x.shape == (8, 3, 112, 112), x.shape\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    proc = run_py(code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_torch_block_really_blocks():
    proc = run_py(BLOCK_TORCH + "import aknet_edge.model")
    assert proc.returncode != 0 and "torch" in proc.stderr
