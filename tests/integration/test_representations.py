"""Representation analyses on the shipped add3: PCA separability, OOD projection, logit lens, matching.

Figures asserted here were measured first (docs/representations.md has the full-size ones).
"""

import json

import numpy as np
import pytest
import torch

from mechinterp_arith import Task, data
from mechinterp_arith.analysis.activations import collect, input_tokens, resolve_hook
from mechinterp_arith.analysis.dynamics import pca_dynamics
from mechinterp_arith.analysis.logit_lens import id_ood_logit_lens, logit_lens
from mechinterp_arith.analysis.matching import match_activations, match_ood
from mechinterp_arith.analysis.pca import fit_pca, pca_each_site, residual_pca
from mechinterp_arith.analysis.projection import ood_projection
from mechinterp_arith.cli import main
from mechinterp_arith.core.labels import label_values
from mechinterp_arith.core.positions import answer_logit_pos as predicting_position


@pytest.fixture(scope="module")
def id_pairs(add3):
    return data.random_pairs(add3.task, 600, seed=3)


# ---- hooks -----------------------------------------------------------------------


def test_unknown_hook_names_near_matches(add3):
    assert resolve_hook(add3.model, "ln_final.hook_out") == "ln_final.hook_out"
    with pytest.raises(
        ValueError, match=r"unknown hook 'blocks.7.hook_resid_post'; did you mean blocks.\d.hook_resid_post"
    ):
        resolve_hook(add3.model, "blocks.7.hook_resid_post")


def test_collect_shapes_and_teacher_forcing(add3):
    a, b = torch.tensor([1349, 12]), torch.tensor([705, 34])
    acts = collect(add3, a, b, ["ln_final.hook_out", "blocks.0.attn.hook_pattern"], [9, "ans2"])
    assert acts["ln_final.hook_out"].shape == (2, 2, 48) and acts["blocks.0.attn.hook_pattern"].shape == (2, 2, 3, 15)
    rep = input_tokens(add3, a, b, "representative")
    true = input_tokens(add3, a, b, "true")
    assert rep[0, 10:].tolist() == [4, 5, 0, 1, 0] and true[0, 10:].tolist() == [4, 5, 0, 2, 0]  # 1054 vs 2054
    with pytest.raises(ValueError, match="unknown answer source 'best'"):
        input_tokens(add3, a, b, "best")
    with pytest.raises(ValueError, match="needs a fixed-length"):
        predicting_position(Task("add", 3, format="plain", pad=False), 0)


# ---- PCA ------------------------------------------------------------------------------------------
def test_units_digit_separates_in_id_pca(add3, id_pairs):
    res = residual_pca(add3, *id_pairs)
    assert res.hook == "ln_final.hook_out" and res.position == 9 and res.coords.shape == (600, 3)
    assert res.nearest_centroid_accuracy >= 0.99 and res.silhouette > 0.6  # 10,000 pairs: 1.000, 0.816
    assert abs(res.explained_variance_ratio.sum() - 1) < 1e-6 and res.explained_variance_ratio[9] < 0.01
    # the units position does not carry the operands' digits, and only partly the carry
    for label, most in (("a0", 0.3), ("b0", 0.3), ("a2", 0.3), ("carry1", 0.8)):
        y = label_values(add3.task, *id_pairs, label).numpy()
        assert fit_pca(res.activations, y)[2] < most
    fig3, fig2 = res.figure(dims=3), res.figure()
    assert [tr.type for tr in fig3.data] == ["scatter3d"] * 10 and [tr.name for tr in fig2.data] == [
        str(d) for d in range(10)
    ]
    for tr in fig2.data:  # each trace holds the PCA coordinates of the pairs with that units digit
        rows = res.labels == int(tr.name)
        assert np.allclose(tr.x, res.coords[rows, 0]) and np.allclose(tr.y, res.coords[rows, 1])
    with pytest.raises(ValueError, match="k=49 components"):
        residual_pca(add3, *id_pairs, k=49)


def test_sweep_layers_by_positions(add3, id_pairs):
    a, b = id_pairs[0][:300], id_pairs[1][:300]
    sweep = pca_each_site(
        add3, a, b, hooks=["blocks.0.hook_resid_pre", "ln_final.hook_out"], positions=["units", "ans3"]
    )
    f = sweep.frame.set_index(["hook", "position"])
    assert list(sweep.frame["label"].unique()) == ["ans0", "ans3"]
    assert f.loc[("ln_final.hook_out", 9), "nearest_centroid_accuracy"] >= 0.95
    assert f.loc[("blocks.0.hook_resid_pre", 9), "nearest_centroid_accuracy"] < 0.3  # embeddings: not yet computed
    heat = sweep.figure().data[0]
    assert list(heat.y) == ["blocks.0.hook_resid_pre", "ln_final.hook_out"]
    assert np.allclose(
        heat.z,
        sweep.frame.pivot(index="hook", columns="position", values="nearest_centroid_accuracy")
        .loc[list(heat.y)]
        .values,
    )
    with pytest.raises(ValueError, match="position 3 predicts no answer digit"):
        pca_each_site(add3, a, b, positions=[3])


def test_ood_projection_lands_on_the_equivalent_cluster(add3, id_pairs):
    oa, ob = data.ood_both(add3.task, 4, 200, seed=1)
    ia, ib = id_pairs[0][:300], id_pairs[1][:300]
    res = ood_projection(add3, (ia, ib), (oa, ob), position="ans3", label="ans3")
    s = res.summary()
    # thousands digit: the equivalent relation's carry (0/1) vs the true digit of a 4-digit sum
    assert s["labels_differ"] > 0.8
    assert s["ood_on_equivalent_cluster"] > 0.95 and s["ood_on_true_cluster"] < 0.2  # 2,000 pairs: 0.992, 0.104
    assert s["ood_on_equivalent_cluster_where_differ"] > 0.95 and s["ood_on_true_cluster_where_differ"] == 0.0
    units = ood_projection(add3, (ia, ib), (oa, ob)).summary()  # the units digit: both labels agree
    assert units["labels_differ"] == 0.0 and units["ood_on_equivalent_cluster"] == units["ood_on_true_cluster"] > 0.8
    shown = res.figure().data  # ID points by label, OOD points (crosses) by their equivalent label
    ood_points = sum(len(tr.x) for tr in shown if tr.name.startswith("OOD"))
    assert ood_points == len(oa) and all(tr.marker.symbol == "x" for tr in shown if tr.name.startswith("OOD"))


def test_clusters_form_during_training(add3):
    a, b = data.random_pairs(add3.task, 400, seed=5, max_value=10**4)
    dyn = pca_dynamics(add3, a, b, steps=[100, 1000])
    acc = dict(zip(dyn.frame["step"], dyn.frame["nearest_centroid_accuracy"]))
    assert acc[100] < 0.3 and acc[1000] > 0.85  # 500 pairs: 0.166 -> 0.936
    curves = {tr.name: list(tr.y) for tr in dyn.figure().data}
    assert curves["nearest_centroid_accuracy"] == list(dyn.frame["nearest_centroid_accuracy"])
    panels = dyn.scatter_figure()
    assert [a.text for a in panels.layout.annotations] == ["step 100", "step 1000"] and len(panels.data) >= 20
    with pytest.raises(ValueError, match="no snapshot for step 150"):
        pca_dynamics(add3, a, b, steps=[150])


# ---- logit lens -----------------------------------------------------------------------------------
def test_logit_lens_last_state_is_the_model_logits(add3, id_pairs):
    a, b = id_pairs[0][:200], id_pairs[1][:200]
    res = logit_lens(add3, a, b)
    assert res.final_max_abs_diff < 1e-4
    # independent: the model's own probability of each correct answer digit
    tokens = input_tokens(add3, a, b, "true")
    with torch.inference_mode():
        probs = add3.model(tokens)[:, 9:15].softmax(-1)
    digits = torch.tensor(add3.task.apply(a, b).tolist()).unsqueeze(1) // 10 ** torch.arange(6) % 10
    expected = probs.gather(-1, digits.unsqueeze(-1)).squeeze(-1).mean(0)
    table = res.table("mean_prob")
    assert list(table.index) == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_mid",
        "blocks.1.hook_resid_pre",
        "blocks.1.hook_resid_mid",
        "blocks.2.hook_resid_pre",
        "blocks.2.hook_resid_mid",
        "blocks.2.hook_resid_post",
    ]
    assert np.allclose(table.iloc[-1].values, expected.numpy(), atol=1e-4)
    assert table.iloc[-1].min() > 0.99 and table.iloc[0, :3].max() < 0.2  # embeddings predict ~chance


def test_logit_lens_ood_prefers_the_equivalent_digit(add3):
    res = id_ood_logit_lens(add3, n=200)
    eq, true = res.table("mean_prob", "ood4", "equivalent"), res.table("mean_prob", "ood4", "true")
    # thousands digit (k = 3): the model predicts the representative's carry, not the true digit
    assert eq.iloc[-1, 3] > 0.9 and true.iloc[-1, 3] < 0.2  # 2,000 pairs: 0.990, 0.104
    assert res.table("mean_rank", "ood4", "equivalent").iloc[-1].max() < 0.1
    assert res.answers == {"id": "true", "ood4": "greedy"}
    panels = res.figure().data  # one heatmap per (set, target): the tables above
    assert len(panels) == 3 and np.allclose(panels[1].z, eq.values) and np.allclose(panels[2].z, true.values)
    with pytest.raises(ValueError, match="OOD length m=3 must exceed the trained length"):
        id_ood_logit_lens(add3, n=10, ood_digits=3)


# ---- matching -------------------------------------------------------------------------------------
def test_matching_differs_at_extra_digits_and_reconverges(add3):
    res = match_ood(add3, n=200)
    s = res.summary()
    assert res.differing_positions == [1, 6] and res.roles[1] == "a3" and res.roles[6] == "b3"
    emb = s["cosine"]["blocks.0.hook_resid_pre"]
    assert emb[0] == pytest.approx(1.0) and emb[1] < 0.7 and emb[6] < 0.7  # 0.587 / 0.577
    final = s["by_state"]["ln_final.hook_out"]
    # re-convergence: at the answer positions the OOD stream is close to its representative's,
    # far closer than two unrelated ID inputs are to each other
    assert final["cosine_at_differing_positions"] < 0.6  # 0.39
    assert (
        final["cosine_at_answer_positions"] > 0.9 and final["baseline_cosine_at_answer_positions"] < 0.6
    )  # 0.96, 0.42
    cos_map = res.figure().data[0]
    assert np.allclose(cos_map.z, res.cosine) and list(cos_map.y) == res.hooks and len(res.frame()) == 8 * 15
    with pytest.raises(ValueError, match="unknown answers 'true' for matching"):
        match_activations(add3, torch.tensor([1234]), torch.tensor([5678]), answers="true")


# ---- CLI ------------------------------------------------------------------------------------------
def test_pca_cli_json(capsys, tmp_path):
    html = tmp_path / "pca.html"
    assert main(["pca", "add3", "--n", "800", "--n-id", "400", "--json", "--device", "cpu", "--html", str(html)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hook"] == "ln_final.hook_out" and out["position"] == 9 and out["label"] == "units"
    assert len(out["explained_variance_ratio"]) == 10 and out["nearest_centroid_accuracy"] > 0.85
    assert out["ood_on_equivalent_cluster"] > 0.8 and out["labels_differ"] == 0.0
    assert out["ood_on_equivalent_cluster_where_differ"] is None  # strict JSON: no NaN
    assert "cdn.plot.ly" not in html.read_text()[:2000] and html.stat().st_size > 1_000_000  # plotly.js inlined


def test_logit_lens_and_match_cli_json(capsys):
    assert main(["logit-lens", "add3", "--n", "100", "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["final_max_abs_diff"] < 1e-4 and set(out) >= {"id_true", "ood4_equivalent", "ood4_true"}
    assert out["id_true"]["mean_prob"]["blocks.2.hook_resid_post"][0] > 0.99
    assert main(["match", "add3", "--n", "100", "--json", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["differing_positions"] == [1, 6] and out["teacher_forced_answers"] == "representative"


@pytest.mark.parametrize(
    "args, message",
    [
        (["pca", "add3", "--hook", "blocks.3.hook_resid_post"], "unknown hook 'blocks.3.hook_resid_post'"),
        (["pca", "add3", "--position", "99"], "position 99 is outside"),
        (["pca", "add3", "--label", "tens"], "unknown label 'tens'"),
        (["pca", "add3", "--n", "0"], "--n must be >= 1"),
        (["match", "add3", "--ood-digits", "6"], "OOD length m=6 does not fit the format"),
    ],
)
def test_cli_errors_are_one_line(capsys, args, message):
    assert main(args + ["--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
