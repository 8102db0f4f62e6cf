"""The shipped checkpoints' headline figures, measured on samples (CLI test covers add3 via evaluate)."""

import pytest

from mechinterp_arith import accuracy, data, load
from mechinterp_arith.core.evaluate import held_out_pairs


def test_add3_is_the_study_setting_and_answers_ood_by_truncation(add3):
    assert add3.task.name == "add3" and add3.task.format == "paper" and add3.task.width == 5
    assert add3.config["training"]["n_train"] is None  # the default: 10,000 pairs
    assert (add3.model_config.n_layers, add3.model_config.n_heads, add3.model_config.d_model) == (3, 3, 48)
    assert add3.predict([349, 1349], [705, 705]).tolist() == [1054, 1054]
    assert add3.snapshot_steps() == list(range(100, 1001, 100))


@pytest.mark.slow
def test_mul3_reaches_95_percent_in_distribution_and_fails_ood():
    ckpt = load("mul3", device="cpu")
    a, b, source = held_out_pairs(ckpt, n=1000)
    assert source == "held-out test split"
    assert accuracy(ckpt.model, ckpt.task, a, b)["exact"] >= 0.95
    oa, ob = data.ood_both(ckpt.task, 4, 500, seed=0)
    assert accuracy(ckpt.model, ckpt.task, oa, ob)["exact"] <= 0.01
