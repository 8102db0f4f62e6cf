"""Numbers of any size end to end (issue 24) on a hand-set model (tests/support/carryless_model.py: one layer
that adds digit by digit without carries): ``predict`` at 25 and 100 digits equals Python's ``a + b``,
evaluation and the relation search count what Python counts, the CLI and the report run on 25 digits."""

import json
import subprocess
import sys

import numpy as np
import pytest
from support.carryless_model import carry_free_pairs, carryless_adder, coupled_carryless_adder

from mechinterp_arith import Task, data, load, save_checkpoint
from mechinterp_arith.analysis.equivalence import analyse_set
from mechinterp_arith.core.decoding import generate
from mechinterp_arith.core.evaluate import accuracy, accuracy_by_length
from mechinterp_arith.report import ReportContext, ReportSettings, run_section

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def carryless(a: int, b: int) -> int:
    """What the hand-set model answers: the digit sums mod 10, no carries (Python)."""
    out, place = 0, 1
    while a or b:
        out += (a % 10 + b % 10) % 10 * place
        a, b, place = a // 10, b // 10, place * 10
    return out


@pytest.mark.parametrize("m", [25, 100])
def test_predict_equals_pythons_sum_at_25_and_100_digits(m, tmp_path):
    task = Task("add", 3, width=m)
    model, cfg = carryless_adder(task)
    ckpt = load(save_checkpoint(tmp_path / "ckpt", model, task, cfg), device="cpu")
    a, b = carry_free_pairs(m, 12, seed=m)
    got = ckpt.predict(a, b)
    assert [x == y + z for x, y, z in zip(got, a, b)] == [True] * 12  # Python ints, compared with Python's sum
    assert all(type(x) is int and len(str(x)) == m for x in got)
    assert np.array_equal(generate(ckpt.model, task, a[:3], b[:3], path="bridge").answers, got[:3])  # both paths
    assert generate(ckpt.model, task, a, b).path == "kv"
    # pairs that carry: the model's carry-less answers, digit for digit what Python computes
    ra, rb = data.ood_both(task, m, 40, seed=1)
    assert ckpt.predict(ra, rb).tolist() == [carryless(x, y) for x, y in zip(ra, rb)]


def test_evaluation_counts_what_python_counts_at_25_digits():
    task = Task("add", 2, width=25)
    model, _ = carryless_adder(task)
    a, b = data.ood_both(task, 25, 300, seed=0)
    expect = [carryless(x, y) for x, y in zip(a, b)]
    truth = [x + y for x, y in zip(a, b)]
    acc = accuracy(model, task, a, b)
    assert acc["n"] == 300 and acc["exact"] == pytest.approx(np.mean([e == t for e, t in zip(expect, truth)]), abs=1e-6)
    per_digit = [np.mean([e // 10**k % 10 == t // 10**k % 10 for e, t in zip(expect, truth)]) for k in range(26)]
    assert acc["per_digit"] == pytest.approx(per_digit, abs=1e-6)
    assert (
        acc["exact"] < 0.01 and acc["per_digit"][0] == 1.0
    )  # 24 places without a carry are rare; units never carry in
    free_a, free_b = carry_free_pairs(25, 40, seed=2)
    mixed_a, mixed_b = np.concatenate([a[:40], free_a]), np.concatenate([b[:40], free_b])
    cells = accuracy_by_length(model, task, mixed_a, mixed_b)
    assert list(cells) == [(25, 25)] and cells[(25, 25)]["n"] == 80
    assert cells[(25, 25)]["exact"] == pytest.approx((sum(e == t for e, t in zip(expect[:40], truth[:40])) + 40) / 80)


def test_relation_search_on_a_planted_model_at_20_digits():
    """The model keeps 4 digits (answer digits 4 and up are 0): on 20-digit pairs that do not carry below
    10^4 it answers (a mod 10^4) + (b mod 10^4), and the search says so."""
    task = Task("add", 4, width=20)
    model, _ = carryless_adder(task, keep=4)
    a, b = carry_free_pairs(20, 200, seed=3, keep=4)
    r = analyse_set(model, task, a, b)
    assert r.output.tolist() == [x % 10**4 + y % 10**4 for x, y in zip(a, b)]
    assert r.search.fits and r.best.name == "(a mod 10^4) + (b mod 10^4)" and r.best.coverage == 1.0
    assert r.exact == 0.0 and r.consistency == 1.0  # the representative (a mod 10^4, b mod 10^4) is answered alike
    assert r.rep_output.tolist() == [x % 10**4 + y % 10**4 for x, y in zip(a, b)]


@pytest.fixture(scope="module")
def wide_ckpt(tmp_path_factory):
    """The carry-less adder trained on "2 digits" of a 25-digit format, saved as a checkpoint."""
    task = Task("add", 2, width=25)
    model, cfg = carryless_adder(task)
    return save_checkpoint(tmp_path_factory.mktemp("wide") / "add2_w25", model, task, cfg)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "mechinterp_arith", *args], capture_output=True, text=True, timeout=600
    )


def test_cli_explains_and_evaluates_25_digit_operands(wide_ckpt):
    a = 1234567890123456789012345
    b = int("".join(str((9 - int(d)) // 2) for d in str(a)))  # 4332211004433221100443322: no digit sum reaches 10
    r = run_cli("explain", str(wide_ckpt), str(a), str(b), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["prediction"] == out["true_answer"] == a + b and out["correct"] and not out["in_distribution"]
    assert out["id_representative"] == {"a": a % 100, "b": b % 100, "prediction": a % 100 + b % 100}
    assert [d["predicted"] for d in out["digits"]] == [int(c) for c in str(a + b).zfill(26)[::-1]]
    r = run_cli("evaluate", str(wide_ckpt), "--ood-digits", "25", "--n", "200", "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    oa, ob = data.ood_both(Task("add", 2, width=25), 25, 200, seed=0)
    want = np.mean([carryless(x, y) == x + y for x, y in zip(oa, ob)])
    assert ev["ood"]["25"]["exact"] == pytest.approx(want, abs=1e-6)
    r = run_cli("explain", str(wide_ckpt), str(10**25), "1")
    assert r.returncode == 2 and "operand a=10000000000000000000000000 has 26 digits" in r.stderr


def test_report_sections_run_on_25_digit_operands(wide_ckpt):
    ctx = ReportContext(load(wide_ckpt, device="cpu"), ReportSettings(n=30, quick=True))
    for key in ("model", "accuracy", "positions", "equivalence", "pca", "logit_lens", "matching", "attention"):
        result = run_section(key, ctx)
        assert result.status == "ok", (key, result.error)
    grid = ctx.memo["length_grid"]
    assert grid["lengths"] == data.spread_lengths(1, 25) == [1, 4, 6, 9, 12, 14, 17, 20, 22, 25]
    sets = data.length_grid(ctx.ckpt.task, grid["lengths"], 30, seed=0)  # the pairs of each cell, as the report drew
    for i, la in enumerate(grid["lengths"]):
        for j, lb in enumerate(grid["lengths"]):
            a, b = sets[(la, lb)]
            want = np.mean([carryless(x, y) == x + y for x, y in zip(a, b)])
            assert grid["exact"][i, j] == pytest.approx(want, abs=1e-6)  # scores are rounded to 6 places
    assert grid["exact"][0, 0] > 0.3 and grid["exact"][-1, -1] == 0.0


@pytest.fixture(scope="module")
def coupled_ckpt(tmp_path_factory):
    """The coupled carry-less adder saved with an 8-digit format; its table (45 rows) reads up to 42 digits."""
    task = Task("add", 4, format="reversed", width=8)
    model, cfg = coupled_carryless_adder(task, n_ctx=45)
    return save_checkpoint(tmp_path_factory.mktemp("coupled") / "add4_w8", model, task, cfg)


@pytest.mark.parametrize("m", [25, 40])
def test_operands_past_the_width_are_read_in_a_wider_format(coupled_ckpt, m):
    ckpt = load(coupled_ckpt, device="cpu")
    assert ckpt.task.width == 8
    a, b = carry_free_pairs(m, 12, seed=m)
    got = ckpt.predict(a, b)  # widened to m digits on the fly
    assert [x == y + z for x, y, z in zip(got, a, b)] == [True] * 12 and all(type(x) is int for x in got)
    ra, rb = data.ood_both(Task("add", 4, format="reversed", width=m), m, 64, seed=1)
    wide = ckpt.for_length(m)
    gen, slow = generate(wide.model, wide.task, ra, rb), generate(wide.model, wide.task, ra, rb, path="bridge")
    assert gen.path == "kv" and np.array_equal(gen.answers, slow.answers)  # the fast path reads the wider context
    assert list(gen.answers) == [carryless(x, y) for x, y in zip(ra, rb)]  # its own rule: no carries, any length


def test_cli_scores_lengths_past_the_width_and_stops_below(coupled_ckpt):
    r = run_cli("evaluate", str(coupled_ckpt), "--ood-digits", "25", "40", "--n", "200", "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    for m in (25, 40):
        oa, ob = data.ood_both(Task("add", 4, format="reversed", width=m), m, 200, seed=0)
        want = np.mean([carryless(x, y) == x + y for x, y in zip(oa, ob)])
        assert (
            ev["ood"][str(m)]["exact"] == pytest.approx(want, abs=1e-6) and len(ev["ood"][str(m)]["per_digit"]) == m + 1
        )
    # one-digit pairs are exact when their digits sum below 10 (55 of 100): the curve stops at 2 digits (0.3)
    r = run_cli("equivalence", str(coupled_ckpt), "--lengths", "1-40", "--stop-below", "0.5", "--n", "300", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["lengths"]
    assert [row["m"] for row in rows] == [1, 2] and rows[0]["exact"] == 0.55 and rows[1]["exact"] < 0.5
    r = run_cli("equivalence", str(coupled_ckpt), "--lengths", "40-43", "--n", "10")
    assert r.returncode == 2 and r.stderr.strip().endswith(
        "coupling IDs reach 45 at 43 digits; the position table has 45 rows, IDs 0..44 (widest format: 42 digits)"
    )
