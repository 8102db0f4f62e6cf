"""Every analysis runs on every position scheme (through the command line, as a user would), and
the length-generalisation profile reads each scheme's own position IDs."""

import json

import pytest
import torch
from support import reference
from support.cli import cli_json

from mechinterp_arith import ModelConfig, Task, data, load, save_checkpoint
from mechinterp_arith.analysis.length_generalisation import compare_schemes, length_profile, operand_alignment
from mechinterp_arith.core.decoding import generate
from mechinterp_arith.core.errors import NotApplicable
from mechinterp_arith.core.model import build_model
from mechinterp_arith.core.position_schemes import SCHEMES

TASK = Task("add", 2, format="reversed", width=3)
FOLLOW_UP = Task("add", 2, format="reversed", width=3, bos=True)  # the follow-up's format: a BOS token first


@pytest.fixture(scope="module")
def scheme_checkpoints(tmp_path_factory):
    """A tiny untrained checkpoint per scheme (the analyses' plumbing, not their findings, is tested);
    ``(scheme, "follow_up")``: the same on the follow-up's format."""
    root = tmp_path_factory.mktemp("schemes")
    out = {}
    for scheme in SCHEMES:
        for key, task in ((scheme, TASK), ((scheme, "follow_up"), FOLLOW_UP)):
            cfg = ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional=scheme, seed=5)
            name = scheme if task is TASK else f"{scheme}_follow_up"
            out[key] = save_checkpoint(root / name, build_model(cfg, task=task), task, cfg)
    return out


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("fmt", ["reversed", "follow_up"])
def test_every_analysis_command_runs_on_the_scheme(scheme, fmt, scheme_checkpoints, capsys, tmp_path):
    ckpt = str(scheme_checkpoints[scheme if fmt == "reversed" else (scheme, fmt)])
    task = TASK if fmt == "reversed" else FOLLOW_UP
    model = load(ckpt, device="cpu")
    eq = cli_json(capsys, "equivalence", ckpt, "--ood-digits", "3", "--n", "40", "--json")["ood"]["3"]
    oa, ob = data.ood_both(task, 3, 40)
    outputs = model.predict(oa, ob)  # each relation's hits recounted from its definition
    assert eq["n"] == 40 and eq["relations"]
    for rel in eq["relations"]:
        assert rel["hits"] == reference.relation_hits(rel, "add", oa, ob, outputs), rel["name"]
    by_length = cli_json(capsys, "equivalence", ckpt, "--lengths", "1-3", "--n", "40", "--json")["lengths"]
    assert [(r["m"], r["n"]) for r in by_length] == [(1, 40), (2, 40), (3, 40)]

    pca = cli_json(capsys, "pca", ckpt, "--n", "60", "--n-id", "40", "--json")
    a, b = data.random_pairs(task, 60, seed=0, max_value=10**3)
    tokens = generate(model.model, task, a, b).tokens[:, : task.n_ctx]
    x = reference.activations(model.model, tokens, pca["hook"], pca["position"])
    ratios, accuracy = reference.pca_reference(x, (a + b) % 10, pca["k"])
    assert pca["explained_variance_ratio"] == pytest.approx(ratios[: len(pca["explained_variance_ratio"])], abs=1e-5)
    assert pca["nearest_centroid_accuracy"] == pytest.approx(accuracy, abs=1e-6)

    lens = cli_json(capsys, "logit-lens", ckpt, "--n", "20", "--json")
    assert lens["final_max_abs_diff"] < 1e-4  # the lens of the last residual state is the model's logits
    match = cli_json(capsys, "match", ckpt, "--n", "20", "--json")
    first = min(match["differing_positions"])
    assert all(c == pytest.approx(1.0, abs=1e-5) for c in match["cosine"]["blocks.0.hook_resid_pre"][:first])

    patch = cli_json(capsys, "patch", ckpt, "--digit", "0", "--n", "8", "--json")["digits"]["0"]
    best = patch["top_sites"][0]
    effect, clean, corr = reference.digit_site_effect(model.model, task, 0, 8, 0, best, patch["logit_pos"])
    assert (patch["clean_logit_diff"], patch["corrupted_logit_diff"]) == pytest.approx((clean, corr), abs=1e-3)
    # the change the patch makes (an untrained model's clean-corrupted gap can be tiny, so not normalised)
    assert best["effect"] * (clean - corr) == pytest.approx(effect * (clean - corr), abs=1e-3)
    explained = cli_json(capsys, "explain", ckpt, "31", "45", "--json")
    assert (explained["a"], explained["prediction"]) == (31, int(model.predict([31], [45])[0]))
    report = cli_json(
        capsys,
        "report",
        ckpt,
        "--quick",
        "--n",
        "20",
        "--out",
        str(tmp_path / "r"),
        "--json",
        "--sections",
        "model",
        "accuracy",
        "positions",
        "equivalence",
        "attention",
    )
    assert all(s["status"] == "ok" for s in report["sections"]), report


def test_length_profile_reads_each_schemes_ids(scheme_checkpoints, tmp_path, capsys):
    rows = []
    for scheme in ("learned", "coupling"):
        ckpt = load(scheme_checkpoints[scheme], device="cpu")
        profile = length_profile(ckpt, n=30)
        assert list(profile.index) == [2, 3] and profile["alignment_by_digit"].map(len).tolist() == [2, 3]
        for m in (2, 3):  # exact match and the best relation's coverage, recounted from their definitions
            a, b = data.ood_lengths(TASK, m, m, 30, seed=0)
            outputs = ckpt.predict(a, b)
            assert profile.loc[m, "exact"] == pytest.approx(float((outputs == a + b).mean()), abs=1e-6)
            best = reference.best_relation_rate("add", outputs, a, b, TASK.width, TASK.answer_width)
            assert profile.loc[m, "coverage"] == pytest.approx(best, abs=1e-6)
        rows += [{"scheme": scheme, "seed": 0, "m": m, **r} for m, r in profile.to_dict("index").items()]
    summary = compare_schemes(__import__("pandas").DataFrame(rows))
    assert summary[["scheme", "m"]].values.tolist() == [
        ["learned", 2],
        ["learned", 3],
        ["coupling", 2],
        ["coupling", 3],
    ]
    # the lab's comparison page, from a results file as analyses/length_generalisation.py writes it
    results = tmp_path / "lab.json"
    results.write_text(json.dumps({"rows": rows}, default=list))
    page = cli_json(capsys, "report", str(results), "--out", str(tmp_path / "lab"), "--json")
    html = (tmp_path / "lab" / "index.html").read_text()
    first = summary.iloc[0]
    assert page["path"].endswith("index.html") and "<td>coupling</td>" in html
    assert f"<td>{first.exact_mean:.3f}</td>" in html and "https://" not in html.split("<script>")[0]
    # coupling hides the zero padding: at 2 digits no head reads the hidden a2/b2 (pos 0, 4)
    ckpt = load(scheme_checkpoints["coupling"], device="cpu")
    tokens = TASK.encode_batch(torch.tensor([12]), torch.tensor([34]))[0][:, : TASK.n_ctx]
    _, cache = ckpt.model.run_with_cache(tokens)
    assert cache["blocks.0.attn.hook_pattern"][0, :, :, [0, 4]].abs().max() == 0
    assert len(operand_alignment(ckpt, 3, n=10)) == 2 * 3  # heads x digits


def test_length_profile_needs_a_longer_operand_and_fixed_positions():
    cfg = ModelConfig.for_task(Task("add", 3, width=3), n_layers=1, n_heads=2, d_model=16, d_mlp=32)
    full = Task("add", 3, width=3)
    from mechinterp_arith.core.checkpoint import Checkpoint

    with pytest.raises(NotApplicable, match="no operand longer"):
        length_profile(Checkpoint(build_model(cfg, task=full), full, cfg), n=10)
    unpadded = Task("add", 2, format="reversed", pad=False)
    cfg = ModelConfig.for_task(unpadded, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional="abacus")
    with pytest.raises(NotApplicable, match="fixed-length"):
        length_profile(Checkpoint(build_model(cfg, task=unpadded), unpadded, cfg), n=10)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_circuit_discovery_runs_on_the_scheme(scheme, scheme_checkpoints, capsys):
    """Edge-level attribution and exact ablation run on the plain forward, which numbers tokens as
    each scheme does: no digit is skipped for a position reason. (These untrained models prefer the
    clean digit only on some digits; the others are skipped with that reason.)"""
    out = cli_json(capsys, "discover", str(scheme_checkpoints[scheme]), "--n", "8", "--heldout", "8", "--json")
    assert out["circuits"] and {str(c["digit"]) for c in out["circuits"]} | set(out["skipped"]) == {"0", "1", "2"}
    assert all("does not prefer the clean answer digit" in why for why in out["skipped"].values())
    for circuit in out["circuits"]:
        assert circuit["n_edges_total"] == 156 and circuit["pairs"] == 8 and circuit["edges"]
    # at 3-digit operands, longer than the trained 2 (the format's width is 3): still no position reason
    ood = cli_json(
        capsys,
        "discover",
        str(scheme_checkpoints[scheme]),
        "--operand-digits",
        "3",
        "--n",
        "8",
        "--heldout",
        "8",
        "--json",
    )
    assert ood["operand_digits"] == 3 and {str(c["digit"]) for c in ood["circuits"]} | set(ood["skipped"]) == {
        "0",
        "1",
        "2",
    }
    assert all("does not prefer the clean answer digit" in why for why in ood["skipped"].values())
    assert all(c["operand_digits"] == 3 and c["cmd"] >= 0 for c in ood["circuits"])
