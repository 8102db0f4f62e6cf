"""Seed ensembles: K models in one batched computation end exactly where K separate runs end."""

import dataclasses
import json

import pytest
from support.models import interrupt_at, same_weights

from mechinterp_arith import ModelConfig, Task, TrainConfig, load, train
from mechinterp_arith.cli import build_parser
from mechinterp_arith.core.ensemble import ENSEMBLE_JSON, check_seeds, train_ensemble
from mechinterp_arith.core.train_config import lr_at

TASK = Task("add", 1, width=2)  # 100 pairs: 80 train, 20 held out
MODEL = ModelConfig.for_task(TASK, n_layers=2, n_heads=2, d_model=32, d_mlp=64)
# held-out exact 0.05 is one pair of 20: seeds 0 and 2 reach it at step 10, seed 3 at 40, seed 1 never
EARLY = TrainConfig(
    steps=60,
    batch_size=32,
    lr=1e-2,
    warmup=5,
    eval_every=10,
    eval_n=20,
    target_accuracy=0.05,
    snapshot_every=20,
    device="cpu",
)


def alone(seed: int, cfg: TrainConfig = EARLY, **kw):
    return train(TASK, dataclasses.replace(MODEL, seed=seed), dataclasses.replace(cfg, seed=seed), progress=False, **kw)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    out = tmp_path_factory.mktemp("ens") / "run"
    # train(seeds=...) is the deprecated spelling of train_ensemble: it warns and trains the same ensemble
    with pytest.warns(DeprecationWarning, match="train_ensemble"):
        ens = train(
            TASK, MODEL, EARLY, out_dir=out, seeds=[0, 1, 2, 3], progress=False, command="mechinterp-arith train ..."
        )
    return ens, out


def test_members_stop_at_their_own_steps_with_the_weights_of_separate_runs(ensemble):
    ens, _ = ensemble
    summary = ens.summary()
    assert summary["seed"].tolist() == [0, 1, 2, 3]
    assert summary["step"].tolist() == [10, 60, 10, 40]  # two members leave at 10, one at 40: the batch shrinks
    for seed in (0, 1, 3):
        model, history, snapshots = alone(seed)
        assert same_weights(model, ens.models[seed]), seed
        cols = ["step", "loss", "id_exact", "ood_exact", "held_out_exact"]
        assert history[cols].equals(ens.histories[seed][cols]), seed
        assert sorted(snapshots) == sorted(ens.results[seed].snapshots)


def test_members_are_checkpoints_that_record_the_command_training_them_alone(ensemble, tmp_path):
    ens, out = ensemble
    doc = json.loads((out / ENSEMBLE_JSON).read_text())
    assert doc["seeds"] == [0, 1, 2, 3] and doc["command"] == "mechinterp-arith train ..."
    assert [m["path"] for m in doc["members"]] == ["seed_0", "seed_1", "seed_2", "seed_3"]
    assert doc["summary"]["held_out_exact"] == {"best": 0.1, "median": 0.05, "worst": 0.0}
    assert doc["members"][3]["history"][-1]["step"] == 40
    ckpt = load(out / "seed_3", device="cpu")
    assert same_weights(ckpt.model, ens.models[3]) and ckpt.snapshot_steps() == [20, 40]
    assert ckpt.config["runtime"]["training_forward"] == "stacked" and ckpt.config["runtime"]["threads"] == 1
    args = build_parser().parse_args(ckpt.config["command"].split()[1:])
    assert args.model_seed == 3 and args.seed == 3 and args.out == str(out / "seed_3") and args.seeds is None
    assert ckpt.config["training"] == {
        **EARLY.to_dict(),
        "seed": 3,
        "operand_lengths": "uniform",
        "random_positions": False,
        "distractors": False,
        "end_token_loss": True,
    }


def test_an_interrupted_ensemble_resumes_to_the_same_weights(ensemble, tmp_path):
    ens, _ = ensemble

    interrupt = interrupt_at(30)
    with pytest.raises(KeyboardInterrupt):
        train_ensemble(TASK, MODEL, EARLY, [0, 1, 3], out_dir=tmp_path, callback=interrupt, progress=False)
    assert (tmp_path / "seed_0" / "model.safetensors").is_file()  # finished at step 10
    assert not (tmp_path / "seed_1" / "model.safetensors").exists()
    resumed = train_ensemble(TASK, MODEL, EARLY, [0, 1, 3], out_dir=tmp_path, progress=False)
    for seed in (0, 1, 3):
        assert same_weights(resumed.models[seed], ens.models[seed]), seed
    assert resumed.summary()["step"].tolist() == [10, 60, 40]


# target 1.0 is out of reach in 60 steps; the rate anneals once a member's ID sample reaches 0.05
ANNEAL = dataclasses.replace(EARLY, target_accuracy=1.0, anneal_at=0.05, anneal_steps=10, snapshot_every=None)


def test_members_anneal_from_their_own_steps_like_separate_runs_and_resume_there(tmp_path):
    ens = train_ensemble(TASK, MODEL, ANNEAL, [0, 1, 3], progress=False)
    fixed = [lr_at(s - 1, ANNEAL) for s in range(10, 70, 10)]
    starts = {}
    for seed in (0, 1, 3):
        history = ens.histories[seed]
        reached = history.loc[history["id_exact"] >= 0.05, "step"]
        starts[seed] = int(reached.iloc[0]) if len(reached) else None
        expected = [lr_at(s - 1, ANNEAL, starts[seed]) for s in history["step"]]
        assert history["lr"].tolist() == pytest.approx(expected), seed
        model, alone_history, _ = alone(seed, ANNEAL)
        assert same_weights(model, ens.models[seed]), seed
        assert alone_history[["step", "loss", "lr", "id_exact"]].equals(history[["step", "loss", "lr", "id_exact"]])
    assert starts == {0: 10, 1: None, 3: 40}  # seeds 0 and 3 anneal from their own steps, seed 1 never
    assert ens.histories[0]["lr"].iloc[2] < fixed[2] / 5 and ens.histories[1]["lr"].tolist() == pytest.approx(fixed)

    interrupt = interrupt_at(30)
    with pytest.raises(KeyboardInterrupt):  # after seed 0's annealing began (step 10)
        train_ensemble(TASK, MODEL, ANNEAL, [0, 1, 3], out_dir=tmp_path, callback=interrupt, progress=False)
    resumed = train_ensemble(TASK, MODEL, ANNEAL, [0, 1, 3], out_dir=tmp_path, progress=False)
    for seed in (0, 1, 3):
        assert same_weights(resumed.models[seed], ens.models[seed]), seed


@pytest.mark.parametrize(
    "seeds, message", [([], "at least one"), ([1, 1], "distinct"), ([-1], ">= 0"), ([0.5], ">= 0")]
)
def test_bad_seeds_are_one_clear_error(seeds, message):
    with pytest.raises(ValueError, match=message):
        check_seeds(seeds)


def test_an_ensemble_through_the_bridge_forward_matches_separate_runs():
    cfg = dataclasses.replace(EARLY, steps=10, target_accuracy=None, snapshot_every=None, forward="bridge")
    ens = train_ensemble(TASK, MODEL, cfg, [0, 2], progress=False)
    for seed in (0, 2):
        model, history, _ = alone(seed, cfg)
        assert (
            same_weights(model, ens.models[seed]) and history["loss"].tolist() == ens.histories[seed]["loss"].tolist()
        )
