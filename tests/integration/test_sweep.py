"""Sweeps: spec checks, run ids, the local executor's results, failures, resume after a kill, the CLI and the report."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sweep_fixture import DIVERGENT_LR, TINY_SPEC, figures, tiny_sweep

import mechinterp_arith as ma
from mechinterp_arith.cli import main as cli_main
from mechinterp_arith.core.checkpoint import STATE_FILE
from mechinterp_arith.core.train_state import saved_progress
from mechinterp_arith.sweep import AnalysesSpec, SpecError, load_spec, parse_spec, resolve, run_sweep
from mechinterp_arith.sweep.results import read_record, run_dir
from mechinterp_arith.sweep.runner import plan_units

REPO = Path(__file__).resolve().parents[2]
CHILD_ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
}


# ---- the spec ------------------------------------------------------------------------------------
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


def test_the_bos_key_leaves_earlier_run_ids_as_they_were():
    """bos (the follow-up's format) came after sweeps were first run: at its default (false) a run's id
    is the hash of the settings without it, as before; true makes another run."""
    import hashlib
    import json

    run = resolve({"digits": 2, "steps": 100, "format": "reversed"})
    before = {k: v for k, v in run.flat.items() if k != "bos"}
    assert run.flat["bos"] is False
    assert run.run_id.endswith(hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:10])
    follow_up = resolve({**run.flat, "bos": True})
    assert follow_up.task.bos and follow_up.run_id != run.run_id and resolve(follow_up.flat) == follow_up


def test_seed_groups_become_units():
    runs = [resolve({"digits": 1, "positional": p, "seed": s}) for p in ("learned", "rotary") for s in range(4)]
    assert plan_units(runs, slots=2, together=False) == [(r,) for r in runs]
    together = plan_units(runs, slots=2, together=True)
    assert [len(u) for u in together] == [4, 4] and all(len({r.group_id for r in u}) == 1 for u in together)
    assert [len(u) for u in plan_units(runs[:4], slots=2, together=True)] == [2, 2]  # one group fills 2 slots


# ---- a finished sweep ----------------------------------------------------------------------------
def test_results_hold_settings_and_figures():
    spec, result = tiny_sweep()
    frame = ma.load_sweep(result.sweep_dir)
    assert list(frame["run_id"]) == [r.run_id for r in spec.runs]
    assert frame["status"].tolist() == ["done"] * 4 + ["failed"]
    done = frame[frame["status"] == "done"]
    for column in ("id_exact", "exact_len2", "exact_len3", "exact_len4", "equiv_coverage", "pca_centroid_accuracy"):
        assert done[column].between(0, 1).all(), column
    assert done["train_steps"].eq(60).all() and done["positional"].tolist() == [
        "learned",
        "learned",
        "rotary",
        "rotary",
    ]
    for run_id in done["run_id"]:  # each run is a normal checkpoint whose figures are its own
        ckpt = ma.load(result.sweep_dir / "runs" / run_id, device="cpu")
        assert ckpt.history[-1]["id_exact"] == done.set_index("run_id").loc[run_id, "train_id_exact"]
        assert ckpt.history[-1]["loss"] < 0.7 * ckpt.history[0]["loss"]  # it learned in 60 steps


def test_a_failed_run_is_recorded_and_does_not_stop_the_others():
    _spec, result = tiny_sweep()
    failed = ma.load_sweep(result.sweep_dir).iloc[-1]
    assert failed["status"] == "failed" and failed["lr"] == DIVERGENT_LR
    assert (
        failed["error"]
        == f"CheckpointError: runs/{failed['run_id']}/model.safetensors: embed.weight holds NaN or infinite values"
    )
    record = read_record(result.sweep_dir, failed["run_id"])
    assert record["status"] == "failed" and "Traceback" in record["traceback"]
    assert result.failed == 1 and result.ran == 5


def test_a_run_equals_the_same_training_done_by_hand():
    spec, result = tiny_sweep()
    run = spec.runs[3]  # rotary, seed 1
    # one thread, as in the sweep's workers (float sums in another order differ in the last bit)
    model, history, _ = ma.train(run.task, run.model, run.train_config("cpu"), progress=False, threads=1)
    ckpt = ma.load(run_dir(result.sweep_dir, run), device="cpu")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, ckpt.model.state_dict()[name]), name
    assert history["loss"].tolist() == [row["loss"] for row in ckpt.history]


def test_rerun_skips_finished_runs_and_retries_the_failed_one():
    spec, result = tiny_sweep()
    weights = [run_dir(result.sweep_dir, r) / "model.safetensors" for r in spec.runs[:4]]
    before = [w.stat().st_mtime_ns for w in weights]
    again = run_sweep(spec, result.sweep_dir, workers=1, progress=False)
    assert (again.skipped, again.ran, again.failed) == (4, 1, 1)
    assert [w.stat().st_mtime_ns for w in weights] == before
    pd.testing.assert_frame_equal(figures(again.frame), figures(result.frame))


def test_new_analyses_reanalyse_without_retraining(tmp_path):
    spec, result = tiny_sweep()
    out = tmp_path / "copy"
    shutil.copytree(result.sweep_dir, out)
    weights = [run_dir(out, r) / "model.safetensors" for r in spec.runs[:4]]
    before = [w.stat().st_mtime_ns for w in weights]
    fewer = dataclasses.replace(spec, analyses=AnalysesSpec(equivalence=False, n=50, ood_digits=(2,)))
    again = run_sweep(fewer, out, workers=1, progress=False)
    assert (again.skipped, again.ran) == (0, 5)
    assert [w.stat().st_mtime_ns for w in weights] == before  # analysed again, not trained again
    done = again.frame[again.frame["status"] == "done"]
    assert (
        "pca_centroid_accuracy" not in done and "equiv_coverage" not in done and done["exact_len2"].between(0, 1).all()
    )
    assert done["train_loss"].tolist() == result.frame["train_loss"].iloc[:4].tolist()


# ---- resume after a kill -------------------------------------------------------------------------
def test_killed_sweep_resumes_and_ends_with_the_same_results(tmp_path):
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(TINY_SPEC)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mechinterp_arith",
            "sweep",
            str(spec_path),
            "--out",
            str(out),
            "--workers",
            "1",
            "--quiet",
        ],
        env=CHILD_ENV,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    try:  # kill the sweep and its worker once one run is done and the next has saved a training state
        while time.monotonic() < deadline and proc.poll() is None:
            if any((out / "records").glob("*.json")) and any((out / "runs").glob(f"*/{STATE_FILE}")):
                break
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    finished = sorted(p.stem for p in (out / "records").glob("*.json"))
    interrupted = [p.parent.name for p in (out / "runs").glob(f"*/{STATE_FILE}")]
    assert finished and interrupted
    weights = {r: (out / "runs" / r / "model.safetensors").stat().st_mtime_ns for r in finished}
    step = saved_progress(out / "runs" / interrupted[0])["step"]
    assert 0 < step < 60

    spec, reference = tiny_sweep()
    resumed = run_sweep(spec, out, workers=2, progress=False)
    assert resumed.skipped == len(finished)
    assert {r: (out / "runs" / r / "model.safetensors").stat().st_mtime_ns for r in finished} == weights
    pd.testing.assert_frame_equal(figures(resumed.frame), figures(reference.frame))


# ---- the command line ----------------------------------------------------------------------------
def test_cli_rejects_a_bad_spec_before_anything_runs(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text('[grid]\npositional = ["learned", "alibi"]\n')
    out = tmp_path / "never"
    assert cli_main(["sweep", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown position scheme 'alibi'" in err
    assert not out.exists()
    assert cli_main(["sweep", str(tmp_path / "missing.toml"), "--out", str(out)]) == 2


def test_cli_dry_run_lists_the_runs(capsys):
    assert cli_main(["sweep", str(REPO / "analyses" / "sweeps" / "smoke.toml"), "--out", "unused", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("-s")[0] for line in lines[:4]] == ["add2-learned", "add2-learned", "add2-rotary", "add2-rotary"]
    assert lines[-1].startswith("4 runs in 2 groups")
    assert not Path("unused").exists()


def test_cli_refuses_a_directory_that_is_not_a_sweep(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    spec = tmp_path / "s.toml"
    spec.write_text("[settings]\ndigits = 1\nsteps = 1\n")
    assert cli_main(["sweep", str(spec), "--out", str(tmp_path)]) == 2
    assert "is not empty and holds no sweep" in capsys.readouterr().err


# ---- the sweep report ----------------------------------------------------------------------------
def test_sweep_report_compares_the_runs(tmp_path, capsys):
    _, result = tiny_sweep()
    assert cli_main(["report", str(result.sweep_dir), "--out", str(tmp_path / "page")]) == 0
    html = (tmp_path / "page" / "index.html").read_text()
    assert html.count('class="plotly-graph-div"') == 3
    assert html.count("/* mechinterp-arith: plotly.js bundle */") == 1
    assert "NaN or infinite" in html and "positional=rotary (2 seeds)" in html


def test_sweep_report_lines_are_seed_means():
    from mechinterp_arith.report.sweep_page import SweepContext, length_figure

    _, result = tiny_sweep()
    frame = ma.load_sweep(result.sweep_dir)
    fig = length_figure(SweepContext(result.sweep_dir, frame))
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["positional=learned (2 seeds)", "positional=rotary (2 seeds)"]
    learned = frame[(frame["status"] == "done") & (frame["positional"] == "learned")]
    columns = ["id_exact", "exact_len2", "exact_len3", "exact_len4"]
    assert list(lines[0].x) == [1, 2, 3, 4]
    np.testing.assert_allclose(lines[0].y, learned[columns].mean().to_numpy())
    np.testing.assert_allclose(np.asarray(lines[0].y) + lines[0].error_y.array, learned[columns].max().to_numpy())
