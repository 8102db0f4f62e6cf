"""A model's weights read in a wider format (core/widening.py, Checkpoint.widened): the widened bridge
equals a bridge built at the wider context with the same weights, every fast path equals the widened
bridge, and the schemes whose table cannot hold the wider rows say so in one line."""

import pytest
import torch

from mechinterp_arith import ModelConfig, Task, build_model
from mechinterp_arith.analysis.relation_by_length import relation_by_length
from mechinterp_arith.core.checkpoint import Checkpoint
from mechinterp_arith.core.decoding import generate
from mechinterp_arith.core.errors import NotApplicable
from mechinterp_arith.core.evaluate import evaluate_checkpoint
from mechinterp_arith.core.numbers import with_digits
from mechinterp_arith.core.plain_forward import LOGIT_RTOL, MAX_LOGIT_DIFF, PlainGPT
from mechinterp_arith.core.seeding import generator
from mechinterp_arith.core.widening import widen, widening_limit

TASK = Task("add", 2, format="reversed", width=4)  # trained on 2 digits, rows of 4-digit operands
WIDE = 9  # coupling's table at width 4 has 2 * (4 + 2 + 1) = 14 rows: IDs up to 11 at 9 digits


def _model(scheme: str, seed: int = 3):
    cfg = ModelConfig.for_task(TASK, n_layers=2, n_heads=2, d_model=16, d_mlp=32, positional=scheme, seed=seed)
    model = build_model(cfg, task=TASK).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model, cfg


def _pairs(m: int, n: int = 16, seed: int = 0):
    g = generator(seed, "test_widening", m)
    return with_digits(m, n, g), with_digits(m, n, g)


def _close(ours: torch.Tensor, ref: torch.Tensor) -> bool:
    return torch.allclose(ours, ref, atol=MAX_LOGIT_DIFF, rtol=LOGIT_RTOL)


@pytest.mark.parametrize("scheme", ["coupling", "abacus", "rotary", "nope"])
def test_widened_bridge_is_a_bridge_built_at_the_wider_width(scheme):
    model, cfg = _model(scheme)
    wide_model, wide = widen(model, cfg, TASK, WIDE)
    assert wide == Task("add", 2, format="reversed", width=WIDE) and wide_model.cfg.n_ctx == wide.n_ctx
    assert model.cfg.n_ctx == cfg.n_ctx < wide.n_ctx  # the original is untouched
    # the reference: the same architecture built for the wide task, its table's first rows the trained ones
    ref_cfg = ModelConfig(**{**cfg.to_dict(), "n_ctx": wide.n_ctx})
    ref = build_model(ref_cfg, task=wide).eval()
    weights = dict(model.state_dict())
    if "pos_embed.weight" in weights:
        table = ref.state_dict()["pos_embed.weight"].clone()
        table[: cfg.n_ctx] = weights["pos_embed.weight"]
        weights["pos_embed.weight"] = table
    ref.load_state_dict(weights)
    for m in (3, 7, WIDE):
        a, b = _pairs(m)
        tokens = wide.encode_batch(a, b)[0][:, :-1]
        with torch.inference_mode():
            ours, expected = wide_model(tokens), ref(tokens)
        assert expected.abs().max() > 2 and _close(ours, expected), (scheme, m)
    if scheme in ("coupling", "abacus"):  # IDs past the trained table would read the reference's extra rows
        a, b = _pairs(WIDE)
        ids = wide_model.original_model.position_rule.ids(wide.encode_batch(a, b)[0][:, :-1])
        assert int(ids.max()) < cfg.n_ctx


@pytest.mark.parametrize("scheme", ["coupling", "abacus", "rotary", "nope", "randomized"])
def test_fast_paths_use_the_widened_context(scheme):
    model, cfg = _model(scheme)
    wide_model, wide = widen(model, cfg, TASK, WIDE)
    a, b = _pairs(WIDE, n=32, seed=1)
    tokens = wide.encode_batch(a, b)[0]
    with torch.inference_mode():
        ref = wide_model(tokens[:, :-1])
        plain, _ = PlainGPT(wide_model).run(tokens[:, :-1])
    assert _close(plain, ref)
    # greedy answers: the decoder's fast path against greedy decoding through the bridge, token by token
    P, A = wide.prompt_len, wide.answer_width
    rows = tokens[:, :P]
    with torch.inference_mode():
        for _ in range(A):
            rows = torch.cat([rows, wide_model(rows)[:, -1].argmax(-1, keepdim=True)], 1)
    gen = generate(wide_model, wide, a, b)
    assert gen.path != "bridge" and torch.equal(gen.tokens[:, P : P + A], rows[:, P:])


def test_checkpoint_widens_where_its_lengths_need():
    model, cfg = _model("coupling")
    ckpt = Checkpoint(model, TASK, cfg)
    assert ckpt.widened(TASK.width) is ckpt and ckpt.for_length(3) is ckpt
    a, b = _pairs(7, n=8)
    wide = ckpt.widened(7)
    assert wide.task.width == 7 and wide.model_config == cfg
    assert (ckpt.predict(a, b) == wide.predict(a, b)).all()  # predict widens as needed
    # relation by length past the width, with the stop rule: the curve ends at the first length below 0.5
    table = relation_by_length(ckpt, range(1, WIDE + 1), n=50, stop_below=0.5)
    assert table.index.tolist() == list(range(1, len(table) + 1))
    assert (table["exact"].iloc[:-1] >= 0.5).all() and table["exact"].iloc[-1] < 0.5
    scores = evaluate_checkpoint(ckpt, [3, 6, WIDE], n=50)
    assert sorted(scores["ood"]) == ["3", "6", "9"] and len(scores["ood"]["9"]["per_digit"]) == WIDE + 1


def test_widening_past_the_table_raises_one_line_naming_the_limit():
    model, cfg = _model("coupling")
    limit = widening_limit("coupling", TASK, cfg.n_ctx)
    assert limit == cfg.n_ctx - 3  # the answer's top ID, (limit + 1) + 1, is the table's last row
    widen(model, cfg, TASK, limit)
    with pytest.raises(
        NotApplicable, match=rf"^coupling IDs reach {limit + 3} at {limit + 1} digits; .* {cfg.n_ctx} rows"
    ):
        widen(model, cfg, TASK, limit + 1)
    learned, lcfg = _model("learned")
    ckpt = Checkpoint(learned, TASK, lcfg)
    with pytest.raises(NotApplicable, match=r"^learned positions index the table by token: 5-digit rows"):
        ckpt.predict([12345], [1])
    with pytest.raises(NotApplicable, match="learned positions"):
        relation_by_length(ckpt, [1, 5], n=10)  # refused before any length is scored
    with pytest.raises(ValueError, match="narrower"):
        widen(model, cfg, TASK, 3)
