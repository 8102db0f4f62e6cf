"""The follow-up's table from a sweep: the by-length analysis of each run, the table beside the
published rows, its report section, and the records (train command, load) of a resumable sweep."""

from __future__ import annotations

import functools
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import mechinterp_arith as ma
from mechinterp_arith.analysis.relation_by_length import relation_by_length
from mechinterp_arith.core import data
from mechinterp_arith.report.follow_up_table import PUBLISHED, follow_up_table, published_row
from mechinterp_arith.report.sweep_page import build_sweep_report
from mechinterp_arith.sweep import AnalysesSpec, SpecError, parse_spec, run_sweep
from mechinterp_arith.sweep.results import analyses_key, read_record

# two seeds of 2-digit multiplication in the follow-up's format (their "mul D_2" row), width 4: lengths 1..4
SPEC = """
[sweep]
name = "follow_up_tiny"
[settings]
task = "mul"
digits = 2
format = "reversed"
bos = true
width = 4
operand_lengths = "either"
n_train = 8000
n_test = 500
n_layers = 1
n_heads = 2
d_model = 16
steps = 40
batch_size = 64
lr = 1e-2
warmup = 5
eval_every = 20
eval_n = 50
[grid]
seed = [0, 1]
[analyses]
evaluate = true
equivalence = false
by_length = true
n = 150
"""


@functools.lru_cache(maxsize=1)
def tiny_follow_up():
    """``(spec, first SweepResult, rerun SweepResult)`` of the tiny sweep, in a temporary directory."""
    root = Path(tempfile.mkdtemp(prefix="mechinterp-arith-follow-up-"))
    spec = parse_spec(SPEC, "follow_up_tiny")
    first = run_sweep(spec, root / "sweep", workers=1, device="cpu", progress=False)
    again = run_sweep(spec, root / "sweep", workers=1, device="cpu", progress=False)
    return spec, first, again


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    if tiny_follow_up.cache_info().currsize:
        shutil.rmtree(tiny_follow_up()[1].sweep_dir.parent, ignore_errors=True)


def test_by_length_figures_are_the_analysis_of_each_run():
    spec, result, _ = tiny_follow_up()
    assert result.ok and result.ran == 2
    frame = result.frame.set_index("run_id")
    for run in spec.runs:
        ckpt = ma.load(result.sweep_dir / "runs" / run.run_id, device="cpu")
        table = relation_by_length(ckpt, [1, 2, 3, 4], n=150, seed=0, operands="either")  # their mul sets
        row = frame.loc[run.run_id]
        assert row["len_operands"] == "either" and "len5_exact" not in frame  # the width holds 4 digits
        for m in (1, 2, 3, 4):
            assert row[f"len{m}_exact"] == pytest.approx(table.loc[m, "exact"], abs=1e-6)
            assert row[f"len{m}_truncated"] == pytest.approx(table.loc[m, "truncated"], abs=1e-6)
            assert row[f"len{m}_best_coverage"] == pytest.approx(table.loc[m, "best_coverage"], abs=1e-6)
    # truncated = true, worked out from the operands: every pair below 10^2, and at 3 digits only
    # where (a mod 100)(b mod 100) = ab
    row = frame.iloc[0]
    assert row["len1_truncated_true"] == row["len2_truncated_true"] == 1.0
    (a, b), _ = data.length_pairs(spec.runs[0].task, 3, 150, seed=0, operands="either")
    assert row["len3_truncated_true"] == pytest.approx(float(np.mean((a % 100) * (b % 100) == a * b)))


def test_the_table_puts_seed_means_beside_the_published_row():
    _, result, _ = tiny_follow_up()
    frame = result.frame
    table = follow_up_table(frame)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["task"], row["digits"], row["operand_lengths"], row["n_seeds"]) == ("mul", 2, "either", 2)
    assert row["theirs"] == "mul D_2" and row["their_params"] == "0.82M" and row["width"] == 4
    assert row["their_exact_2"] == 0.993939 and row["their_truncated_9"] == 0.8870  # the notebook's cell 46
    for m in (1, 2, 3, 4):
        values = frame[f"len{m}_truncated"]
        assert row[f"truncated_{m}"] == pytest.approx(values.mean())
        assert (row[f"truncated_{m}_min"], row[f"truncated_{m}_max"]) == (values.min(), values.max())
    assert math.isnan(row.get("exact_5", math.nan))  # lengths the runs do not hold stay empty


def test_the_sweep_page_shows_ours_beside_theirs(tmp_path):
    _, result, _ = tiny_follow_up()
    page = build_sweep_report(result.sweep_dir, tmp_path / "page")
    html = page.path.read_text(encoding="utf-8")
    assert "By operand length, beside the follow-up" in html and 'data-key="follow_up" data-status="ok"' in html
    assert "theirs (mul D_2, 0.82M): exact" in html and "truncated = true on" in html
    assert "zero-padded to 4 digits" in html  # the runs' width, not a fixed one
    assert html.count('class="plotly-graph-div"') == 4  # by length, follow-up exact and truncated, training


def test_rerun_skips_and_records_hold_the_train_command_and_load():
    spec, result, again = tiny_follow_up()
    assert (again.skipped, again.ran) == (2, 0)
    for run in spec.runs:
        record = read_record(result.sweep_dir, run.run_id)
        command = record["train_command"]
        assert command.startswith("mechinterp-arith train --task mul --digits 2 --format reversed --width 4")
        assert "--bos" in command and "--operand-lengths either" in command and f"--seed {run.model.seed}" in command
        assert command.endswith(f"--out runs/{run.run_id}")
        assert len(record["load_average"]) == 3 and all(x >= 0 for x in record["load_average"])


def test_by_length_options_are_checked_and_stay_out_of_earlier_keys():
    with pytest.raises(SpecError, match="operands = 'all': expected 'follow-up' or 'both' or 'either'"):
        parse_spec('[analyses]\nby_length = true\noperands = "all"')
    with pytest.raises(SpecError, match="max_length must be >= 1"):
        parse_spec("[analyses]\nmax_length = 0")
    assert set(analyses_key(AnalysesSpec())) == {"evaluate", "equivalence", "pca", "n", "ood_digits", "seed"}
    assert analyses_key(AnalysesSpec(by_length=True))["by_length"] is True


def test_published_rows_are_fractions_of_nine_lengths():
    assert len(PUBLISHED) == 19 and len({r.name for r in PUBLISHED}) == 19
    for row in PUBLISHED:
        assert len(row.exact) == len(row.truncated) == 9
        assert all(0.0 <= x <= 1.0 for x in row.exact + row.truncated)
    assert published_row("add", 4, "either").name == "add D_4"
    assert published_row("addmod", 4, "either", 101) is None  # the notebook prints no p = 101 row
