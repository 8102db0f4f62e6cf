import json
import shlex

import pytest
from support.cli import run_console

from mechinterp_arith.cli import COMMAND_MODULES, build_parser, main
from mechinterp_arith.cli.train_cmd import resolved_configs
from mechinterp_arith.core.scheme_defaults import scheme_defaults


def test_every_command_has_help(capsys):
    names = list(build_parser()._subparsers._group_actions[0].choices)
    assert {"train", "evaluate", "info"} <= set(names)
    assert len(names) == len(COMMAND_MODULES) and names[:3] == ["train", "evaluate", "info"]
    for name in names:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: mechinterp-arith " + name in capsys.readouterr().out


def test_evaluate_json_on_shipped_add3_sample():
    r = run_console("evaluate", "add3", "--ood-digits", "4", "--n", "2000", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["task"] == "add3" and out["train_digits"] == 3 and out["id"]["n"] == 2000
    assert out["id"]["exact"] >= 0.999 and out["ood"]["4"]["exact"] <= 0.01
    assert len(out["id"]["per_digit"]) == 6 and min(out["id"]["per_digit"]) >= 0.999


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "no_such_ckpt"], "no checkpoint named or at 'no_such_ckpt'"),
        (["evaluate", "add3", "--ood-digits", "7"], "learned positions index the table by token: 7-digit rows"),
        (["evaluate", "add3", "--n", "0"], "--n must be >= 1"),
        (["info", "tests"], "holds no config.json"),
        (["train", "--task", "addmod", "--out", "/tmp/never_written"], "needs a modulus"),
        (["evaluate", "add3", "--device", "tpu9"], "unknown device"),
    ],
)
def test_errors_are_one_line_without_traceback(args, message):
    r = run_console(*args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_info_reports_the_reproducing_command():
    r = run_console("info", "add3", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["command"].startswith("mechinterp-arith train --task add --digits 3")
    assert info["model"]["n_params"] == 86_592 and info["task"]["example"] == "0034900705450100"


def test_train_cli_writes_a_checkpoint_that_evaluates(tmp_path):
    out = tmp_path / "tiny"
    r = run_console(
        "train",
        "--task",
        "add",
        "--digits",
        "1",
        "--width",
        "2",
        "--layers",
        "1",
        "--heads",
        "2",
        "--d-model",
        "16",
        "--steps",
        "20",
        "--eval-every",
        "10",
        "--eval-n",
        "20",
        "--out",
        str(out),
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["command"].startswith("mechinterp-arith train --task add --digits 1")
    r = run_console("evaluate", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["id"]["n"] == 20  # 1-digit: 100 pairs, 80 train / 20 held out


def test_a_scheme_trained_on_its_defaults_records_them_resolved_and_info_shows_them(tmp_path, capsys):
    out = tmp_path / "coupled"
    typed = ["train", "--digits", "2", "--width", "3", "--positional", "coupling", "--steps", "4", "--n-train", "200"]
    assert main([*typed, "--n-test", "50", "--eval-n", "20", "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    d = scheme_defaults("coupling")
    assert config["task"]["format"] == d["format"]
    assert {k: config["model"][k] for k in d["model"]} == d["model"]
    assert config["training"]["operand_lengths"] == "mixed" and config["training"]["random_positions"] is True
    # the recorded command spells out every resolved setting: it trains the same configs whatever the defaults
    args = build_parser().parse_args(shlex.split(config["command"])[1:])
    task, model, training = resolved_configs(args)
    assert task.to_dict() == config["task"] and model.to_dict() == config["model"]
    assert training.to_dict() == config["training"] and args.out == str(out)
    arch = f"--layers {d['model']['n_layers']} --heads {d['model']['n_heads']} --d-model {d['model']['d_model']}"
    assert arch in config["command"] and "--random-positions" in config["command"]
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{d['model']['n_layers']} layers, {d['model']['n_heads']} heads, d_model {d['model']['d_model']}" in text
    assert "coupling positions" in text and "format reversed (width 3)" in text
    assert (
        "training    4 steps of batch " in text
        and "200 training pairs, mixed operand lengths, random positions" in text
    )


def test_train_cli_in_the_follow_ups_format_records_it(tmp_path, capsys):
    """--bos and --operand-lengths either:L-N (docs/follow_up.md) reach the checkpoint and its command."""
    out = tmp_path / "follow_up"
    args = "train --digits 2 --format reversed --bos --width 4 --operand-lengths either:1-2".split()
    args += "--layers 1 --heads 2 --d-model 16 --steps 20 --eval-every 10 --eval-n 20".split()
    assert main([*args, "--n-train", "500", "--n-test", "100", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["task"]["bos"] is True and config["training"]["operand_lengths"] == "either:1-2"
    assert "--bos" in config["command"] and "--operand-lengths either:1-2" in config["command"]
    capsys.readouterr()
    assert main(["evaluate", str(out), "--ood-digits", "3", "4", "--n", "50", "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["id"]["n"] == 50 and set(result["ood"]) == {"3", "4"}


@pytest.mark.parametrize(
    "lengths, message",
    [
        ("either:3-5", "operand lengths 'either:3-5' reach 5 digits but add4 is trained on digits=4"),
        ("longest", "unknown operand lengths 'longest'"),
    ],
)
def test_bad_operand_lengths_are_refused_before_anything_is_written(tmp_path, capsys, lengths, message):
    out = tmp_path / "never"
    assert main(["train", "--digits", "4", "--operand-lengths", lengths, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()
