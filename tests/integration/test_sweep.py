"""Sweeps: spec checks, run ids, the local executor's results, failures, resume after a kill, the CLI and the report."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support import reference
from support.sweeps import DIVERGENT_LR, TINY_SPEC, figures, tiny_sweep

import mechinterp_arith as ma
from mechinterp_arith import data
from mechinterp_arith.cli import main as cli_main
from mechinterp_arith.core.checkpoint import STATE_FILE
from mechinterp_arith.core.evaluate import held_out_pairs
from mechinterp_arith.core.positions import answer_logit_pos
from mechinterp_arith.core.train_state import saved_progress
from mechinterp_arith.sweep import AnalysesSpec, run_sweep
from mechinterp_arith.sweep.results import read_record, run_dir

REPO = Path(__file__).resolve().parents[2]
CHILD_ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
}


# ---- a finished sweep ----------------------------------------------------------------------------
def test_results_hold_settings_and_figures():
    spec, result = tiny_sweep()
    frame = ma.load_sweep(result.sweep_dir)
    assert list(frame["run_id"]) == [r.run_id for r in spec.runs]
    assert frame["status"].tolist() == ["done"] * 4 + ["failed"]
    done = frame[frame["status"] == "done"]
    n, seed = spec.analyses.n, spec.analyses.seed
    for _, row in done.iterrows():  # each figure recounted from its definition on the run's checkpoint
        ckpt = ma.load(result.sweep_dir / "runs" / row["run_id"], device="cpu")
        task = ckpt.task
        a, b, _ = held_out_pairs(ckpt, n, seed)
        assert row["id_exact"] == pytest.approx(float((ckpt.predict(a, b) == a + b).mean()), abs=1e-6)
        for m in (2, 3, 4):
            oa, ob = data.ood_both(task, m, n, seed=seed)
            outputs = ckpt.predict(oa, ob)
            assert row[f"exact_len{m}"] == pytest.approx(float((outputs == oa + ob).mean()), abs=1e-6)
            if m == 2:  # the relation is sought on the first OOD length
                best = reference.best_relation_rate("add", outputs, oa, ob, task.width, task.answer_width)
                assert row["equiv_coverage"] == pytest.approx(best, abs=1e-6)
        a, b = data.random_pairs(task, n, seed=seed, max_value=100)
        tokens = task.encode_batch(a, b)[0][:, : task.n_ctx]  # the units digit's position sees the prompt only
        x = reference.activations(ckpt.model, tokens, "ln_final.hook_out", answer_logit_pos(task, 0))
        _, accuracy = reference.pca_reference(x, (a + b) % 10, 3)
        assert row["pca_centroid_accuracy"] == pytest.approx(accuracy, abs=1e-6)
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
    assert failed["error"].startswith("Diverged: training diverged at step ")  # stopped before writing NaN
    assert "became NaN or infinite (learning rate 1e+06)" in failed["error"]
    assert f"runs/{failed['run_id']}" in failed["error"] and str(result.sweep_dir) not in failed["error"]
    assert not (run_dir(result.sweep_dir, _spec.runs[-1]) / "model.safetensors").exists()
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
    assert "pca_centroid_accuracy" not in done and "equiv_coverage" not in done
    for _, row in done.iterrows():  # the new figure, recounted on the run's (untouched) checkpoint
        ckpt = ma.load(out / "runs" / row["run_id"], device="cpu")
        oa, ob = data.ood_both(ckpt.task, 2, 50, seed=fewer.analyses.seed)
        assert row["exact_len2"] == pytest.approx(float((ckpt.predict(oa, ob) == oa + ob).mean()), abs=1e-6)
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
    try:  # kill the sweep and its worker once one run is done and the next has saved a training state
        while proc.poll() is None:  # no deadline: on a loaded machine the first run takes what it takes
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
