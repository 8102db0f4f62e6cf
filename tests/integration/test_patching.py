import warnings

import pytest
import torch
from transformer_lens import patching as tl_patching

from mechinterp_arith.analysis import patch_runners, patching
from mechinterp_arith.analysis.metrics import correct_prob_metric, logit_diff_metric, normalised_effect
from mechinterp_arith.analysis.prompt_pairs import (
    change_operand_digit,
    differ_in_answer_digit,
)
from mechinterp_arith.core.positions import answer_logit_pos, operand_pos

DROP_INS = (
    "get_act_patch_resid_pre",
    "get_act_patch_attn_out",
    "get_act_patch_mlp_out",
    "get_act_patch_attn_head_out_all_pos",
    "get_act_patch_attn_head_out_by_pos",
)


@pytest.fixture(scope="module")
def setup(add3):
    pairs = differ_in_answer_digit(add3.task, 1, n=6, seed=3)
    with torch.inference_mode():
        _, cache = add3.model.run_with_cache(pairs.clean_tokens)
    return add3.model, pairs, cache, logit_diff_metric(pairs, 1)


@pytest.mark.parametrize("name", DROP_INS)
def test_drop_ins_equal_transformer_lens(setup, name):
    model, pairs, cache, metric = setup
    undeclared = lambda logits: metric(logits)
    assert metric.reads_positions == (answer_logit_pos(pairs.task, 1),) and not hasattr(undeclared, "reads_positions")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = getattr(tl_patching, name)(model, pairs.corrupted_tokens, cache, metric)
        for m in (metric, undeclared):
            for method in ("fast", "hooks"):
                out = getattr(patching, name)(model, pairs.corrupted_tokens, cache, m, method=method)
                assert out.shape == ref.shape
                assert torch.allclose(out, ref, atol=1e-4, rtol=0), (name, method, (out - ref).abs().max())
    assert ref.abs().max() > 1.0  # the patches matter: not a comparison of constants


def test_sites_after_the_read_position_are_not_run(setup):
    model, pairs, cache, metric = setup
    q = answer_logit_pos(pairs.task, 1)
    sweep = patching.patch_each_site(model, pairs.corrupted_tokens, cache, metric, "resid_pre")
    full = patching.patch_each_site(
        model, pairs.corrupted_tokens, cache, lambda lg: metric(lg), "resid_pre", infer_reads=False
    )
    # (identical sites, e.g. layer 0 where every row's tokens agree, are reported as such first)
    assert (sweep.after_read | sweep.identical)[:, q + 1 :].all() and not sweep.after_read[:, : q + 1].any()
    assert sweep.after_read[1:, q + 1 :].all()
    assert torch.equal(sweep.values[:, q + 1 :], sweep.baseline.expand_as(sweep.values[:, q + 1 :]))
    assert torch.allclose(full.values, sweep.values, atol=1e-5)
    assert sweep.n_forward_rows < full.n_forward_rows
    assert not full.after_read.any() and "after_read" in sweep.frame().columns
    # the last layer's output at an unread position reaches no read position: not run either
    mlp = patching.patch_each_site(model, pairs.corrupted_tokens, cache, metric, "mlp_out")
    assert (mlp.after_read | mlp.identical)[2, :q].all() and mlp.after_read[2, :q].any()
    assert not mlp.after_read[:2, : q + 1].any() and not mlp.after_read[2, q]
    assert torch.equal(mlp.values[2, :q], mlp.baseline.expand(q))


def test_read_positions_of_undeclared_metrics_are_inferred(setup):
    model, pairs, cache, metric = setup
    q = answer_logit_pos(pairs.task, 1)
    with torch.inference_mode():
        logits = model(pairs.corrupted_tokens)
    assert patching.infer_read_positions(lambda lg: metric(lg), logits) == (q,)
    # argmax reads are found too, and a metric reading every position gets no restriction
    assert patching.infer_read_positions(lambda lg: (lg[:, [3, q]].argmax(-1) == 2).float().mean(), logits) == (3, q)
    assert patching.infer_read_positions(lambda lg: lg.mean(), logits) is None
    inferred = patching.patch_each_site(model, pairs.corrupted_tokens, cache, lambda lg: metric(lg), "z")
    declared = patching.patch_each_site(model, pairs.corrupted_tokens, cache, metric, "z")
    assert torch.equal(inferred.after_read, declared.after_read) and inferred.after_read.any()
    assert torch.allclose(inferred.values, declared.values, atol=1e-6)


def test_a_wrong_read_declaration_is_an_error(setup):
    model, pairs, cache, metric = setup
    wrong = patching.reads_positions(
        lambda logits: metric(logits) + logits[:, -1].sum(), [answer_logit_pos(pairs.task, 1)]
    )
    with pytest.raises(ValueError, match="its value changes when the logits at other positions are NaN"):
        patching.patch_each_site(model, pairs.corrupted_tokens, cache, wrong, "resid_pre")
    with pytest.raises(ValueError, match="must name positions in 0..14"):
        patching.patch_each_site(
            model, pairs.corrupted_tokens, cache, patching.reads_positions(lambda lg: metric(lg), [15]), "resid_pre"
        )


def test_other_kinds_agree_across_paths_and_result_equals_z(setup):
    model, pairs, cache, metric = setup
    for kind in ("resid_mid", "resid_post", "result"):
        kw = {"positions": [3, 8, 10, 14]}  # first differing token, b1, the reading position, the last
        fast = patching.patch_each_site(model, pairs.corrupted_tokens, cache, metric, kind, method="fast", **kw)
        hooks = patching.patch_each_site(model, pairs.corrupted_tokens, cache, metric, kind, method="hooks", **kw)
        assert fast.method == "fast" and hooks.method == "hooks"
        assert torch.allclose(fast.values, hooks.values, atol=1e-4, equal_nan=True), kind
        assert fast.values[:, [3, 8, 10, 14]].isfinite().all() and fast.values[:, 0].isnan().all()
    z = patching.patch_each_site(model, pairs.corrupted_tokens, cache, metric, "z", by_pos=False)
    result = patching.patch_each_site(model, pairs.corrupted_tokens, cache, metric, "result", by_pos=False)
    assert torch.allclose(z.values, result.values, atol=1e-4)


def test_resid_mid_patch_reaches_the_residual_stream(setup):
    # the metric reads position q, which after the last resid_mid depends only on resid_mid[2][q]
    model, pairs, cache, metric = setup
    q = answer_logit_pos(pairs.task, 1)
    sweep = patching.patch_each_site(
        model, pairs.corrupted_tokens, cache, metric, "resid_mid", method="hooks", positions=[q]
    )
    with torch.inference_mode():
        clean_value = float(metric(model(pairs.clean_tokens)))
    q = answer_logit_pos(pairs.task, 1)
    assert abs(float(sweep.values[2, q]) - clean_value) < 1e-3


def test_chunk_size_does_not_change_results(setup):
    model, pairs, cache, metric = setup
    a = patching.get_act_patch_attn_head_out_by_pos(model, pairs.corrupted_tokens, cache, metric, warn_identical=False)
    b = patching.get_act_patch_attn_head_out_by_pos(
        model, pairs.corrupted_tokens, cache, metric, chunk_size=1, warn_identical=False
    )
    assert torch.allclose(a, b, atol=1e-5)


def test_identical_sites_are_reported_and_equal_the_baseline(add3):
    pairs = change_operand_digit(add3.task, n=8, operand="b", place=0, seed=1)  # only position 9 (and answers) differ
    assert pairs.differing_positions()[0] == operand_pos(add3.task, "b", 0) == 9
    with torch.inference_mode():
        _, cache = add3.model.run_with_cache(pairs.clean_tokens)
    metric = logit_diff_metric(pairs, 0)
    sweep = patching.patch_each_site(add3.model, pairs.corrupted_tokens, cache, metric, "resid_pre")
    # layer 0 reads the embeddings: identical exactly where every row's tokens agree
    same_token = (pairs.clean_tokens == pairs.corrupted_tokens).all(0)
    assert torch.equal(sweep.identical[0], same_token) and not same_token[9:12].any()
    # later layers: identical before the first differing token, different from it on
    assert sweep.identical[1:, :9].all() and not sweep.identical[1:, 9:].any()
    assert torch.equal(sweep.values[:, :9], sweep.baseline.expand(3, 9))
    # the metric reads position 9 (answer digit 0): later sites are not run
    assert torch.equal(sweep.after_read, (torch.arange(15).expand(3, 15) > 9) & ~sweep.identical)
    assert (sweep.max_logit_change[~sweep.identical & ~sweep.after_read] > 0).all()
    n_identical = 18 + int(same_token.sum())
    assert len(sweep.identical_sites()) == n_identical
    with pytest.warns(patching.IdenticalSitesWarning, match=f"{n_identical} of 45 resid_pre sites"):
        patching.get_act_patch_resid_pre(add3.model, pairs.corrupted_tokens, cache, metric)


def test_a_patch_that_never_runs_is_an_error(setup, monkeypatch):
    model, pairs, cache, metric = setup
    monkeypatch.setattr(patch_runners, "_make_fast_patch", lambda *a, **k: lambda point, j, t: None)
    with pytest.raises(RuntimeError, match="never ran"):
        patching.patch_each_site(model, pairs.corrupted_tokens, cache, metric, "attn_out", method="fast")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "hook_q"}, "unknown activation kind 'hook_q'"),
        ({"kind": "resid_pre", "by_pos": False}, "by_pos=False applies to head kinds"),
        ({"kind": "resid_pre", "layers": [3]}, "layer 3 is out of range"),
        ({"kind": "resid_pre", "positions": [15]}, "position 15 is out of range"),
        ({"kind": "z", "method": "magic"}, "unknown method 'magic'"),
    ],
)
def test_bad_arguments(setup, kwargs, message):
    model, pairs, cache, metric = setup
    with pytest.raises(ValueError, match=message):
        patching.patch_each_site(model, pairs.corrupted_tokens, cache, metric, **kwargs)


def test_mismatched_clean_cache_is_rejected(setup):
    model, pairs, cache, metric = setup
    with pytest.raises(ValueError, match="same batch and length"):
        patching.patch_each_site(model, pairs.corrupted_tokens[:3], cache, metric, "resid_pre")


# ---- metrics ----------------------------------------------------------------------


def test_metrics_on_real_logits(add3):
    pairs = differ_in_answer_digit(add3.task, 2, n=16, seed=0)
    with torch.inference_mode():
        clean, corr = add3.model(pairs.clean_tokens), add3.model(pairs.corrupted_tokens)
    metric = logit_diff_metric(pairs, 2)
    assert float(metric(clean)) > 5 and float(metric(corr)) < -5
    assert metric(clean).ndim == 0 and logit_diff_metric(pairs, 2, per_example=True)(clean).shape == (16,)
    assert float(correct_prob_metric(pairs, 2)(clean)) > 0.99
    assert float(normalised_effect(metric(clean), metric(clean), metric(corr))) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no pair differs in answer digit 0"):
        logit_diff_metric(pairs, 0)
