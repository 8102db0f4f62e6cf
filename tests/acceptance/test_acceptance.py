"""Acceptance: every task and format through every analysis, on small checkpoints trained here.

One tiny model per (operation, format) is trained once per test session (a few seconds each, one
thread); every analysis then runs through its command-line front end (in process, --json), and
the values are checked against what they must be whatever the model learned (the logit lens's last
state equals the logits, coverage equals a recomputed hit rate, ...). Parts a task cannot support
are skipped with a stated reason; the report exits 0 with no section in error.
"""

from __future__ import annotations

import json

import pytest
import torch

import mechinterp_arith as ma
from mechinterp_arith.analysis.equivalence import analyse_set
from mechinterp_arith.cli import main
from mechinterp_arith.core import data
from mechinterp_arith.core.errors import NotApplicable
from mechinterp_arith.core.positions import position_labels
from mechinterp_arith.report import ReportSettings, build_report

MATRIX = [(op, fmt) for op in ("add", "sub", "mul", "addmod") for fmt in ("paper", "plain")] + [("add", "follow_up")]
MODULUS = {"addmod": 37}
# the follow-up's format (docs/follow_up.md): a BOS token, operands zero-padded, the answer reversed
FORMATS = {"follow_up": {"format": "reversed", "bos": True}}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """``(op, format) -> checkpoint directory`` of a 2-digit model (width 3: one longer operand fits)."""
    root = tmp_path_factory.mktemp("acceptance")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for op, fmt in MATRIX:
            task = ma.Task(op, 2, width=3, modulus=MODULUS.get(op), **FORMATS.get(fmt, {"format": fmt}))
            mcfg = ma.ModelConfig.for_task(task, n_layers=2, n_heads=2, d_model=32, d_mlp=128)
            tcfg = ma.TrainConfig(steps=300, batch_size=128, warmup=50, eval_every=150, eval_n=300, device="cpu")
            out[(op, fmt)] = root / f"{op}_{fmt}"
            ma.train(task, mcfg, tcfg, out_dir=out[(op, fmt)], progress=False)
    finally:
        torch.set_num_threads(threads)
    return out


def cli_json(capsys, *args) -> dict:
    assert main([*map(str, args), "--json", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("op, fmt", MATRIX)
def test_every_analysis_runs_on_every_task(trained, capsys, op, fmt):
    path = trained[(op, fmt)]
    ckpt = ma.load(path, device="cpu")
    task = ckpt.task

    ev = cli_json(capsys, "evaluate", path, "--n", 200)
    a, b, _ = ma.core.evaluate.held_out_pairs(ckpt, 200)
    assert ev["id"]["exact"] == pytest.approx(float((ckpt.predict(a, b) == task.apply(a, b)).mean()), abs=1e-6)

    eq = cli_json(capsys, "equivalence", path, "--n", 300, "--no-one-longer")["ood"]["3"]
    oa, ob = data.ood_both(task, 3, 300)
    res = analyse_set(ckpt.model, task, oa, ob)
    assert eq["best_coverage"] == pytest.approx(res.search.top.coverage, abs=1e-6)
    top = next(c for c in res.search.relations if c.name == res.search.top.name)
    assert top.hits == eq["relations"][0]["hits"]  # the coverage is the share of outputs equal to the relation
    assert eq["consistency"] == pytest.approx(float((res.output == res.rep_output).mean()), abs=1e-6)
    assert (task.equivalent_answer(oa, ob) >= 0).all()  # e.g. sub: the representative keeps a >= b

    by_length = cli_json(capsys, "equivalence", path, "--lengths", "1-3", "--n", 200)["lengths"]
    (la, lb), _ = data.length_pairs(task, 3, 200)
    answers = ckpt.predict(la, lb)
    assert [r["m"] for r in by_length] == [1, 2, 3] and by_length[0]["exhaustive"]
    assert by_length[2]["exact"] == pytest.approx(float((answers == task.apply(la, lb)).mean()), abs=1e-6)
    truncated = float((answers == task.equivalent_answer(la, lb)).mean())
    assert by_length[2]["truncated"] == pytest.approx(truncated, abs=1e-6)

    pca = cli_json(capsys, "pca", path, "--n", 300, "--n-id", 200)
    assert sum(pca["explained_variance_ratio"]) <= 1 + 1e-6 and 0 <= pca["nearest_centroid_accuracy"] <= 1
    assert pca["n_ood"] > 0 and 0 <= pca["ood_on_equivalent_cluster"] <= 1

    lens = cli_json(capsys, "logit-lens", path, "--n", 100)
    assert lens["final_max_abs_diff"] < 1e-4  # the last residual state through the lens is the model's logits

    match = cli_json(capsys, "match", path, "--n", 100)
    first = min(match["differing_positions"])
    cos = match["cosine"]["blocks.0.hook_resid_pre"]
    assert all(c == pytest.approx(1.0, abs=1e-5) for c in cos[:first])  # causal: identical before the extra digit
    assert position_labels(task)[first] in ("a2", "b2")  # the extra digit is the hundreds digit

    patch = cli_json(capsys, "patch", path, "--n", 16, "--top", 3, "--digit", 1)
    done = {k: d for k, d in patch["digits"].items() if "skipped" not in d}
    assert done, f"no answer digit could be patched: {patch['digits']}"
    for k, d in patch["digits"].items():
        assert d["logit_pos"] == ma.core.positions.answer_logit_pos(task, int(k))
        assert "skipped" in d or all(-10 < s["effect"] < 10 for s in d["top_sites"])

    x, y = 213, 121  # an OOD input (a >= b, as subtraction needs)
    ex = cli_json(capsys, "explain", path, x, y)
    assert ex["prediction"] == int(ckpt.predict([x], [y])[0])
    ra, rb = task.id_representative(torch.tensor([x]), torch.tensor([y]))
    assert (ex["id_representative"]["a"], ex["id_representative"]["b"]) == (int(ra), int(rb))


@pytest.mark.parametrize("op, fmt", MATRIX)
def test_report_has_no_section_in_error(trained, tmp_path, op, fmt):
    ckpt = ma.load(trained[(op, fmt)], device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = build_report(ckpt, tmp_path, ReportSettings(n=40, quick=True), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert not result.errors, [(s.key, s.error) for s in result.errors]
    assert {s.status for s in result.sections} == {"ok"}


def test_sub_representatives_are_answered_like_ood_inputs(trained):
    """The acceptance check of the subtraction fix: the representative of an OOD difference keeps
    a >= b, its answer is non-negative, and the (well-trained) model answers it correctly."""
    ckpt = ma.load(trained[("sub", "paper")], device="cpu")
    task = ckpt.task
    a, b = data.ood_both(task, 3, 500)
    ra, rb = task.id_representative(a, b)
    assert (ra >= rb).all() and (task.equivalent_answer(a, b) >= 0).all()
    assert float((ckpt.predict(ra, rb) == task.apply(ra, rb)).mean()) >= 0.9


def test_what_a_task_cannot_support_is_skipped_with_a_reason(trained, capsys):
    """A 2-digit difference never reaches its hundreds digit, so patching that digit is skipped with
    the reason (library, CLI); unpadded formats have no fixed positions for the analyses."""
    path = trained[("sub", "paper")]
    effects = ma.analysis.circuits.head_effects(ma.load(path, device="cpu"), [2], n=16)
    assert (
        effects.effect.isna().all() and "answer digit 2 of sub2 cannot be changed alone" in effects.attrs["skipped"][2]
    )
    assert "cannot be changed alone" in cli_json(capsys, "patch", path, "--n", 16)["digits"]["2"]["skipped"]
    loose = ma.Task("add", 2, format="plain", width=3, pad=False)
    with pytest.raises(NotApplicable, match="needs a fixed-length"):
        position_labels(loose)
    assert main(["pca", str(trained[("add", "paper")]), "--position", "ans9", "--device", "cpu"]) == 2
    assert "answer digit 9 is out of range" in capsys.readouterr().err
