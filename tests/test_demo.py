"""The shipped demo weights reach the accuracy target on freshly generated held-out clips."""

import pytest

from aknet_edge.checkpoint import DEMO_WEIGHTS, load_checkpoint
from aknet_edge.evaluate import DEMO_CHECKPOINTS, evaluate, heldout_synthetic

TARGET_TOP1 = 0.95


@pytest.mark.slow
def test_demo_aknet_reaches_target_on_fresh_heldout_clips():
    model = load_checkpoint(DEMO_WEIGHTS)
    assert model.cfg.labels[0] == "no_action" and model.cfg.arch == "aknet"
    # a seed no training run and no README figure used: fresh clips
    x, y = heldout_synthetic(model.cfg, clips_per_class=20, seed=7_777_777)
    r = evaluate(model, x, y)
    assert r.top1 >= TARGET_TOP1, r.per_class


def test_demo_weights_are_small_and_both_ship():
    for path in DEMO_CHECKPOINTS:
        assert path.exists() and path.stat().st_size < 3_000_000
    assert load_checkpoint(DEMO_CHECKPOINTS[1]).cfg.arch == "tsm"
