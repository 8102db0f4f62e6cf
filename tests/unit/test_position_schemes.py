"""Position schemes: which token gets which ID (hand-checked), the hook that carries them, round trips."""

import dataclasses

import pytest
import torch

from mechinterp_arith import ModelConfig, Task, TrainConfig, load, save_checkpoint, train
from mechinterp_arith.core.decoding import generate
from mechinterp_arith.core.model import build_model
from mechinterp_arith.core.plain_forward import unsupported_reasons
from mechinterp_arith.core.position_schemes import (
    POSITION_IDS_HOOK,
    SCHEMES,
    PositionRule,
    largest_id,
    position_rule,
    scheme_defaults,
)
from mechinterp_arith.core.positions import answer_logit_pos, digit_layout, operand_pos, position_labels
from mechinterp_arith.core.seeding import generator

REVERSED = Task("add", 2, format="reversed", width=3)  # 007+045=2500. (answer 52 reversed, zero-padded)


def _inputs(task: Task, a: list[int], b: list[int]) -> torch.Tensor:
    tokens, _ = task.encode_batch(torch.tensor(a), torch.tensor(b))
    return tokens[:, : task.n_ctx]


def test_digit_layout_names_number_and_place_of_each_token():
    tokens = _inputs(REVERSED, [7], [45])  # 0 0 7 + 0 4 5 = 2 5 0 0
    layout = digit_layout(REVERSED, tokens)
    assert layout.number.tolist() == [[0, 0, 0, -1, 1, 1, 1, -1, 2, 2, 2, 2]]
    assert layout.place.tolist() == [[2, 1, 0, -1, 2, 1, 0, -1, 0, 1, 2, 3]]
    assert layout.length.tolist() == [[1, 2]]
    unpadded = Task("add", 3, format="reversed", pad=False)
    tokens, _ = unpadded.encode_batch(torch.tensor([7]), torch.tensor([45]))  # 7+45=25. then end tokens
    layout = digit_layout(unpadded, tokens[:, :8])
    assert layout.number.tolist() == [[0, -1, 1, 1, -1, 2, 2, -1]]
    assert layout.place.tolist() == [[0, -1, 1, 0, -1, 0, 1, -1]]
    with pytest.raises(ValueError, match="most significant digit first"):
        digit_layout(Task("add", 3, format="plain", pad=False), tokens)


def test_coupled_ids_share_significance_and_hide_padding_outside_the_span():
    rule = PositionRule("coupling", REVERSED, 12)
    tokens = _inputs(REVERSED, [7], [45])  # span: 2 digits (45); a=7 is zero-padded to 07
    ids, visible = rule.numbering(tokens)
    #                 0  0  7  +  0  4  5  =  2  5  0  0
    assert ids.tolist() == [[0, 3, 2, 1, 0, 3, 2, 1, 2, 3, 4, 5]]
    assert visible.tolist() == [[False, True, True, True, False, True, True, True, True, True, True, True]]
    shifted, _ = rule.numbering(tokens, offsets=torch.tensor([3]))
    assert shifted.tolist() == [[0, 6, 5, 4, 0, 6, 5, 4, 5, 6, 7, 8]]  # every non-zero ID moves by the offset
    paper = Task("add", 2, width=3)  # no separators: 007 045 then 2500
    assert PositionRule("coupling", paper, 12).ids(_inputs(paper, [7], [45])).tolist() == [[0, 3, 2, 0, 3, 2, 2, 3, 4]]


def test_the_bos_token_is_no_digit_and_shifts_every_position_by_one():
    """The follow-up's format: BOS first; every position label, layout entry and scheme ID is the
    reversed format's, one position later, with the BOS token numbered 0 (not a digit, visible)."""
    bos = Task("add", 2, format="reversed", width=3, bos=True)  # ^007+045=2500.
    tokens = _inputs(bos, [7], [45])
    layout = digit_layout(bos, tokens)
    assert layout.number.tolist() == [[-1, 0, 0, 0, -1, 1, 1, 1, -1, 2, 2, 2, 2]]
    assert layout.place.tolist() == [[-1, 2, 1, 0, -1, 2, 1, 0, -1, 0, 1, 2, 3]]
    assert position_labels(bos)[:5] == ["bos", "a2", "a1", "a0", "+"] and position_labels(bos)[8] == "="
    assert (operand_pos(bos, "b", 0), answer_logit_pos(bos, 0)) == (7, 8)
    for scheme in ("coupling", "abacus"):
        ids, visible = PositionRule(scheme, bos, 13).numbering(tokens)
        plain_ids, plain_visible = PositionRule(scheme, REVERSED, 12).numbering(_inputs(REVERSED, [7], [45]))
        assert ids.tolist() == [[0] + plain_ids[0].tolist()]
        assert visible.tolist() == [[True] + plain_visible[0].tolist()]
    loose = Task("add", 3, format="reversed", pad=False, bos=True)
    tokens, _ = loose.encode_batch(torch.tensor([349]), torch.tensor([5]))  # ^349+5=453.
    assert PositionRule("abacus", loose, 24).ids(tokens[:, :10]).tolist() == [[0, 3, 2, 1, 0, 1, 0, 1, 2, 3]]


def test_abacus_ids_count_places_within_each_number():
    rule = PositionRule("abacus", REVERSED, 12)
    ids, visible = rule.numbering(_inputs(REVERSED, [7], [45]))
    #                 0  0  7  +  0  4  5  =  2  5  0  0
    assert ids.tolist() == [[0, 0, 1, 0, 0, 2, 1, 0, 1, 2, 3, 4]]
    assert visible.tolist() == [[False, False, True, True, False, True, True, True, True, True, True, True]]
    unpadded = Task("add", 3, format="reversed", pad=False)
    tokens, _ = unpadded.encode_batch(torch.tensor([349]), torch.tensor([5]))  # 349+5=453.
    assert PositionRule("abacus", unpadded, 24).ids(tokens[:, :9]).tolist() == [[3, 2, 1, 0, 1, 0, 1, 2, 3]]


def test_randomized_ids_are_evenly_spaced_and_training_draws_sorted_subsets():
    rule = PositionRule("randomized", REVERSED, 24)
    ids = rule.ids(_inputs(REVERSED, [7, 1], [45, 2]))
    assert ids[0].tolist() == [0, 2, 4, 6, 8, 10, 13, 15, 17, 19, 21, 23] and torch.equal(ids[0], ids[1])
    assert rule.ids(_inputs(REVERSED, [7], [45])[:, :5]).tolist() == [[0, 2, 4, 6, 8]]  # a prefix keeps its IDs
    drawn = rule.training_ids(_inputs(REVERSED, [7] * 50, [45] * 50), generator(0, "test"))
    assert (drawn.diff(dim=1) > 0).all() and drawn.min() >= 0 and drawn.max() < 24
    assert torch.equal(drawn, rule.training_ids(_inputs(REVERSED, [7] * 50, [45] * 50), generator(0, "test")))


def test_training_offsets_stay_inside_the_table():
    rule = PositionRule("coupling", REVERSED, 12)
    assert rule.max_offset == 12 - 1 - (REVERSED.answer_width + 1)
    tokens = _inputs(REVERSED, [999] * 200, [999] * 200)
    drawn = rule.training_ids(tokens, generator(1, "test"))
    base = rule.ids(tokens)
    offsets = (drawn - base)[:, 2]
    assert offsets.min() == 0 and offsets.max() == rule.max_offset and drawn.max() == 11
    top = REVERSED.answer_width + 1  # the largest ID at offset 0
    assert PositionRule("coupling", REVERSED, top + 1).max_offset == 0  # IDs, not tokens, index the table
    with pytest.raises(ValueError, match=f"shorter than the {top + 1} IDs"):
        PositionRule("coupling", REVERSED, top)
    with pytest.raises(ValueError, match=f"shorter than the {REVERSED.n_ctx} tokens"):
        PositionRule("randomized", REVERSED, REVERSED.n_ctx - 1)


@pytest.mark.parametrize("scheme", ["coupling", "abacus"])
def test_distractors_fill_only_the_hidden_padding_at_ids_outside_the_example(scheme):
    """Training's distractor digits: the hidden zero padding becomes random visible digits at IDs
    outside the row's own range; every other token, ID and the offsets/spans stay as drawn without."""
    task = Task("add", 4, format="reversed", width=8)
    rule = PositionRule(scheme, task, 40)
    tokens = _inputs(task, [7, 1234, 56] * 40, [45, 9, 0] * 40)
    plain = rule.training_inputs(tokens, generator(2, "test"))
    drawn = rule.training_inputs(tokens, generator(2, "test"), distractors=True)
    padding = plain["attention_mask"] == 0
    hidden = padding & (drawn["attention_mask"] == 1)  # the padding that became distractors: visible
    share = hidden.sum(1) / padding.sum(1).clamp(min=1)
    assert share.min() < 0.2 and share.max() > 0.8  # each row draws its own share
    assert torch.equal(drawn["input_ids"][~hidden], tokens[~hidden])
    assert torch.equal(drawn["attention_mask"][~hidden], plain["attention_mask"][~hidden])
    assert torch.equal(drawn["position_ids"][~hidden], plain["position_ids"][~hidden])
    assert drawn["input_ids"][hidden].max() <= 9 and len(drawn["input_ids"][hidden].unique()) == 10
    ids = plain["position_ids"].masked_fill(hidden, -1)
    start = torch.where(ids > 0, ids, 10**6).amin(1, keepdim=True)  # the row's smallest ID: its offset + 1
    own_top = start + largest_id(scheme, task)  # the row's largest ID (its answer's top digit) or one above
    far = drawn["position_ids"].masked_fill(~hidden, -1)
    outside = (far < start) | (far > own_top)
    assert (outside | ~hidden).all() and (far[hidden] >= 1).all() and far.max() < 40
    below, above = far < start, far > own_top
    assert below[hidden].any() and above[hidden].any()  # both sides of the example's range are drawn


def test_distractors_need_a_scheme_that_hides_padding_and_random_positions():
    with pytest.raises(ValueError, match="distractors fill the zero padding"):
        TrainConfig.for_scheme("learned", distractors=True)
    with pytest.raises(ValueError, match="random positions off"):
        TrainConfig.for_scheme("coupling", distractors=True, random_positions=False)
    assert TrainConfig.for_scheme("abacus", distractors=True).distractors is True
    assert TrainConfig.from_dict({}).distractors is False  # a config written before the key: none drawn


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_is_a_hooked_bridge_that_round_trips(scheme, tmp_path):
    task = Task("add", 2, format="reversed", width=3)
    cfg = ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional=scheme, seed=3)
    model = build_model(cfg, task=task)
    tokens = _inputs(task, [7, 12, 999], [45, 3, 999])
    logits, cache = model.run_with_cache(tokens)
    rule = position_rule(model)
    if scheme == "rotary":
        assert POSITION_IDS_HOOK not in cache
    else:  # every table scheme shows the IDs it looked up at the hook
        expected = rule.ids(tokens) if rule is not None else torch.arange(task.n_ctx).expand(3, -1)
        assert torch.equal(cache[POSITION_IDS_HOOK], expected)
    path = save_checkpoint(tmp_path / scheme, model, task, cfg)
    ckpt = load(path, device="cpu")
    assert ckpt.model_config == cfg and ckpt.model_config.positional == scheme
    assert torch.equal(ckpt.model(tokens), logits)
    assert (position_rule(ckpt.model) is None) == (rule is None)


def test_patching_the_position_ids_moves_tokens():
    task = Task("add", 2, format="reversed", width=3)
    model = build_model(
        ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional="coupling"), task=task
    )
    tokens = _inputs(task, [7], [45])
    clean = model(tokens)
    same = model.run_with_hooks(tokens, fwd_hooks=[(POSITION_IDS_HOOK, lambda ids, hook: ids)])
    moved = model.run_with_hooks(tokens, fwd_hooks=[(POSITION_IDS_HOOK, lambda ids, hook: ids + 1)])
    assert torch.equal(same, clean) and (moved - clean).abs().max() > 1e-3


def test_no_scheme_keeps_a_model_off_the_fast_paths():
    """The plain forward reads every scheme's IDs from its rule (tests/unit/test_scheme_forwards.py
    checks it against the bridge), so no position scheme sends a model to the slow bridge paths."""
    task = Task("add", 2, format="reversed", width=3)
    a, b = torch.tensor([7, 12]), torch.tensor([45, 3])
    for scheme in SCHEMES:
        model = build_model(
            ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional=scheme), task=task
        )
        assert unsupported_reasons(model) == [] and generate(model, task, a, b).path == "kv"


def test_nope_table_is_zero_and_stays_zero_in_training():
    task = Task("add", 2, format="reversed", width=3)
    cfg = ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional="nope")
    model, _, _ = train(
        task, cfg, TrainConfig(steps=5, batch_size=16, eval_every=5, eval_n=20, device="cpu"), progress=False
    )
    assert torch.count_nonzero(model.pos_embed.W_pos) == 0 and not model.pos_embed.W_pos.requires_grad


def test_scheme_defaults_resolve_into_the_recorded_training_config(tmp_path):
    task = Task("add", 2, format="reversed", width=3)
    cfg = ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional="abacus")
    train(
        task,
        cfg,
        TrainConfig(steps=4, batch_size=16, eval_every=4, eval_n=20, n_train=200, n_test=50, device="cpu"),
        out_dir=tmp_path / "abacus",
        progress=False,
    )
    recorded = load(tmp_path / "abacus", device="cpu").config["training"]
    assert recorded["operand_lengths"] == "mixed" and recorded["random_positions"] is True
    assert scheme_defaults("learned")["training"] == {"operand_lengths": "uniform", "random_positions": False}
    with pytest.raises(ValueError, match="random positions need"):
        train(
            task,
            ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=16, d_mlp=32),
            TrainConfig(steps=2, random_positions=True, device="cpu"),
            progress=False,
        )


def test_training_with_distractors_is_the_same_on_both_forwards_and_differs_without():
    task = Task("add", 2, format="reversed", width=4)
    cfg = ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional="coupling")

    def weights(**settings):
        tc = TrainConfig(steps=4, batch_size=16, eval_every=4, eval_n=20, n_train=200, n_test=50, device="cpu")
        model, _, _ = train(task, cfg, dataclasses.replace(tc, **settings), progress=False)
        return model.pos_embed.W_pos.detach().clone()

    plain, bridge = weights(distractors=True, forward="plain"), weights(distractors=True, forward="bridge")
    assert torch.allclose(plain, bridge, atol=1e-5)
    assert not torch.allclose(plain, weights(distractors=False, forward="plain"), atol=1e-5)


def test_ruled_schemes_need_a_layout_with_known_places():
    plain = Task("add", 3, format="plain", pad=False)
    for scheme in ("abacus", "coupling"):
        with pytest.raises(ValueError, match="most significant digit first"):
            build_model(ModelConfig.for_task(plain, positional=scheme), task=plain)
    with pytest.raises(ValueError, match="pass task="):
        build_model(ModelConfig.for_task(plain, positional="randomized"))
