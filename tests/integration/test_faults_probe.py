"""The corners a hostile probe found (issue 22, reliability defects 1-9, 11-14): each is one clear
line naming the problem and leaves nothing half-written, or is handled (a symlinked output, a lost
weights file). Fault-injection style, like test_faults.py: real files, FIFOs, links and a second
process; the CLI runs in-process (exit status 2, one line on stderr).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors import SafetensorError
from support.faults import DieAt

import mechinterp_arith.core.checkpoint as checkpoint
import mechinterp_arith.core.files as files
import mechinterp_arith.core.locks as locks
from mechinterp_arith import ModelConfig, Task, TrainConfig, build_model, load, save_checkpoint, train
from mechinterp_arith.cli import main
from mechinterp_arith.core.ensemble import MAX_SEEDS

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TASK = Task("add", 1)
MCFG = ModelConfig.for_task(TASK, n_layers=1, n_heads=2, d_model=16, d_mlp=64)
CFG = TrainConfig(steps=4, batch_size=16, eval_every=2, eval_n=20, warmup=2, snapshot_every=2)
TRAIN = (
    "train --task add --digits 1 --layers 1 --heads 2 --d-model 16 --steps 4 --batch-size 16 --eval-every 2 "
    "--eval-n 20 --warmup 2 --snapshot-every 2 --quiet"
).split()


def tree(root) -> dict[str, bytes | None]:
    """Every path under ``root`` (links as links) with its bytes; FIFOs and links as their kind."""
    out = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = f"-> {os.readlink(p)}".encode()
        elif p.is_fifo():
            out[key] = b"fifo"
        else:
            out[key] = p.read_bytes() if p.is_file() else None
    return out


def one_line_error(argv, capsys, message: str) -> str:
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    return err.strip()


def tiny_checkpoint(path):
    return save_checkpoint(path, build_model(MCFG), TASK, MCFG, CFG.to_dict(), [{"step": 4, "loss": 2.0}])


# ---- 1. --out through a symbolic link: one output, one lock ------------------------------------------
HOLD = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("locks", sys.argv[1])
locks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(locks)
with locks.exclusive(sys.argv[2]):
    print("held", flush=True)
    time.sleep(300)
"""


def test_a_symlinked_out_is_locked_and_written_as_the_directory_it_names(tmp_path, capsys):
    real, alias = tmp_path / "real", tmp_path / "alias"
    alias.symlink_to(real, target_is_directory=True)  # dangling until the run makes real
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, locks.__file__, str(real)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        one_line_error([*TRAIN, "--out", alias], capsys, f"being written by process {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert main([*TRAIN, "--out", str(alias)]) == 0  # alone: writes through the link
    assert alias.is_symlink() and os.readlink(alias) == str(real)
    assert sorted(p.name for p in real.iterdir()) == ["config.json", "metrics.json", "model.safetensors", "snapshots"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias", "real"]  # no .alias.*.tmp, no orphan state
    assert load(alias, device="cpu").history == load(real, device="cpu").history


# ---- 2. a lock file that is a symbolic link is never followed ---------------------------------------
@pytest.mark.parametrize("kind", ["train", "sweep"])
def test_a_planted_lock_link_is_refused_not_written_through(kind, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    if kind == "train":
        (tmp_path / ".d.lock").symlink_to(victim)
        argv, message = [*TRAIN, "--out", tmp_path / "d"], f"the lock file {tmp_path / '.d.lock'} is a symbolic link"
    else:
        spec = tmp_path / "s.toml"
        spec.write_text("[settings]\ndigits = 1\nsteps = 2\n")
        (tmp_path / "sw" / "runs").mkdir(parents=True)  # a sweep directory
        (tmp_path / "sw" / ".sweep.lock").symlink_to(victim)
        argv, message = ["sweep", spec, "--out", tmp_path / "sw", "--quiet"], "is a symbolic link, not the sweep's lock"
    one_line_error(argv, capsys, message)
    assert victim.read_text() == "precious" and not (tmp_path / "d").exists()


# ---- 3. a FIFO where a file is read: one line, never a hang -------------------------------------------
def _fifo_in_checkpoint(name):
    def setup(root):
        ck = tiny_checkpoint(root / "ck")
        (ck / name).unlink()
        os.mkfifo(ck / name)
        return ["info", ck], f"{name} is a FIFO, not a regular file"

    return setup


def _fifo_state(root):
    out = root / "run"
    out.mkdir()
    os.mkfifo(out / "train_state.safetensors")
    return [*TRAIN, "--out", out], "train_state.safetensors is a FIFO, not a regular file"


@pytest.mark.parametrize(
    "setup", [_fifo_in_checkpoint("config.json"), _fifo_in_checkpoint("metrics.json"), _fifo_state]
)
def test_a_fifo_is_refused_in_one_line_not_read(setup, tmp_path):
    argv, message = setup(tmp_path)
    code = "import sys; from mechinterp_arith.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run(
        [sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )  # a subprocess with a timeout: a regression hangs, it must not hang the suite
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert message in r.stderr, r.stderr


# ---- 4. JSON nested too deeply ---------------------------------------------------------------------
@pytest.mark.parametrize("command", ["info", "report", "import"])
def test_deeply_nested_json_is_one_line(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ck = tiny_checkpoint(tmp_path / "ck")
    (ck / "config.json").write_text("[" * 100_000)
    from test_importer import make_state

    torch.save(make_state(), tmp_path / "m.pt")
    argv = {
        "info": ["info", ck],
        "report": ["report", ck, "--out", tmp_path / "rep", "--quick", "--quiet"],
        "import": ["import", tmp_path / "m.pt", "--from", "mingpt", "--n-heads", "3", "--out", ck],
    }[command]
    before = tree(tmp_path)
    err = one_line_error(
        argv, capsys, "is nested too deeply" if command != "import" else "is not an imported checkpoint"
    )
    assert str(ck) in err
    assert tree(tmp_path) == before


# ---- 6 and 14. malformed sweep and lab files name the file (or are redone) ---------------------------------
def test_malformed_records_are_redone_and_bad_results_files_are_named(tmp_path, capsys):
    from support.sweeps import tiny_sweep

    from mechinterp_arith.sweep import run_sweep
    from mechinterp_arith.sweep.results import record_path

    spec, result = tiny_sweep()
    out = tmp_path / "sweep"
    shutil.copytree(result.sweep_dir, out)
    first, second = spec.runs[0].run_id, spec.runs[1].run_id
    record_path(out, first).write_text("[1, 2]")  # a list
    record = json.loads(record_path(out, second).read_text())
    record_path(out, second).write_text(json.dumps({**record, "figures": "broken"}))
    again = run_sweep(spec, out, workers=1, progress=False)
    assert (again.skipped, again.ran) == (
        2,
        3,
    )  # the two malformed ones redone (from their checkpoints), the failed one retried
    assert json.loads(record_path(out, second).read_text())["figures"] == record["figures"]
    (out / "results.csv").write_bytes(b"\xff\xfe garbage \x00\x01")
    one_line_error(["report", out, "--out", tmp_path / "rep"], capsys, f"{out / 'results.csv'} is not a")


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2, 3]", 'expected a JSON object with a "rows" list, got list'),
        ('{"rows": [{"scheme": "learned", "seed": 0, "m": 3, "exact": 0.5', "is not a valid JSON results file"),
        ('{"rows": [{"scheme": "learned"}]}', "its rows lack seed, m, exact"),
    ],
)
def test_a_bad_lab_results_file_is_named(content, message, tmp_path, capsys):
    results = tmp_path / "lab.json"
    results.write_text(content)
    err = one_line_error(["report", results, "--out", tmp_path / "rep"], capsys, message)
    assert str(results) in err and not (tmp_path / "rep").exists()


def test_a_spec_that_is_not_utf8_is_named(tmp_path, capsys):
    spec = tmp_path / "latin1.toml"
    spec.write_bytes("[sweep]\nname = 'caf\xe9'\n".encode("latin-1"))
    one_line_error(["sweep", spec, "--out", tmp_path / "sw"], capsys, f"{spec} is not a UTF-8 text file")
    assert not (tmp_path / "sw").exists()


# ---- 7. a full disk while training ---------------------------------------------------------------------
def test_a_full_disk_is_one_line_and_the_run_resumes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_save = files.save_file

    def disk_full(tensors, filename, *args, **kwargs):
        if "train_state" in str(filename):
            raise SafetensorError(
                'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
            )
        return real_save(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(files, "save_file", disk_full)
    err = one_line_error([*TRAIN, "--out", out], capsys, "No space left on device")
    assert err.endswith(f"{out / 'train_state.safetensors'}: No space left on device"), err
    monkeypatch.setattr(files, "save_file", real_save)
    assert main([*TRAIN, "--out", str(out)]) == 0  # the data was safe: the run completes
    assert load(out, device="cpu").history[-1]["step"] == 4


# ---- 8. a diverging run stops before writing NaN ---------------------------------------------------------
def test_a_diverging_run_stops_with_one_line_and_writes_nothing_nonfinite(tmp_path, capsys):
    out = tmp_path / "run"
    err = one_line_error([*TRAIN, "--lr", "1e30", "--out", out], capsys, "training diverged at step 2")
    assert "learning rate 1e+30" in err and "--no-resume" in err
    assert not (out / "config.json").exists()
    for f in out.rglob("*.safetensors"):  # whatever was saved is finite
        from safetensors.torch import load_file

        assert all(torch.isfinite(t).all() for t in load_file(f).values()), f
    with pytest.raises(ValueError, match="training diverged"):  # the library raises the same
        train(TASK, MCFG, TrainConfig(**{**CFG.to_dict(), "lr": 1e30, "betas": CFG.betas}), progress=False)


# ---- 9. an ensemble owns its directory like a single run ---------------------------------------------------
def test_an_ensemble_refuses_a_single_checkpoint_and_replaces_it_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "X"
    assert main([*TRAIN, "--out", str(out)]) == 0
    before = tree(tmp_path)
    one_line_error([*TRAIN, "--seeds", "2", "--out", out], capsys, "holds a single-model checkpoint or training run")
    assert tree(tmp_path) == before
    assert main([*TRAIN, "--seeds", "2", "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["ensemble.json", "seed_0", "seed_1"]


def test_a_partial_checkpoint_is_replaced_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "P"
    tiny_checkpoint(out)
    (out / "config.json").unlink()  # weights and metrics without a config: no writer of ours leaves that
    before = tree(tmp_path)
    one_line_error([*TRAIN, "--out", out], capsys, "holds part of a checkpoint (model.safetensors without config.json)")
    assert tree(tmp_path) == before
    assert main([*TRAIN, "--out", str(out), "--overwrite"]) == 0
    assert load(out, device="cpu").history[-1]["step"] == 4


def test_replacing_an_ensemble_killed_at_its_first_snapshot_never_mixes_two_runs(tmp_path, capsys):
    out = tmp_path / "E"
    assert main([*TRAIN, "--seeds", "3", "--out", str(out)]) == 0
    one_line_error([*TRAIN, "--seeds", "2", "--d-model", "32", "--out", out], capsys, "the ensemble of other settings")
    other = ModelConfig.for_task(TASK, n_layers=1, n_heads=2, d_model=32, d_mlp=128)
    shutil.copytree(out, tmp_path / "count")  # the same replacement, counted
    with DieAt(None) as counter:
        train(TASK, other, CFG, out_dir=tmp_path / "count", seeds=[0, 1], progress=False, overwrite=True)
    first_snapshot = next(i for i, call in enumerate(counter.log, 1) if "snapshots" in call and "save_file" in call)
    with DieAt(first_snapshot) as fault:
        train(TASK, other, CFG, out_dir=out, seeds=[0, 1], progress=False, overwrite=True)
    assert fault.dead
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == ["seed_0", "seed_1"], names  # the old ensemble (3 seeds, ensemble.json) is gone whole
    train(TASK, other, CFG, out_dir=out, seeds=[0, 1], progress=False)  # and the new one resumes
    assert load(out / "seed_1", device="cpu").model_config.d_model == 32
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["ensemble.json", "seed_0", "seed_1"]


# ---- 11. a finished run whose weights were lost is trained again -------------------------------------------
def test_a_sweep_run_that_lost_its_weights_is_trained_again(tmp_path):
    from support.sweeps import tiny_sweep

    from mechinterp_arith.sweep import run_sweep
    from mechinterp_arith.sweep.results import run_dir

    spec, result = tiny_sweep()
    out = tmp_path / "sweep"
    shutil.copytree(result.sweep_dir, out)
    (run_dir(out, spec.runs[2]) / "model.safetensors").unlink()
    again = run_sweep(spec, out, workers=1, progress=False)
    assert (again.skipped, again.ran, again.failed) == (3, 2, 1)  # the lost one retrained, the diverging one retried
    retrained, reference = (load(run_dir(d, spec.runs[2]), device="cpu") for d in (out, result.sweep_dir))
    assert [r["loss"] for r in retrained.history] == [r["loss"] for r in reference.history]


# ---- 12. the out-of-memory message says how much, in units people read ---------------------------------------
def test_a_small_failed_allocation_is_not_called_zero_gib(monkeypatch, capsys):
    import mechinterp_arith.core.evaluate as evaluate

    def exhausted(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1572864 bytes.")

    monkeypatch.setattr(evaluate, "evaluate_checkpoint", exhausted)
    err = one_line_error(["evaluate", "add3", "--n", "1000"], capsys, "out of memory: it needed 1.5 MiB more")
    assert "0.0 GiB" not in err


def test_analyses_stream_over_batches_with_the_figures_of_one_pass(add3, monkeypatch):
    """Memory is bounded by the batch, not n (benchmarks/memory.py measures it): small batches give
    the figures of one pass (exactly for evaluation, to float rounding for means of activations)."""
    import numpy as np

    import mechinterp_arith.analysis.circuits as circuits
    from mechinterp_arith import data
    from mechinterp_arith.analysis.matching import match_activations
    from mechinterp_arith.core.evaluate import evaluate_checkpoint

    assert evaluate_checkpoint(add3, [4], n=1500, batch_size=256) == evaluate_checkpoint(add3, [4], n=1500)
    a, b = data.ood_both(add3.task, 4, 300, seed=3)
    small, whole = (match_activations(add3, a, b, batch_size=size) for size in (64, 4096))
    for name in ("cosine", "rel_l2", "baseline_cosine", "token_differs"):
        assert np.allclose(getattr(small, name), getattr(whole, name), atol=1e-5), name
    one_pass, heads = circuits.digit_sites(add3, 1, n=96), circuits.head_operand_map(add3, 0, n=96)
    monkeypatch.setattr(circuits, "PATCH_PAIRS", 32)  # three chunks
    chunked, chunked_heads = circuits.digit_sites(add3, 1, n=96), circuits.head_operand_map(add3, 0, n=96)
    for column in ("attention", "effect", "best_effect", "attention_at_best"):
        assert np.allclose(chunked_heads[column], heads[column], atol=1e-4, equal_nan=True), column
    assert np.allclose(chunked["logit_diff"], one_pass["logit_diff"], atol=1e-4)
    assert (chunked["identical"] == one_pass["identical"]).all()
    assert abs(chunked.attrs["clean_logit_diff"] - one_pass.attrs["clean_logit_diff"]) < 1e-4


# ---- 13. sensible bounds, one line each ---------------------------------------------------------------------
def test_absurd_sizes_are_refused_at_once(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error([*TRAIN, "--seeds", "100000", "--out", "e"], capsys, f"at most {MAX_SEEDS} seeds train together")
    one_line_error(
        [*TRAIN, "--layers", "65536", "--d-model", "8", "--out", "m"], capsys, "n_layers must be between 1 and 256"
    )
    one_line_error(
        [*TRAIN, "--layers", "200", "--d-model", "2048", "--out", "m"],
        capsys,
        "10,071,730,176 parameters (200 layers, d_model 2048, d_mlp 8192); at most 1,000,000,000",
    )
    spec = tmp_path / "huge.toml"
    spec.write_text(
        "[grid]\n" + "\n".join(f"{k} = {list(range(1, 101))}" for k in ("seed", "data_seed", "steps", "eval_every"))
    )
    one_line_error(["sweep", spec, "--out", "sw"], capsys, "the spec makes 100,000,000 runs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.toml"]


def test_a_big_seed_group_is_split_into_units_made_when_they_start():
    from mechinterp_arith.sweep import resolve
    from mechinterp_arith.sweep.runner import MAX_UNIT_RUNS, plan_units

    runs = [resolve({"digits": 1, "seed": s}) for s in range(1000)]
    units = plan_units(runs, slots=2)
    assert max(len(u) for u in units) == MAX_UNIT_RUNS and sum(len(u) for u in units) == 1000
    assert [r for u in units for r in u] == runs


def test_read_weights_refuses_a_fifo(tmp_path):
    ck = tiny_checkpoint(tmp_path / "ck")
    (ck / "model.safetensors").unlink()
    os.mkfifo(ck / "model.safetensors")
    with pytest.raises(checkpoint.CheckpointError, match="model.safetensors is a FIFO"):
        checkpoint.read_weights(ck / "model.safetensors", build_model(MCFG))
