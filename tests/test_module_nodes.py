"""The INT8/FP16 float-module contract: declared paths exist in the model and map to nodes of its graph."""

import pytest
import torch

from aknet_edge.config import PRESET_NAMES, preset
from aknet_edge.errors import ConfigError
from aknet_edge.export.lower import lower
from aknet_edge.export.module_nodes import module_scopes, nodes_of_modules
from aknet_edge.export.onnx_export import to_onnx
from aknet_edge.model import KEYPOINT_PATH, STEM_CONV, build_model, float_modules

BASE_LOWERING = "tensorrt-8.5"  # aknet_edge.build.BASE_LOWERING: the graph the build quantizes


@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("arch", ["aknet", "tsm"])
def test_declared_float_modules_exist(name, arch):
    cfg = preset(name, arch=arch)
    model = build_model(cfg)
    modules = dict(model.named_modules())
    for precision in ("fp16", "int8"):
        declared = model.float_modules(precision)
        assert declared == float_modules(cfg, precision)
        missing = [p for p in declared if p not in modules]
        assert not missing, f"{type(model).__name__}.float_modules({precision!r}) names no module {missing}"
    if arch == "aknet":
        assert model.float_modules("int8") == (STEM_CONV, f"encoder.layer{cfg.cut}", *KEYPOINT_PATH)
        assert model.float_modules("fp16") == KEYPOINT_PATH
    else:
        assert model.float_modules("int8") == model.float_modules("fp16") == ()


def test_unknown_precision():
    with pytest.raises(ConfigError, match="fp16, int8"):
        float_modules(preset("demo-tiny"), "int4")


def test_module_scopes_follow_the_exporter():
    assert module_scopes("scorer") == ["scorer"]
    assert module_scopes("encoder.layer2.0.downsample.0") == ["encoder", "layer2", "layer2.0", "downsample",
                                                               "downsample.0"]
    for bad in ("", "encoder..conv1", "/encoder/conv1", "0.conv"):
        with pytest.raises(ConfigError, match="module path"):
            module_scopes(bad)


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda c: f"cut{c}")
def exported(request):
    torch.manual_seed(0)
    model = build_model(preset("demo-tiny", cut=request.param)).eval()
    raw = to_onnx(model)
    return model, {"exported": raw, "lowered": lower(raw, BASE_LOWERING)}


@pytest.mark.parametrize("which", ["exported", "lowered"])
def test_every_conv_module_maps_to_its_conv_node(exported, which):
    """The naming rule on every convolution, nested ones included (names survive lowering)."""
    model, graphs = exported
    graph = graphs[which]
    convs = [p for p, m in model.named_modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))]
    assert len(convs) > 10
    op = {n.name: n.op_type for n in graph.graph.node}
    for path in convs:
        nodes = nodes_of_modules(graph, [path])
        assert [op[n] for n in nodes] == ["Conv"], (path, nodes)


@pytest.mark.parametrize("which", ["exported", "lowered"])
def test_declared_modules_map_to_nodes(exported, which):
    model, graphs = exported
    graph = graphs[which]
    cut = model.cfg.cut
    nodes = nodes_of_modules(graph, model.float_modules("int8"))
    assert "/encoder/conv1/Conv" in nodes
    assert any(n.startswith(f"/encoder/layer{cut}/") for n in nodes)
    assert not any(n.startswith(f"/encoder/layer{cut - 1}/") for n in nodes)  # only the feeding stage
    assert any(n.startswith("/scorer/") for n in nodes) and any(n.startswith("/coord_proj/") for n in nodes)
    assert set(nodes_of_modules(graph, model.float_modules("fp16"))) < set(nodes)
    order = [n.name for n in graph.graph.node]
    assert nodes == [n for n in order if n in set(nodes)]  # graph order, no duplicates


def test_repeated_calls_are_included(exported):
    """BasicBlock calls its ReLU twice; the exporter names the second call ``relu_1``."""
    _, graphs = exported
    nodes = nodes_of_modules(graphs["lowered"], ["encoder.layer1.0.relu"])
    assert nodes == ["/encoder/layer1/layer1.0/relu/Relu", "/encoder/layer1/layer1.0/relu_1/Relu"]


def test_a_renamed_module_fails_loudly(exported):
    _, graphs = exported
    with pytest.raises(ConfigError, match=r"'encoder\.stem' matches no node.*model\.py"):
        nodes_of_modules(graphs["lowered"], ["scorer", "encoder.stem"])
    assert nodes_of_modules(graphs["lowered"], []) == []


def test_tsm_declares_nothing_and_exports():
    model = build_model(preset("demo-tiny", arch="tsm")).eval()
    graph = to_onnx(model)
    assert nodes_of_modules(graph, model.float_modules("int8")) == []
    assert nodes_of_modules(graph, ["encoder.conv1"]) == ["/encoder/conv1/Conv"]
