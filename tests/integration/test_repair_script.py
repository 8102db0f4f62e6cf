"""analyses/repair.py end to end on tiny checkpoints laid out as the lab's: ``learned_s0`` the hand-set
carry-less adder that drops the extra digit (answers (a mod 10^3) + (b mod 10^3) on carry-free pairs),
``coupling_s0`` an untrained coupled model. Every intervention is scored with its hooks, each row's
rates equal those of an independent greedy loop run under the same hooks, and the page is drawn."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from support import reference
from support.carryless_model import carryless_adder
from support.cli import cli_json

from mechinterp_arith import ModelConfig, Task, data, load, save_checkpoint
from mechinterp_arith.core.model import build_model
from mechinterp_arith.report.repair_page import build_repair_page, is_repair_results, read_repair

REPO = Path(__file__).resolve().parents[2]
TASK = Task("add", 2, format="reversed", width=3)
STUDY = Task("add", 3, "paper", width=5)


def script():
    spec = importlib.util.spec_from_file_location("repair_script", REPO / "analyses" / "repair.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    adder, adder_cfg = carryless_adder(STUDY, keep=3)
    save_checkpoint(root / "learned_s0", adder, STUDY, adder_cfg)
    cfg = ModelConfig.for_task(TASK, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional="coupling", seed=7)
    save_checkpoint(root / "coupling_s0", build_model(cfg, task=TASK), TASK, cfg)
    out = root / "repair.json"
    argv = ["--lab", str(root), "--seeds", "0", "1", "--no-add3", "--n", "40", "--results", str(out)]
    assert script().main(argv) == 0
    return root, json.loads(out.read_text()), out


def test_every_intervention_is_scored_and_matches_a_plain_greedy_loop_under_its_hooks(results):
    root, res, _ = results
    mod = script()
    rows = [r for r in res["rows"] if r["group"] == "lab learned"]
    ckpt = load(root / "learned_s0")
    ivs = mod.interventions("learned", 1, 3, 0)
    assert sorted({r["intervention"] for r in rows}) == sorted(iv.name for iv in ivs)
    assert {r["m"] for r in rows} == {4, 5}  # trained on 3 digits, width 5
    truncated_rates = set()
    for iv in ivs:
        for m in (4, 5):
            row = next(r for r in rows if r["intervention"] == iv.name and r["m"] == m)
            (a, b), _ = data.length_pairs(STUDY, m, 40, seed=0, operands="both")
            with ckpt.model.hooks(fwd_hooks=iv.hooks(ckpt.model, STUDY)):
                answers = reference.greedy_answers(ckpt.model, STUDY, a, b)
            assert row["exact"] == round(float(np.mean(answers == reference.true_answer("add", a, b))), 4)
            truncated = (a % 1000) + (b % 1000)
            assert row["truncated"] == round(float(np.mean(answers == truncated)), 4), iv.name
            truncated_rates.add(row["truncated"])
    none = next(r for r in rows if r["kind"] == "none" and r["m"] == 4)
    assert 0.05 < none["truncated"] < 0.5  # the truncated sum, right where no digit below 3 carries
    assert len(truncated_rates) > 2  # interventions change the answers
    assert all(r["gain"] == 0.0 for r in rows if r["kind"] == "none")
    assert res["models_missing"] == [
        {"group": "lab learned", "seed": 1, "why": res["models_missing"][0]["why"]},
        *res["models_missing"][1:],
    ]
    assert "learned_s1" in res["models_missing"][0]["why"]


def test_coupled_models_are_scored_from_their_breaking_length(results):
    _, res, _ = results
    found = res["breaking"]["lab coupling s0"]
    rows = [r for r in res["rows"] if r["group"] == "lab coupling"]
    assert found["lengths"] and found["lengths"][0] == 4  # untrained: exact < 0.5 at the first length past width 3
    assert {r["m"] for r in rows} == set(found["lengths"])
    kinds = {r["kind"] for r in rows}
    assert {"none", "attention scaling", "position remap", "readout attention"} == kinds


def test_the_repair_page_lists_every_row(results, tmp_path):
    _, res, out = results
    assert is_repair_results(out) and not is_repair_results(REPO / "pyproject.toml")
    page = build_repair_page(out, tmp_path / "page").read_text()
    assert page.count("<tr>") >= len(res["rows"]) + len(res["summary"])
    assert "Repair without retraining" in page and "scale x2 (all layers)" in page
    with pytest.raises(ValueError, match="not the results of analyses/repair.py"):
        read_repair({"rows": [{"seed": 0}]})


def test_the_report_command_draws_the_repair_page_from_its_results(results, tmp_path, capsys):
    _, _, out = results
    summary = cli_json(capsys, "report", str(out), "--out", str(tmp_path / "page"), "--json")
    assert summary["path"] == str(tmp_path / "page" / "index.html")
    assert "Repair without retraining" in (tmp_path / "page" / "index.html").read_text()
