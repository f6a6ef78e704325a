"""Our safetensors format, and import of public TSM checkpoints by key mapping."""

import pytest
import torch

from aknet_edge.checkpoint import import_tsm, load_checkpoint, save_checkpoint, tsm_key_to_ours
from aknet_edge.config import BACKBONES, preset
from aknet_edge.errors import CheckpointError
from aknet_edge.model import build_model, compact_kernel


def public_tsm_state_dict(backbone: str, num_classes: int, seed: int = 0) -> dict:
    """A state dict laid out like the public TSM checkpoints (read from the TSM repository's model code):
    DataParallel's 'module.' prefix, torchvision ResNet names under 'base_model.', every block's
    conv1 wrapped by TemporalShift ('conv1.net.weight'), the classifier as 'new_fc'."""
    g = torch.Generator().manual_seed(seed)
    spec = BACKBONES[backbone]
    bottleneck = spec["block"] == "bottleneck"
    exp = 4 if bottleneck else 1
    sd = {}

    def bn(prefix, c):
        sd[prefix + ".weight"] = torch.rand(c, generator=g) + 0.5
        sd[prefix + ".bias"] = torch.randn(c, generator=g) * 0.1
        sd[prefix + ".running_mean"] = torch.randn(c, generator=g) * 0.1
        sd[prefix + ".running_var"] = torch.rand(c, generator=g) + 0.5
        sd[prefix + ".num_batches_tracked"] = torch.tensor(1000)

    p = "module.base_model."
    sd[p + "conv1.weight"] = torch.randn(spec["stem"], 3, 7, 7, generator=g) * 0.05
    bn(p + "bn1", spec["stem"])
    cin = spec["stem"]
    for i, (n, w) in enumerate(zip(spec["layers"], spec["widths"]), start=1):
        for b in range(n):
            q = f"{p}layer{i}.{b}."
            if bottleneck:
                sd[q + "conv1.net.weight"] = torch.randn(w, cin, 1, 1, generator=g) * 0.05
                sd[q + "conv2.weight"] = torch.randn(w, w, 3, 3, generator=g) * 0.05
                sd[q + "conv3.weight"] = torch.randn(w * 4, w, 1, 1, generator=g) * 0.05
                bn(q + "bn1", w), bn(q + "bn2", w), bn(q + "bn3", w * 4)
            else:
                sd[q + "conv1.net.weight"] = torch.randn(w, cin, 3, 3, generator=g) * 0.05
                sd[q + "conv2.weight"] = torch.randn(w, w, 3, 3, generator=g) * 0.05
                bn(q + "bn1", w), bn(q + "bn2", w)
            if b == 0 and (cin != w * exp or i > 1):
                sd[q + "downsample.0.weight"] = torch.randn(w * exp, cin, 1, 1, generator=g) * 0.05
                bn(q + "downsample.1", w * exp)
            cin = w * exp
    sd["module.new_fc.weight"] = torch.randn(num_classes, cin, generator=g) * 0.01
    sd["module.new_fc.bias"] = torch.zeros(num_classes)
    return sd


def test_save_load_round_trip(tmp_path):
    cfg = preset("demo-tiny", criterion="raster")
    model = build_model(cfg).eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    again = load_checkpoint(path)
    assert again.cfg == cfg
    x = torch.randn(1, 8, 3, 112, 112)
    with torch.no_grad():
        for a, b in zip(model(x), again(x)):
            torch.testing.assert_close(a, b)
    assert not list(tmp_path.glob(".*tmp*"))


def test_key_mapping_rules():
    assert tsm_key_to_ours("module.base_model.layer1.0.conv1.net.weight", cut=2) == "encoder.layer1.0.conv1.weight"
    assert tsm_key_to_ours("module.base_model.layer3.1.conv2.weight", cut=2) == "layer3.1.conv2.weight"
    assert tsm_key_to_ours("module.base_model.bn1.running_var", cut=2) == "encoder.bn1.running_var"
    assert tsm_key_to_ours("module.new_fc.bias", cut=2) == "fc.bias"
    assert tsm_key_to_ours("module.consensus.whatever", cut=2) is None


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_import_public_tsm_into_baseline_and_aknet(tmp_path, backbone):
    sd = public_tsm_state_dict(backbone, num_classes=400)
    path = tmp_path / "tsm.pth"
    torch.save({"epoch": 50, "arch": backbone, "state_dict": sd, "best_prec1": 74.1}, path)

    base_cfg = preset("r50-paper" if backbone == "resnet50" else "r18", arch="tsm", clip={"size": 112})
    tsm = build_model(base_cfg)
    rep = import_tsm(tsm, path, strict=True)
    assert not rep.missing and not rep.unexpected and not rep.compacted
    torch.testing.assert_close(tsm.encoder.layer1[0].conv1.weight, sd["module.base_model.layer1.0.conv1.net.weight"])
    torch.testing.assert_close(tsm.layer4[0].conv2.weight, sd["module.base_model.layer4.0.conv2.weight"])
    torch.testing.assert_close(tsm.fc.weight, sd["module.new_fc.weight"])

    ak = build_model(base_cfg.replace(arch="aknet", compact="center"))
    rep = import_tsm(ak, path)
    assert not rep.unexpected and not rep.skipped_shape
    # only AK-Net's own scorer/coordinate layers are missing
    assert {k.split(".")[0] for k in rep.missing} == {"scorer", "coord_proj"}
    w2d = sd["module.base_model.layer3.0.conv2.weight"]
    torch.testing.assert_close(ak.layer3[0].conv2.weight, compact_kernel(w2d, "center"))
    assert "layer3.0.conv2.weight" in rep.compacted
    torch.testing.assert_close(ak.encoder.layer2[0].conv1.weight, sd["module.base_model.layer2.0.conv1.net.weight"])


def test_import_mismatch_lists_keys():
    sd = public_tsm_state_dict("resnet18", num_classes=400)
    del sd["module.base_model.layer2.0.conv2.weight"]
    sd["module.base_model.extra.weight"] = torch.zeros(1)
    model = build_model(preset("r18", arch="tsm"))
    with pytest.raises(CheckpointError) as info:
        import_tsm(model, sd, strict=True)
    msg = str(info.value)
    assert "encoder.layer2.0.conv2.weight" in msg and "module.base_model.extra.weight" in msg


def test_import_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": CheckpointError("x")}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        import_tsm(build_model(preset("demo-tiny", arch="tsm")), path)


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(bad)
    # weights from a different config
    path = save_checkpoint(build_model(preset("demo-tiny")), tmp_path / "a.safetensors")
    from safetensors.torch import load_file, save_file
    from aknet_edge.checkpoint import read_metadata

    tensors = load_file(str(path))
    del tensors["fc.weight"]
    save_file(tensors, str(tmp_path / "b.safetensors"), metadata=read_metadata(path))
    with pytest.raises(CheckpointError, match="missing keys.*fc.weight"):
        load_checkpoint(tmp_path / "b.safetensors")
