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


def test_the_end_token_is_a_target_unless_a_fixed_length_format_leaves_it_out():
    """end_token=False (TrainConfig.end_token_loss; coupling's default): a padded format's end token,
    which decoding never generates, is no target; the unpadded format's, which ends the answer, still is."""
    padded = Task("add", 2, format="reversed", width=3)  # 007+045=2500.
    split = data.id_split(padded, 5, 0)
    with_end, without = TrainingData.build(padded, split), TrainingData.build(padded, split, end_token=False)
    end = padded.vocab.index(".")
    assert with_end.targets[0][with_end.loss_mask[0]].tolist()[-1] == end
    assert without.loss_mask[0].sum() == with_end.loss_mask[0].sum() - 1 == padded.answer_width
    assert end not in without.targets[0][without.loss_mask[0]].tolist()
    paper = Task("add", 3)  # no end token: nothing to leave out
    assert torch.equal(TrainingData.build(paper, data.id_split(paper, 5, 0), end_token=False).loss_mask[0],
                       TrainingData.build(paper, data.id_split(paper, 5, 0)).loss_mask[0])  # fmt: skip
    loose = Task("add", 3, format="plain", pad=False)
    split = data.id_split(loose, 1, 0, seed=4)
    assert torch.equal(
        TrainingData.build(loose, split, end_token=False).loss_mask, TrainingData.build(loose, split).loss_mask
    )
    assert TrainConfig.for_scheme("coupling", end_token_loss=False).end_token_loss is False
    assert TrainConfig.for_scheme("learned").end_token_loss is True
    assert TrainConfig.from_dict({}).end_token_loss is True  # configs written before the key trained it


def test_schedule_warms_up_then_decays():
    cfg = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=0.01) and lr_at(55, cfg) < lr_at(20, cfg)
