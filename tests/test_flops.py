"""FLOPs come from torch's counter; the r50-paper bound as the README reports it."""

import pytest

from aknet_edge.config import preset
from aknet_edge.flops import compare, count_cost
from aknet_edge.model import build_model


def test_counter_matches_a_conv_by_hand():
    cfg = preset("demo-tiny", arch="tsm")
    cost = count_cost(build_model(cfg), cfg)
    # stem: 8 frames x 56x56 outputs x 16 channels x (3*7*7) MACs x 2
    assert cost.stage_gflops["stem"] == pytest.approx(8 * 56 * 56 * 16 * 147 * 2 / 1e9, rel=1e-9)
    assert cost.gflops == pytest.approx(sum(cost.stage_gflops.values()), rel=1e-9)


@pytest.mark.slow
def test_r50_paper_ratio_bounds():
    ak, tsm = compare(preset("r50-paper"))
    ratio = ak.gflops / tsm.gflops
    # the encoder (stem + stages 1-2) is shared and costs 44% of the baseline on its own
    assert tsm.stage_gflops["stem"] + tsm.stage_gflops["layer1"] + tsm.stage_gflops["layer2"] > 0.4 * tsm.gflops
    assert 0.6 < ratio < 0.72  # the default misses the 0.6 target; README says why
    ak_small, tsm_same = compare(preset("r50-paper", keep_ratio=0.125))
    assert ak_small.gflops / tsm_same.gflops <= 0.6  # the config the README names as meeting it
    assert tsm_same.gflops == pytest.approx(tsm.gflops)
