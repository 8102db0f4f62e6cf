"""The plain forward shared by fast decoding and patching, against the hooked bridge."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mechinterp_arith import ModelConfig, Task, data, load
from mechinterp_arith.core.decoding import generate, kv_greedy, shared_prefix_split
from mechinterp_arith.core.model import build_model
from mechinterp_arith.core.plain_forward import (
    KVBuffer,
    PlainGPT,
    Segment,
    checked_plain_forward,
    gelu_tanh,
    has_hooks,
    unsupported_reasons,
)


def test_gelu_tanh_equals_torch():
    x = torch.linspace(-12, 12, 100_001)
    assert (gelu_tanh(x) - F.gelu(x, approximate="tanh")).abs().max() < 2e-6


@pytest.mark.parametrize("name", ["add3", "mul3"])
def test_plain_forward_equals_the_bridge(name, add3):
    ckpt = add3 if name == "add3" else load(name)
    a, b = data.ood_both(ckpt.task, 4, 64, seed=0)
    tokens, _ = ckpt.task.encode_batch(a, b)
    tokens = tokens[:, :-1]
    with torch.inference_mode():
        ref, cache = ckpt.model.run_with_cache(tokens)
        logits, ours = PlainGPT(ckpt.model).run(tokens)
    assert (logits - ref).abs().max() < 2e-4 and ref.abs().max() > 5
    for layer in range(ckpt.model.cfg.n_layers):
        for point, hook in (("resid_pre", "hook_resid_pre"), ("z", "attn.hook_z"), ("mlp_out", "hook_mlp_out")):
            assert torch.allclose(ours[(point, layer)], cache[f"blocks.{layer}.{hook}"], atol=2e-5), (point, layer)


def test_kv_buffer_and_last_only_give_the_full_forwards_logits(add3):
    plain = PlainGPT(add3.model)
    tokens = torch.randint(0, 10, (16, 12), generator=torch.Generator().manual_seed(0))
    full, _ = plain.run(tokens)
    past = KVBuffer(plain.L, 16, plain.H, 12, plain.dh, tokens.device, torch.float32)
    with torch.inference_mode():
        x = plain.blocks(plain.embed_tokens(tokens[:, :7]), Segment(past=past), last_only=True)
        assert x.shape == (16, 1, plain.D)
        assert torch.allclose(plain.logits(x[:, -1]), full[:, 6], atol=1e-4)  # float rounding only
        for p in range(7, 12):  # one position at a time, then the rest
            x = plain.blocks(plain.embed_tokens(tokens[:, p : p + 1], p), Segment(start=p, past=past))
            assert torch.allclose(plain.logits(x[:, -1]), full[:, p], atol=1e-4)


def test_checked_plain_forward_follows_weights_and_hooks(add3):
    model = add3.model
    probe = torch.zeros(2, 10, dtype=torch.long)
    plain = checked_plain_forward(model, probe)
    assert plain is not None and checked_plain_forward(model, probe) is plain  # cached
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda act, hook: act)]):
        assert has_hooks(model) and checked_plain_forward(model, probe) is None
    assert not has_hooks(model)
    w = model.blocks[0].attn.q.weight if hasattr(model.blocks[0].attn, "q") else next(model.parameters())
    with torch.no_grad():
        w.add_(0.0)  # in place: the version counter moves, so the plain forward is rebuilt and re-checked
    again = checked_plain_forward(model, probe)
    assert again is not None and again is not plain


def test_unsupported_models_are_named():
    class Cfg:
        positional_embedding_type = "rotary"
        normalization_type = "RMS"
        act_fn = "solu"
        n_heads = 2

    class Model(torch.nn.Module):
        cfg = Cfg()

    reasons = unsupported_reasons(Model())
    assert (
        any("rotary" in r for r in reasons) and any("RMS" in r for r in reasons) and any("solu" in r for r in reasons)
    )
    task = Task("add", 2)
    rotary = build_model(
        ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=16, positional="rotary"), "cpu", task
    )
    assert PlainGPT(rotary).rotary is not None  # rotary runs on the bridge's own tables
    rotary.original_model.rotary = None  # a rotary bridge without them
    with pytest.raises(NotImplementedError, match="rotary positions without the bridge's rotary tables"):
        PlainGPT(rotary)


def test_shared_prefixes_are_computed_once_and_decode_like_the_bridge(add3):
    task = add3.task
    a = torch.tensor([1349, 1349, 1349, 2000, 2000, 7, 7, 7] * 8)
    b = torch.arange(64) * 13 % 1000
    tokens, _ = task.encode_batch(a, b)
    s, inverse, first = shared_prefix_split(tokens[:, : task.prompt_len], 10)
    # a's 5 tokens and b's two leading zeros: 3 distinct prefixes of 7 tokens (3*7 + 64*3 positions)
    assert s == 7 and len(first) == 3
    assert torch.equal(tokens[first[inverse], :s], tokens[:, :s])  # each row maps to a row with its prefix
    out, logits = kv_greedy(add3.model, tokens[:, : task.prompt_len], task.answer_width, return_logits=True, rows=24)
    ref = generate(add3.model, task, a, b, path="bridge")
    assert torch.equal(out, ref.tokens) and logits.shape == (64, task.answer_width, 10)
    assert shared_prefix_split(torch.arange(4).view(4, 1).expand(4, 10), 10)[0] == 0  # nothing shared: no split


def test_generate_falls_back_to_the_bridge_while_hooks_are_attached(add3):
    a, b = data.ood_both(add3.task, 4, 8, seed=1)
    calls = []
    with add3.model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda act, hook: calls.append(1))]):
        got = generate(add3.model, add3.task, a, b)
        with pytest.raises(ValueError, match="path='kv' needs"):
            generate(add3.model, add3.task, a, b, path="kv")
    assert calls and got.path == "bridge"  # the hook fired: the hooked path ran
    fast = generate(add3.model, add3.task, a, b)
    assert fast.path == "kv" and np.array_equal(got.answers, fast.answers)


def test_too_long_inputs_are_one_clear_error(add3):
    plain = PlainGPT(add3.model)
    with pytest.raises(ValueError, match="input length 16 exceeds the model's context of 15 positions"):
        plain.run(torch.zeros(1, 16, dtype=torch.long))


def test_long_inputs_decode_fewer_rows_a_pass_with_the_same_answers(add3, monkeypatch):
    """A pass holds at most SCORE_BUDGET attention scores (100-digit operands: a few hundred rows, not
    4,096); fewer rows a pass give the same tokens on both paths."""
    from mechinterp_arith.core import decoding

    task = add3.task
    a, b = data.ood_both(task, 4, 50, seed=2)
    whole = generate(add3.model, task, a, b)
    monkeypatch.setattr(decoding, "SCORE_BUDGET", 3 * task.seq_len**2 * 7)
    assert decoding.rows_within(4096, add3.model.cfg.n_heads, task.seq_len) == 7
    for path in ("kv", "bridge"):
        chunked = generate(add3.model, task, a, b, path=path)
        assert chunked.path == path and torch.equal(chunked.tokens, whole.tokens)
