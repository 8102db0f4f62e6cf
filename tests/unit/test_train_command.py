"""The recorded training command (parsed back into the same settings) and `train --seeds K`."""

import dataclasses
import json
import re
import shlex

import pytest

from mechinterp_arith import ModelConfig, Task, TrainConfig, load
from mechinterp_arith.cli import build_parser, main
from mechinterp_arith.cli.train_cmd import resolved_configs
from mechinterp_arith.core.position_schemes import default_n_ctx, scheme_defaults
from mechinterp_arith.core.train_command import MODEL_FLAGS, MODEL_FROM_TASK, TASK_FLAGS, TRAIN_FLAGS, train_command
from mechinterp_arith.core.train_config import with_scheme_defaults


def parsed(command: str):
    """The (task, model, training) settings the train command line would use."""
    args = build_parser().parse_args(shlex.split(command)[1:])
    return (*resolved_configs(args), args.out)


def test_every_setting_has_an_option():
    assert set(TASK_FLAGS) | {"pad", "bos"} == set(Task.__dataclass_fields__)
    assert set(MODEL_FLAGS) | set(MODEL_FROM_TASK) == set(ModelConfig.__dataclass_fields__)
    assert set(TRAIN_FLAGS) == set(TrainConfig.__dataclass_fields__)


@pytest.mark.parametrize(
    "task, model_overrides, train_overrides",
    [
        (Task("add", 3), {}, {}),
        (
            Task("addmod", 2, modulus=101),
            {"seed": 7, "act_fn": "relu"},
            {"betas": (0.8, 0.95), "ood_digits": 3, "seed": 5},
        ),
        (
            Task("sub", 2, format="reversed", pad=False),
            {"n_layers": 1, "d_mlp": 40},
            {
                "target_accuracy": 0.99,
                "snapshot_every": 50,
                "n_train": 300,
                "n_test": 20,
                "forward": "bridge",
                "batch_rng": "arithmetic",
                "schedule": "constant",
                "min_lr_ratio": 0.5,
                "device": "cpu",
                "anneal_at": None,
            },
        ),
        (
            Task("add", 3, format="reversed", width=6),
            {"positional": "coupling", "n_ctx": 40, "n_heads": 4},
            {"operand_lengths": "mixed", "random_positions": True, "anneal_at": 0.8, "anneal_steps": 40},
        ),
        (Task("add", 3, width=6), {"positional": "abacus"}, {"operand_lengths": "uniform", "random_positions": False}),
        (Task("add", 5, format="reversed", width=9, bos=True), {"n_layers": 4}, {"operand_lengths": "either:4-5"}),
    ],
)
def test_the_recorded_command_parses_back_into_the_same_settings(task, model_overrides, train_overrides):
    model = ModelConfig.for_task(task, **model_overrides)
    cfg = with_scheme_defaults(dataclasses.replace(TrainConfig(), **train_overrides), model.positional)
    command = train_command(task, model, cfg, "runs/x y")
    assert parsed(command) == (task, model, cfg, "runs/x y")


def test_a_model_whose_vocabulary_the_command_cannot_set_has_no_command():
    task = Task("add", 2)
    model = dataclasses.replace(ModelConfig.for_task(task), d_vocab=task.d_vocab + 1)
    assert train_command(task, model, TrainConfig(), "out") is None


def test_train_seeds_writes_one_checkpoint_per_seed_and_the_ensemble_json(tmp_path, capsys):
    out = tmp_path / "ens"
    argv = [
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
        "6",
        "--eval-every",
        "3",
        "--eval-n",
        "10",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "seed   0: step 6" in printed and "seed   1: step 6" in printed and "ensemble.json" in printed
    doc = json.loads((out / "ensemble.json").read_text())
    assert doc["seeds"] == [0, 1] and doc["command"] == "mechinterp-arith " + shlex.join(argv)
    for seed in (0, 1):
        ckpt = load(out / f"seed_{seed}", device="cpu")
        _task, model, cfg, where = parsed(ckpt.config["command"])
        assert (model.seed, cfg.seed, where) == (seed, seed, str(out / f"seed_{seed}"))
        assert cfg.to_dict() == ckpt.config["training"] and len(doc["members"][seed]["history"]) == 2


def test_seeds_and_an_explicit_seed_are_one_clear_error(tmp_path, capsys):
    assert main(["train", "--seeds", "2", "--seed", "1", "--out", str(tmp_path / "x")]) == 2
    assert "pass either --seeds or those" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def resolved(*options: str):
    """(task, model, training) of `mechinterp-arith train OPTIONS --out x`."""
    return resolved_configs(build_parser().parse_args(["train", *options, "--out", "x"]))


def test_the_learned_defaults_are_the_study_setting_unchanged():
    task, model, cfg = resolved("--task", "add", "--digits", "3")
    assert task == Task("add", 3, format="paper")
    assert model == ModelConfig.for_task(task) == ModelConfig(n_ctx=task.n_ctx, d_vocab=10)  # gpt-nano
    assert (model.n_layers, model.n_heads, model.d_model, model.d_mlp) == (3, 3, 48, 192)
    assert cfg == with_scheme_defaults(TrainConfig(), "learned")
    assert (cfg.steps, cfg.batch_size, cfg.operand_lengths, cfg.random_positions) == (2000, 128, "uniform", False)


@pytest.mark.parametrize("scheme", ["coupling", "abacus"])
def test_a_scheme_without_flags_trains_its_own_model_data_and_budget(scheme):
    d = scheme_defaults(scheme)
    task, model, cfg = resolved("--digits", "4", "--width", "8", "--positional", scheme)
    assert task.format == d["format"] == "reversed"
    assert {k: getattr(model, k) for k in d["model"]} == d["model"] and model.positional == scheme
    assert {k: getattr(cfg, k) for k in d["training"]} == d["training"]
    assert (cfg.operand_lengths, cfg.random_positions) == ("mixed", True)
    assert model.n_ctx == default_n_ctx(scheme, task) and model.d_mlp == d["model"]["d_mlp"]


def test_explicit_options_win_over_the_scheme_defaults():
    task, model, cfg = resolved(
        "--digits", "4", "--width", "8", "--positional", "coupling", "--format", "plain", "--no-pad",
        "--layers", "2", "--d-model", "32", "--steps", "7", "--batch-size", "16", "--operand-lengths", "uniform",
        "--no-random-positions", "--n-ctx", "60",
    )  # fmt: skip
    assert (task.format, task.pad) == ("plain", False)
    heads = scheme_defaults("coupling")["model"]["n_heads"]
    assert (model.n_layers, model.n_heads, model.d_model, model.d_mlp, model.n_ctx) == (2, heads, 32, 128, 60)
    assert (cfg.steps, cfg.batch_size, cfg.operand_lengths, cfg.random_positions) == (7, 16, "uniform", False)
    assert cfg.distractors is False  # coupling's default needs random positions, which place the distractors
    assert cfg.warmup == scheme_defaults("coupling")["training"].get("warmup", TrainConfig().warmup)


def test_train_help_names_the_default_of_each_scheme(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for scheme in ("coupling", "abacus"):
        layers = scheme_defaults(scheme)["model"]["n_layers"]
        assert re.search(
            rf"--layers LAYERS transformer blocks; default by --positional: [^-]*{scheme}[a-z, ]*: {layers}\b", text
        )
    assert re.search(r"--steps STEPS [^;]*; default by --positional: learned, rotary, nope, randomized", text)
    assert "(default: None)" not in text.split("--layers")[1].split("--act")[0]
