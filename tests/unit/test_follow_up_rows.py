"""How a row of the follow-up table is named: its set, the steps its seeds trained, a published row or none."""

import math

import pandas as pd

from mechinterp_arith.report.follow_up_table import describe_set, has_published, steps_text
from mechinterp_arith.report.sweep_page import setting_text


def test_a_row_read_back_from_csv_names_its_modulus_steps_and_missing_published_row():
    # a results.csv read by pandas: the modulus is a float, a missing published row is NaN, not None
    row = pd.Series(
        {"task": "addmod", "modulus": 101.0, "digits": 4, "operand_lengths": "either", "theirs": math.nan}
        | {"steps": 4000, "steps_min": 1250.0, "steps_max": 2500.0}
    )
    assert describe_set(row) == "addmod p=101, 4 digits (either)"
    assert not has_published(row) and has_published(pd.Series({"theirs": "add D_4"}))
    assert steps_text(row) == "1,250-2,500 of 4,000 steps"
    assert steps_text({"steps": 4000, "steps_min": 4000.0, "steps_max": 4000.0}) == "4,000 of 4,000 steps"
    assert steps_text({"steps": 4000, "steps_min": math.nan}) == "4,000 steps"  # not recorded


def test_the_sweep_pages_run_table_prints_settings_as_written():
    # a sweep of addition and modular rows: pandas reads the modulus column as floats with NaN
    assert [setting_text(v) for v in (math.nan, 100.0, 101.0, 0.5, "either:4-5", 4)] == [
        "",
        "100",
        "101",
        "0.5",
        "either:4-5",
        "4",
    ]
