"""The training forward: fast kernels and the stacked (weights-batched) forward against the bridge."""

import pytest
import torch

from mechinterp_arith import ModelConfig, Task, TrainConfig, build_model, data, train
from mechinterp_arith.core.fast_ops import causal_mask, masked_softmax
from mechinterp_arith.core.model import fused_layernorm
from mechinterp_arith.core.stacked_forward import StackedForward, stacked_forward_for
from mechinterp_arith.core.train_step import TrainingData, answer_loss, choose_forward


def test_masked_softmax_matches_torch_in_value_and_gradient():
    gen = torch.Generator().manual_seed(2)
    scores = torch.randn(6, 3, 4, 9, generator=gen).requires_grad_()
    g = torch.randn(6, 3, 4, 9, generator=gen)
    mask = causal_mask(4, 9)  # the last 4 of 9 positions as queries
    assert mask[0].isinf().tolist() == [False] * 6 + [True] * 3 and not mask[-1].isinf().any()
    ours = masked_softmax(scores, mask)
    ref = (scores + mask).softmax(-1)
    assert (ours - ref).abs().max() < 1e-6 and (ours[..., 0, 6:] == 0).all()
    (g_ours,) = torch.autograd.grad(ours, scores, g)
    (g_ref,) = torch.autograd.grad(ref, scores, g)
    assert (g_ours - g_ref).abs().max() < 1e-6


@pytest.mark.parametrize("act", ["gelu_new", "relu"])
def test_stacked_forward_is_each_bridge_to_float_rounding(act):
    task = Task("add", 3)
    td = TrainingData.build(task, data.id_split(task, 64, 0, seed=3))
    models = [build_model(ModelConfig.for_task(task, act_fn=act, seed=s)) for s in (0, 1)]
    fwd = stacked_forward_for(models, td.inputs[:8])
    assert isinstance(fwd, StackedForward)
    first = td.first_loss_position
    assert first == 9  # inputs 9..14 predict the six answer digits
    tokens = torch.stack([td.inputs[:32], td.inputs[32:]])
    logits = fwd(tokens, first)
    assert logits.shape == (2, 32, 6, 10)
    loss = sum(
        answer_loss(logits[k], td.targets[32 * k : 32 * (k + 1), first:], td.loss_mask[32 * k : 32 * (k + 1), first:])
        for k in range(2)
    )
    loss.backward()
    for k, model in enumerate(models):
        grads = {n: p.grad.clone() for n, p in model.state_dict(keep_vars=True).items() if p.grad is not None}
        assert len(grads) == 53  # every parameter receives its gradient: they are the bridge's own
        model.zero_grad()
        rows = slice(32 * k, 32 * (k + 1))
        with fused_layernorm(model):
            ref = model(td.inputs[rows])
        assert (logits[k] - ref[:, first:]).abs().max() < 1e-4
        answer_loss(ref, td.targets[rows], td.loss_mask[rows]).backward()
        for name, p in model.state_dict(keep_vars=True).items():
            if p.grad is not None:
                assert (grads[name] - p.grad).abs().max() < 1e-5 + 1e-4 * p.grad.abs().max(), name


def test_rotary_models_train_through_the_stacked_forward():
    task = Task("add", 1, width=2)
    mcfg = ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional="rotary")
    model = build_model(mcfg)
    td = TrainingData.build(task, data.id_split(task, seed=0))
    assert isinstance(stacked_forward_for([model], td.inputs[:8]), StackedForward)
    assert isinstance(choose_forward([model], td, "plain"), StackedForward)
    cfg = TrainConfig(steps=4, batch_size=8, eval_every=4, eval_n=10, warmup=1, device="cpu")
    _, history, _ = train(task, mcfg, cfg, progress=False)
    assert history["step"].tolist() == [4]
