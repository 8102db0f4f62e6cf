import numpy as np
import pytest
import torch
from support.models import interrupt_at, same_weights, weights

from mechinterp_arith import CheckpointError, ModelConfig, Task, TrainConfig, accuracy, build_model, data, load, train

TINY_TASK = Task("add", 2)
TINY = ModelConfig.for_task(TINY_TASK, n_layers=1, n_heads=2, d_model=16, d_mlp=32, seed=1)
SHORT = TrainConfig(steps=30, batch_size=32, eval_every=10, eval_n=50, warmup=5, snapshot_every=15, device="cpu")


def test_same_seed_same_weights_other_seed_other_weights():
    m1, h1, s1 = train(TINY_TASK, TINY, SHORT, progress=False)
    m2, h2, _ = train(TINY_TASK, TINY, SHORT, progress=False)
    assert same_weights(weights(m1), weights(m2))
    assert h1["loss"].tolist() == h2["loss"].tolist()
    assert sorted(s1) == [15, 30]
    m3, _, _ = train(
        TINY_TASK, TINY, TrainConfig(**{**SHORT.to_dict(), "seed": 1, "betas": SHORT.betas}), progress=False
    )
    assert not same_weights(weights(m1), weights(m3))


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    full, h_full, _ = train(TINY_TASK, TINY, SHORT, out_dir=tmp_path / "full", progress=False)

    interrupt = interrupt_at(20)
    with pytest.raises(KeyboardInterrupt):
        train(TINY_TASK, TINY, SHORT, out_dir=tmp_path / "cut", progress=False, callback=interrupt)
    assert not (tmp_path / "cut" / "model.safetensors").exists()  # no final checkpoint yet
    resumed, h_resumed, snaps = train(TINY_TASK, TINY, SHORT, out_dir=tmp_path / "cut", progress=False)
    assert same_weights(weights(full), weights(resumed))
    cols = ["step", "loss", "lr", "id_exact", "ood_exact"]
    assert h_full[cols].equals(h_resumed[cols])
    assert sorted(snaps) == [15, 30]
    ckpt = load(tmp_path / "cut", device="cpu")
    assert ckpt.snapshot_steps() == [15, 30]
    assert same_weights(weights(ckpt.load_snapshot(30)), weights(full))


def test_resume_refuses_a_state_from_other_settings(tmp_path):
    interrupt = interrupt_at()  # the first evaluation
    with pytest.raises(KeyboardInterrupt):
        train(TINY_TASK, TINY, SHORT, out_dir=tmp_path / "run", progress=False, callback=interrupt)
    other = TrainConfig(**{**SHORT.to_dict(), "lr": 1e-2, "betas": SHORT.betas})
    with pytest.raises(CheckpointError, match="different settings"):
        train(TINY_TASK, TINY, other, out_dir=tmp_path / "run", progress=False)
    _model, _, _ = train(TINY_TASK, TINY, other, out_dir=tmp_path / "run", resume=False, progress=False)
    assert load(tmp_path / "run", device="cpu").config["training"]["lr"] == 1e-2


@pytest.mark.slow
def test_gpt_nano_learns_two_digit_addition_in_about_a_minute():
    cfg = TrainConfig(steps=400, batch_size=128, lr=3e-3, warmup=100, eval_every=200, eval_n=500, device="cpu")
    model, history, _ = train(TINY_TASK, ModelConfig.for_task(TINY_TASK, seed=0), cfg, progress=False)
    split = data.id_split(TINY_TASK, seed=0)
    acc = accuracy(model, TINY_TASK, *split.test)
    assert acc["n"] == 2000 and acc["exact"] >= 0.95, acc
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]


def test_decoding_sees_weights_a_fused_optimizer_changed_in_eval_mode():
    # fused AdamW updates parameters without bumping their version counters; the decoder's cached
    # plain forward must still notice (the training loop evaluates in eval mode between steps)
    from mechinterp_arith import generate
    from mechinterp_arith.core.train_loop import make_optimizer

    model = build_model(TINY).eval()
    a, b = data.random_pairs(TINY_TASK, 64, seed=1)
    before = generate(model, TINY_TASK, a, b)
    assert before.path == "kv"
    opt = make_optimizer(model, TrainConfig(lr=0.5))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    after = generate(model, TINY_TASK, a, b)
    assert after.path == "kv" and np.array_equal(after.answers, generate(model, TINY_TASK, a, b, path="bridge").answers)
    assert not torch.equal(after.tokens, before.tokens)


@pytest.mark.parametrize("scheme", ["rotary", "randomized", "abacus", "coupling"])
def test_the_stacked_forward_trains_a_scheme_to_the_bridges_weights(scheme):
    """These schemes trained through the bridge before the stacked forward read position rules and
    rotary tables; it gives the same weights to float rounding, not bitwise (other kernels, LayerNorm
    affines folded). The key biases of table schemes are the exception: they shift every score of a
    query by one constant, so their true gradient is 0 and AdamW turns float noise into steps of the
    learning rate's size (0.0026 after 100 steps, in both forwards) that change no output."""
    task = Task("add", 2, format="reversed", width=4)
    weights, logits = [], []
    probe = task.encode_batch(torch.tensor([7, 1234, 56]), torch.tensor([45, 9876, 0]))[0][:, :-1]
    for forward in ("bridge", "plain"):
        mcfg = ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=32, d_mlp=64, positional=scheme)
        tcfg = TrainConfig(steps=30, batch_size=64, eval_every=30, eval_n=50, forward=forward, device="cpu")
        model, _, _ = train(task, mcfg, tcfg, progress=False)
        weights.append(model.state_dict())
        with torch.inference_mode():
            logits.append(model(probe))
    for name, w in weights[0].items():
        if scheme != "rotary" and name.endswith("attn.k.bias"):
            continue
        assert (w - weights[1][name]).abs().max() < 1e-5, name
    assert (logits[0] - logits[1]).abs().max() < 1e-4
