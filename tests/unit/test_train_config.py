"""The learning-rate schedule, annealing included, and how older configs read."""

import pytest

from mechinterp_arith import TrainConfig
from mechinterp_arith.core.train_config import anneal_start, lr_at

HISTORY = [
    {"step": 50, "id_exact": 0.4},
    {"step": 100, "id_exact": 0.93},
    {"step": 150, "id_exact": 0.88},
    {"step": 200, "id_exact": 0.99},
]


@pytest.mark.parametrize(
    "settings, start",
    [
        ({"target_accuracy": 1.0}, 100),  # the first evaluation at or above 0.9
        ({"target_accuracy": 1.0, "anneal_at": 0.95}, 200),
        ({"target_accuracy": 1.0, "anneal_at": 0.999}, None),  # not reached yet
        ({"target_accuracy": 1.0, "anneal_at": None}, None),  # never
        ({}, None),  # fixed-length runs follow the fixed schedule
    ],
)
def test_annealing_starts_at_the_first_evaluation_that_reached_anneal_at(settings, start):
    assert anneal_start(TrainConfig(**settings), HISTORY) == start


def test_the_annealed_rate_falls_from_its_value_then_to_the_floor_and_stays():
    cfg = TrainConfig(steps=2000, warmup=50, lr=3e-3, min_lr_ratio=0.1, target_accuracy=1.0, anneal_steps=60)
    at = lr_at(400, cfg)
    assert lr_at(399, cfg, 400) == lr_at(399, cfg) and lr_at(400, cfg, 400) == pytest.approx(at)
    # a cosine from `at` down to the floor 0.1 * at over 60 steps: a third of the way (cos 60 deg = 1/2) the
    # rate has fallen a quarter of the gap, halfway (cos 90 deg = 0) half of it
    assert lr_at(420, cfg, 400) == pytest.approx(0.775 * at) and lr_at(430, cfg, 400) == pytest.approx(0.55 * at)
    assert lr_at(460, cfg, 400) == pytest.approx(0.1 * at) == lr_at(1900, cfg, 400)
    assert lr_at(1900, cfg) > lr_at(1900, cfg, 400)  # the fixed cosine is still above it


@pytest.mark.parametrize("value", [0.0, 1.5, -0.1])
def test_anneal_at_outside_0_1_is_one_clear_error(value):
    with pytest.raises(ValueError, match="anneal_at must be in"):
        TrainConfig(anneal_at=value)


def test_configs_written_before_annealing_existed_read_as_never_annealing():
    old = {
        k: v for k, v in TrainConfig(target_accuracy=0.995).to_dict().items() if k not in ("anneal_at", "anneal_steps")
    }
    cfg = TrainConfig.from_dict(old)
    assert cfg.anneal_at is None and anneal_start(cfg, HISTORY) is None
    assert TrainConfig.from_dict(TrainConfig().to_dict()).anneal_at == 0.9
    assert TrainConfig.from_dict(old, written_before=False).anneal_at == 0.9  # today's default (sweep settings)
