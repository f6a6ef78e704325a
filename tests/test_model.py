"""Shapes for every preset, the baseline, compact_kernel, streaming state, and bad inputs."""

import pytest
import torch

from aknet_edge.config import PRESET_NAMES, preset
from aknet_edge.errors import ConfigError, InputShapeError
from aknet_edge.model import build_model, compact_kernel


@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("arch", ["aknet", "tsm"])
def test_shapes_and_dtypes_for_every_preset(name, arch):
    cfg = preset(name, arch=arch)
    model = build_model(cfg).eval()
    x = torch.randn(1, cfg.clip.frames, 3, cfg.clip.size, cfg.clip.size)
    with torch.no_grad():
        out = model(x)
    if arch == "tsm":
        assert out.shape == (1, cfg.num_classes) and out.dtype == torch.float32
        return
    logits, coords, scores = out
    k = cfg.num_keypoints
    assert logits.shape == (1, cfg.num_classes) and logits.dtype == torch.float32
    assert coords.shape == (1, k, 3) and coords.dtype == torch.float32
    assert scores.shape == (1, k) and scores.dtype == torch.float32
    assert coords.min() >= 0 and coords.max() <= 1
    # distinct kept positions
    assert len({tuple(c) for c in coords[0].tolist()}) == k


def test_scorer_and_encoder_get_gradients():
    cfg = preset("demo-tiny")
    model = build_model(cfg).train()
    x = torch.randn(2, 8, 3, 112, 112)
    logits, _, _ = model(x)
    logits.sum().backward()
    for name in ("scorer.key.weight", "scorer.query.weight", "scorer.pos.weight", "scorer.embed", "encoder.conv1.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_pairwise_scorer_runs_and_sums_to_one():
    cfg = preset("demo-tiny", scorer="pairwise")
    model = build_model(cfg).eval()
    f = torch.randn(2, cfg.num_points, model.encoder.out_channels)
    s = model.scorer(f, model.grid_coords)
    torch.testing.assert_close(s.sum(1), torch.ones(2))


def test_compact_kernel_modes_by_hand():
    w = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]])
    assert compact_kernel(w, "sum").flatten().tolist() == [6.0, 15.0, 24.0]
    assert compact_kernel(w, "center").flatten().tolist() == [2.0, 5.0, 8.0]
    assert compact_kernel(w, "mean").flatten().tolist() == [2.0, 5.0, 8.0]
    assert compact_kernel(torch.ones(2, 3, 1, 1), "sum").shape == (2, 3, 1)
    with pytest.raises(ConfigError):
        compact_kernel(torch.ones(2, 3, 3), "sum")
    with pytest.raises(ConfigError):
        compact_kernel(w, "max")


def test_compact_sum_matches_2d_conv_on_rows_constant_across_width():
    w = torch.randn(4, 3, 3, 3)
    x = torch.randn(1, 3, 10, 1).expand(1, 3, 10, 5).contiguous()  # constant along width
    y2 = torch.nn.functional.conv2d(x, w, padding=1)[..., 2]  # a column away from the border
    y1 = torch.nn.functional.conv1d(x[..., 0], compact_kernel(w, "sum"), padding=1)
    torch.testing.assert_close(y2, y1, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shift", ["online", "none"])
def test_frame_by_frame_equals_whole_clip(shift):
    cfg = preset("demo-tiny", shift=shift)
    model = build_model(cfg).eval()
    x = torch.randn(2, 8, 3, 112, 112)
    with torch.no_grad():
        whole = model(x)
        feats, state = [], None
        for t in range(8):
            f, state = model.encode_frame(x[:, t], state)
            feats.append(f)
        split = model.head(torch.stack(feats, 1).flatten(0, 1))
    for a, b in zip(whole, split):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_online_state_carries_across_clip_boundaries():
    """Two halves with the state handed over give what one 8-frame online pass gives."""
    cfg = preset("demo-tiny", shift="online")
    enc = build_model(cfg).eval().encoder
    x = torch.randn(1, 8, 3, 112, 112)
    with torch.no_grad():
        full, _ = enc(x)
        a, state = enc(x[:, :4])
        b, _ = enc(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([a, b]), full, atol=1e-5, rtol=1e-5)
    # and the state matters: without it the second half differs
    with torch.no_grad():
        b0, _ = enc(x[:, 4:])
    assert not torch.allclose(b0, b, atol=1e-4)


def test_offline_shift_refuses_frame_by_frame():
    model = build_model(preset("demo-tiny", shift="offline")).eval()
    with pytest.raises(ConfigError, match="offline"):
        model.encode_frame(torch.randn(1, 3, 112, 112))


def test_bad_inputs_give_documented_errors():
    model = build_model(preset("demo-tiny")).eval()
    with pytest.raises(InputShapeError, match=r"\(B, 8, 3, 112, 112\)"):
        model(torch.randn(1, 4, 3, 112, 112))
    with pytest.raises(InputShapeError, match="dtype"):
        model(torch.zeros(1, 8, 3, 112, 112, dtype=torch.uint8))
    with pytest.raises(InputShapeError, match="torch.Tensor"):
        model([[1, 2, 3]])
