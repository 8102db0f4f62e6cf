"""The training rows, their loss mask and the learning-rate schedule: nothing trains."""

import pytest
import torch

from mechinterp_arith import Task, TrainConfig, data
from mechinterp_arith.core.train import TrainingData, lr_at


def test_loss_mask_covers_answer_tokens_only():
    task = Task("add", 3)
    td = TrainingData.build(task, data.id_split(task, 5, 0))
    # inputs are positions 0..14; those at 9..14 predict the 6 answer digits
    assert td.loss_mask[0].nonzero().squeeze(1).tolist() == list(range(9, 15))
    assert torch.equal(
        td.targets[0, 9:], td.inputs.new_tensor(task.encode(int(td.split.train_a[0]), int(td.split.train_b[0]))[10:])
    )
    plain = Task("add", 3, format="plain", pad=False)
    td = TrainingData.build(plain, data.id_split(plain, 1, 0, seed=4))
    text = plain.to_text(int(td.split.train_a[0]), int(td.split.train_b[0]))
    predicted = [plain.vocab[t] for t in td.targets[0][td.loss_mask[0]].tolist()]
    assert "".join(predicted) == text[text.index("=") + 1 :]  # answer digits and the end token


def test_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=0.01) and lr_at(55, cfg) < lr_at(20, cfg)
