"""Inference-time interventions (analysis/repair.py): each one's effect where it is known by hand, on
the shipped add3, a hand-set adder and an untrained coupled model."""

import math

import pytest
import torch
from support.carryless_model import carryless_adder
from support.models import shipped

from mechinterp_arith import ModelConfig, Task, data
from mechinterp_arith.analysis import repair
from mechinterp_arith.analysis.activations import get_act_name
from mechinterp_arith.core.decoding import generate
from mechinterp_arith.core.model import build_model
from mechinterp_arith.core.numbers import as_operands
from mechinterp_arith.core.position_schemes import POSITION_IDS_HOOK

COUPLED_TASK = Task("add", 2, format="reversed", width=3)


@pytest.fixture(scope="module")
def add3():
    return shipped("add3")


@pytest.fixture(scope="module")
def coupled():
    cfg = ModelConfig.for_task(COUPLED_TASK, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional="coupling", seed=3)
    return build_model(cfg, task=COUPLED_TASK)


def ood_prompt(task, m=4, n=16):
    a, b = data.ood_both(task, m, n, seed=1)
    return task.encode_batch(a, b)[0][:, : task.prompt_len], a, b


def logits_with(model, intervention, task, tokens):
    with torch.inference_mode(), model.hooks(fwd_hooks=intervention.hooks(model, task)):
        return model(tokens)


def test_scaling_by_one_and_identity_remaps_change_nothing(add3, coupled):
    tokens, a, b = ood_prompt(add3.task)
    with torch.inference_mode():
        plain = add3.model(tokens)
    identity = repair.position_remap("identity", lambda task: lambda ids: ids)
    for iv in (
        repair.attention_scaling(1.0),
        identity,
        repair.clamp_places(add3.task.width),
        repair.readout_attention(3, 0.0),
    ):
        assert iv.hooks(add3.model, add3.task)  # a hook is attached ...
        torch.testing.assert_close(logits_with(add3.model, iv, add3.task, tokens), plain, atol=1e-5, rtol=1e-5)
    hooked = repair.hooked_answers(add3.model, add3.task, repair.attention_scaling(1.0))(a, b)
    assert (hooked == generate(add3.model, add3.task, a, b).answers).all()  # ... and answers are the same

    # coupled IDs of a 3-digit format reach 5 (answer place 3 + 2): clamping or interpolating at 5 is the identity
    ctokens, _, _ = ood_prompt(COUPLED_TASK, m=3)
    with torch.inference_mode():
        cplain = coupled(ctokens)
    for iv in (repair.clamp_ids(5), repair.interpolate_ids(5)):
        torch.testing.assert_close(logits_with(coupled, iv, COUPLED_TASK, ctokens), cplain, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(logits_with(coupled, repair.clamp_ids(3), COUPLED_TASK, ctokens), cplain, atol=1e-3)


def test_scaling_gives_the_softmax_of_the_scaled_scores_and_the_heads_use_it(add3):
    model, task = add3.model, add3.task
    tokens, _, _ = ood_prompt(task, n=4)
    seen = {}

    def grab(name):
        def fn(x, hook):
            seen[name] = x.detach().clone()
            return x

        return fn

    layer, factor = 1, 2.5
    names = [get_act_name(n, layer) for n in ("q", "k", "v", "pattern", "z")]
    with torch.inference_mode(), model.hooks(fwd_hooks=repair.attention_scaling(factor, [layer]).hooks(model, task)):
        model.run_with_hooks(tokens, fwd_hooks=[(name, grab(name)) for name in names])
    q, k, v = (seen[get_act_name(n, layer)] for n in ("q", "k", "v"))  # [batch, pos, head, d_head]
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    causal = torch.triu(torch.ones(scores.shape[-1], scores.shape[-1], dtype=torch.bool), 1)
    by_hand = torch.softmax((factor * scores).masked_fill(causal, float("-inf")), -1)
    torch.testing.assert_close(seen[get_act_name("pattern", layer)], by_hand, atol=1e-5, rtol=1e-4)
    assert (seen[get_act_name("pattern", layer)][..., causal] == 0).all()  # masked keys stay masked
    torch.testing.assert_close(
        seen[get_act_name("z", layer)], torch.einsum("bhqk,bkhd->bqhd", by_hand, v), atol=1e-5, rtol=1e-4
    )
    unscaled = torch.softmax(scores.masked_fill(causal, float("-inf")), -1)
    assert (by_hand - unscaled).abs().max() > 0.05  # the factor changed the pattern


def test_scale_pattern_and_boost_keys_by_hand():
    scores = torch.tensor([1.0, 2.0, -0.5, float("-inf")])
    p = torch.softmax(scores, -1).view(1, 1, 1, 4)
    for f in (0.5, 3.0):
        torch.testing.assert_close(repair.scale_pattern(p, f).flatten(), torch.softmax(f * scores, -1))
    p = torch.tensor([0.5, 0.3, 0.2]).view(1, 1, 1, 3)
    boosted = repair.boost_keys(p, [(0, [1])], math.log(2.0)).flatten()  # key 1's logit + ln 2: its weight doubles
    torch.testing.assert_close(boosted, torch.tensor([0.5, 0.6, 0.2]) / 1.3)


def test_readout_pairs_and_place_table_of_the_paper_format(add3):
    task = add3.task  # paper, width 5: a4..a0 at 0..4, b4..b0 at 5..9, answer digit k predicted at 9 + k
    assert repair.readout_pairs(task, 3, task.seq_len) == [(12, [1, 6]), (6, [1]), (13, [0, 5]), (5, [0])]
    assert repair.readout_pairs(task, 3, 13) == [(12, [1, 6]), (6, [1]), (5, [0])]  # queries past the prefix dropped
    assert repair.readout_pairs(task, 3, task.seq_len, ["gather"]) == [(6, [1]), (5, [0])]
    with pytest.raises(ValueError, match="readout parts must be among read, gather"):
        repair.readout_attention(3, 5.0, parts=["write"])
    assert repair.place_table(task, 3, 12).tolist() == [2, 2, 2, 3, 4, 7, 7, 7, 8, 9, 10, 11]


def test_clamped_places_read_the_top_trained_places_embedding(add3):
    model, task = add3.model, add3.task
    tokens, _, _ = ood_prompt(task, n=2)
    seen = {}

    def grab(x, hook):
        seen[hook.name] = x.detach().clone()
        return x

    with torch.inference_mode(), model.hooks(fwd_hooks=repair.clamp_places(3).hooks(model, task)):
        model.run_with_hooks(tokens, fwd_hooks=[(POSITION_IDS_HOOK, grab), ("pos_embed.hook_out", grab)])
    assert seen[POSITION_IDS_HOOK][0].tolist() == [2, 2, 2, 3, 4, 7, 7, 7, 8, 9]
    w_pos = model.pos_embed.W_pos
    torch.testing.assert_close(seen["pos_embed.hook_out"][0, 0], w_pos[2])
    torch.testing.assert_close(seen["pos_embed.hook_out"][0, 6], w_pos[7])


def test_a_hand_set_adder_that_ignores_the_extra_digit_is_not_repaired_by_reading_it():
    """The carry-less adder with ``keep = 3`` answers (a mod 10^3) + (b mod 10^3) on carry-free pairs:
    its silenced readout (a flag, not attention) ignores the extra digit whatever the attention reads."""
    task = Task("add", 3, "paper", width=5)
    model = carryless_adder(task, keep=3)[0]
    a, b = as_operands([1203, 4101, 2222]), as_operands([3412, 5000, 7777])
    for iv in (repair.NO_INTERVENTION, repair.readout_attention(3, 5.0)):
        answers = repair.hooked_answers(model, task, iv)(a, b)
        assert answers.tolist() == [615, 101, 999]  # the truncated sum, extra digits dropped


def test_bad_parameters_get_one_clear_error(add3):
    for factor in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="factor must be a finite number > 0"):
            repair.attention_scaling(factor)
    with pytest.raises(ValueError, match="layer 3 is out of range: the model has layers 0..2"):
        repair.attention_scaling(2.0, [3]).hooks(add3.model, add3.task)


def test_repair_table_scores_every_intervention_on_the_same_pairs(add3):
    ivs = [repair.NO_INTERVENTION, repair.attention_scaling(1.0), repair.clamp_places(3)]
    table = repair.repair_table(add3.model, add3.task, ivs, [4], n=100)
    none, one, clamp = (table[table.intervention == iv.name].iloc[0] for iv in ivs)
    assert none.exact == 0.0 and none.truncated > 0.9  # add3's OOD rule at 4 digits
    assert (one.truncated, one.per_digit, one.gain) == (none.truncated, none.per_digit, 0.0)
    assert clamp.truncated < none.truncated - 0.5  # clamping the extra digit's place breaks the rule
    assert none.first_extra_digit == none.per_digit[3]
    assert none.extra_digits == none.per_digit[3]  # m = 4: answer digits 3 .. 3 need the extra digit
