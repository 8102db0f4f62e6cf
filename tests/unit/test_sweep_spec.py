"""Sweep specs, checked before anything runs; run ids and work units: nothing trains."""

from collections import Counter
from pathlib import Path

import pytest

import mechinterp_arith as ma
from mechinterp_arith.sweep import SpecError, load_spec, parse_spec, resolve
from mechinterp_arith.sweep.runner import plan_units

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[settings]\nlrate = 0.1", "unknown key 'lrate' in [settings]; did you mean 'lr'?"),
        ("[setings]\nlr = 0.1", "unknown key 'setings' in the spec's top level; did you mean 'settings'?"),
        ('[grid]\npositional = ["learned", "sinusoidal"]', "run (positional='sinusoidal'): unknown position scheme"),
        ('[settings]\nsteps = "many"', "[settings] steps = 'many': expected an integer"),
        ("[settings]\nbetas = [0.9]", "[settings] betas = [0.9]: expected a list of 2 numbers"),
        ('[settings]\nanneal_at = "soon"', "[settings] anneal_at = 'soon': expected a number or \"off\""),
        ("[grid]\nseed = 3", "[grid] seed must be a non-empty list of values, got 3"),
        ("[grid]\nseed = []", "[grid] seed must be a non-empty list"),
        ("[settings]\nseed = 1\n[grid]\nseed = [1, 2]", "'seed' is in both [settings] and [grid]"),
        ("[grid]\nseed = [1, 2]\n[[runs]]\nseed = 3", "'seed' is in both [grid] and [[runs]] entry 1"),
        ("[[runs]]\nseed = 1\n[[runs]]\nseed = 1", "runs (seed=1) and (seed=1) have the same settings"),
        ('[settings]\nsize = "huge"', "[settings] size = 'huge': choose one of gpt-nano"),
        ("[settings]\nd_model = 50", "d_model=50 is not divisible by n_heads=3"),
        ("[settings]\ndigits = 2\n[analyses]\nood_digits = [2]", "[analyses] OOD length m=2 must exceed"),
        ("[analyses]\nn = 0", "[analyses] n must be an integer between 1"),
        ("[analyses]\npca = 1", "[analyses] pca = 1: expected true or false"),
        ("[analyses]\nprobe = true", "unknown key 'probe' in [analyses]"),
        ("[settings\n", "is not valid TOML"),
    ],
)
def test_invalid_specs_name_the_bad_key_or_value(text, message):
    with pytest.raises(SpecError) as e:
        parse_spec(text)
    assert message in str(e.value)


@pytest.mark.parametrize("path", sorted((REPO / "analyses" / "sweeps").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_specs_are_valid(path):
    spec = load_spec(path)
    seeds = Counter(r.group_id for r in spec.runs)  # every group (an architecture) over several seeds
    assert len(spec.runs) >= 4 and len(seeds) >= 2 and min(seeds.values()) >= 2


def test_grid_and_list_expand_in_order():
    spec = parse_spec(
        '[settings]\ndigits = 2\n[grid]\npositional = ["learned", "rotary"]\nseed = [0, 1]\n'
        "[[runs]]\nlr = 1e-3\n[[runs]]\nlr = 3e-3"
    )
    got = [(r.training.lr, r.model.positional, r.model.seed) for r in spec.runs]
    assert got == [(lr, p, s) for lr in (1e-3, 3e-3) for p in ("learned", "rotary") for s in (0, 1)]
    assert all(r.task == ma.Task("add", 2) for r in spec.runs)
    assert spec.analyses.lengths(spec.runs[0].task) == [3, 4, 5]  # n+1 .. n+3 within W=5


def test_run_ids_are_derived_from_every_setting():
    base = {"digits": 2, "steps": 100, "seed": 3}
    run = resolve(base)
    assert run.run_id == resolve({"seed": 3, "steps": 100, "digits": 2, "size": "gpt-nano"}).run_id
    assert run.run_id == resolve({**base, "d_mlp": 192}).run_id  # the default, spelled out
    assert run.run_id != resolve({**base, "lr": 1e-3}).run_id
    assert run.run_id != resolve({**base, "seed": 4}).run_id
    assert run.group_id == resolve({**base, "seed": 4}).group_id  # seeds of one architecture: one group
    assert run.group_id != resolve({**base, "positional": "rotary"}).group_id
    assert run.model.seed == run.training.seed == 3  # seed: initialisation and batch order
    assert resolve(run.flat) == run  # the flat settings (results.csv's columns) resolve to the same run
    off = resolve({**base, "anneal_at": "off"})  # TOML has no null: "off" turns a defaulted setting off
    assert (run.training.anneal_at, off.training.anneal_at) == (0.9, None) and off.run_id != run.run_id
    assert resolve(off.flat) == off
    spelled = parse_spec('[settings]\ndigits = 2\ntarget_accuracy = 1.0\nanneal_at = "off"\n[grid]\nseed = [0]')
    assert spelled.runs[0].training.anneal_at is None  # "off" passes the spec's check, in any section


def test_later_keys_leave_earlier_run_ids_as_they_were():
    """bos (the follow-up's format), distractors and end_token_loss came after sweeps were first run: at
    their old values (false, false, true) a run's id is the hash of the settings without them, as before; true makes another run."""
    import hashlib
    import json

    run = resolve({"digits": 2, "steps": 100, "format": "reversed"})
    before = {k: v for k, v in run.flat.items() if k not in ("bos", "distractors", "end_token_loss")}
    assert run.flat["bos"] is False and run.flat["distractors"] is False
    assert run.run_id.endswith(hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:10])
    follow_up = resolve({**run.flat, "bos": True})
    assert follow_up.task.bos and follow_up.run_id != run.run_id and resolve(follow_up.flat) == follow_up
    plain = resolve({"digits": 2, "steps": 100, "positional": "abacus"})  # abacus: no distractors by default
    distracted = resolve({**plain.flat, "distractors": True})
    assert not plain.training.distractors and distracted.training.distractors and distracted.run_id != plain.run_id


def test_seed_groups_become_units():
    runs = [resolve({"digits": 1, "positional": p, "seed": s}) for p in ("learned", "rotary") for s in range(4)]
    assert plan_units(runs, slots=2, together=False) == [(r,) for r in runs]
    together = plan_units(runs, slots=2, together=True)
    assert [len(u) for u in together] == [4, 4] and all(len({r.group_id for r in u}) == 1 for u in together)
    assert [len(u) for u in plan_units(runs[:4], slots=2, together=True)] == [2, 2]  # one group fills 2 slots
