import json

import pytest
from support.cli import run_in_process

from mechinterp_arith.analysis import circuits


def test_digit_sites_find_the_b_digit_position(add3):
    df = circuits.digit_sites(add3, k=1, n=12)
    assert df.attrs["clean_logit_diff"] > 5 and df.attrs["corrupted_logit_diff"] < -5
    resid = df[(df.kind == "resid_pre") & (df.layer == 1)].set_index("label")
    assert resid.loc["b1", "effect"] > 0.9  # digit 1 is held at b1's position after layer 0
    assert resid.loc["a1", "effect"] < 0.1  # ... and not at a1's
    assert df[df.identical].effect.abs().max() < 1e-6  # identical sites change nothing


def test_head_operand_map_on_add3(add3):
    df = circuits.head_operand_map(add3, k=1, n=12)
    row = df.set_index(["layer", "head", "operand", "place"])
    # layer-2 heads 1 and 2 read b1 from the answer position and move digit 1 there
    for head in (1, 2):
        assert row.loc[(2, head, "b", 1), "attention"] > 0.9
        assert row.loc[(2, head, "b", 1), "effect"] > 0.2
    # head L0H2 brings a1 into b1's position
    assert row.loc[(0, 2, "a", 1), "best_label"] == "b1"
    assert row.loc[(0, 2, "a", 1), "best_effect"] > 0.3


def test_ood_patching_never_restores_the_dropped_digit(add3):
    df = circuits.ood_sites(add3, n=24)
    # the model answers 95% of 4-digit inputs as their representative (docs/equivalence.md); 24 pairs
    assert df.attrs["ood_answers_equal_representative"] >= 0.8 and df.attrs["ood_exact"] == 0.0
    live = df[~df.identical]
    assert set(live.label) >= {"a3", "b3"}
    # the extra digits change layer-0 activations strongly ...
    assert live[(live.layer == 0) & (live.kind == "resid_pre")].set_index("label").act_diff.min() > 0.5
    # ... but no single patch, either way, makes the model answer the true OOD digit more often
    base = df.true_digit_rate.iloc[0]
    assert (df.true_digit_rate <= base + 1e-9).all() and df.flip_rate.max() <= 0.1


def test_explain_an_ood_input(add3):
    out = circuits.explain(add3, 1349, 705, top=2)
    assert out["prediction"] == 1054 and out["true_answer"] == 2054 and not out["in_distribution"]
    assert out["id_representative"] == {"a": 349, "b": 705, "prediction": 1054}
    d = {x["k"]: x for x in out["digits"]}
    assert d[0]["top_sites"][0]["label"] == "b0" and d[0]["top_sites"][0]["effect"] > 0.9
    assert d[4]["top_sites"] == [] and "no edit" in d[4]["note"]


def test_patch_and_explain_cli_json(capsys):
    code, out, err = run_in_process(capsys, "patch", "add3", "--digit", "0", "--n", "8", "--json", "--device", "cpu")
    assert code == 0, err
    d0 = json.loads(out)["digits"]["0"]
    assert d0["logit_pos"] == 9 and d0["top_sites"][0]["label"] == "b0" and d0["top_sites"][0]["effect"] > 0.9
    assert any(h["layer"] == 0 and h["operand"] == "a" and h["at"] == "b0" for h in d0["heads"])
    code, out, err = run_in_process(capsys, "explain", "add3", "349", "705", "--json", "--top", "1", "--device", "cpu")
    assert code == 0, err
    out = json.loads(out)
    assert out["prediction"] == 1054 and out["correct"] and out["in_distribution"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["patch", "add3", "--digit", "9"], "answer digit 9 is out of range"),
        (["patch", "add3", "--digit", "5"], "answer digit 5 of add3 cannot be changed alone"),
        (["explain", "add3", "-5", "3"], "operand a=-5 is negative"),
        (["explain", "add3", "123456", "3"], "has 6 digits"),
    ],
)
def test_cli_errors_are_one_line(capsys, args, message):
    code, _, err = run_in_process(capsys, *args, "--device", "cpu")
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
