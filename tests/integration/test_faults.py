"""Fault injection: a checkpoint directory is never lost, mixed or half-swapped, and bad input is one line.

Deaths are simulated at every filesystem call (tests/support/faults.py); concurrent writers are a
real second process; the CLI table runs ``main`` in-process (exit status 2, one line on stderr, no
traceback, nothing written).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest
import torch
from safetensors.torch import save_file
from support.faults import DieAt, count_calls, die_during
from support.models import same_weights, weights

import mechinterp_arith.core.dirswap as dirswap
import mechinterp_arith.core.locks as locks
import mechinterp_arith.core.train_loop as train_loop
from mechinterp_arith import CheckpointError, ModelConfig, Task, TrainConfig, build_model, load, save_checkpoint, train
from mechinterp_arith.cli import main
from mechinterp_arith.core.checkpoint import snapshot_path
from mechinterp_arith.core.importer import import_checkpoint
from mechinterp_arith.core.locks import OutputLocked, exclusive, lock_file

TASK = Task("add", 1)
MCFG = ModelConfig.for_task(TASK, n_layers=1, n_heads=2, d_model=16, d_mlp=32, seed=1)
CFG = TrainConfig(steps=4, batch_size=16, eval_every=2, eval_n=20, warmup=2, snapshot_every=2, device="cpu")
HISTORY = ["step", "loss", "lr", "id_exact", "ood_exact"]


def train_until_first_evaluation(out, mcfg=MCFG, cfg=CFG) -> None:
    """Start ``train`` into ``out`` and interrupt it (KeyboardInterrupt) at its first evaluation."""

    def stop(step, model, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TASK, mcfg, cfg, out_dir=out, progress=False, callback=stop)


def siblings(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def reference(one_thread):
    """The uninterrupted run: weights, history, snapshots."""
    model, history, snapshots = train(TASK, MCFG, CFG, progress=False)
    return weights(model), history[HISTORY], snapshots


def assert_finished_like_reference(out, reference) -> None:
    ckpt = load(out, device="cpu")
    assert same_weights(weights(ckpt.model), reference[0])
    assert ckpt.snapshot_steps() == sorted(reference[2])
    for step, state in reference[2].items():
        assert same_weights(weights(ckpt.load_snapshot(step)), state)
    assert [{k: r[k] for k in HISTORY} for r in ckpt.history] == reference[1].to_dict("records")
    assert siblings(out.parent) == [out.name]  # no leftover, no lock file
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.json", "model.safetensors", "snapshots"]
    assert siblings(out / "snapshots") == [snapshot_path(out, s).name for s in sorted(reference[2])]


# ---- deaths at every filesystem call -------------------------------------------------------------
def test_training_killed_at_any_filesystem_call_resumes_to_the_same_checkpoint(tmp_path, reference):
    """Kill at each rename, write, link and delete of a whole run; the path is never empty or mixed,
    and running the same command again ends with the uninterrupted run's checkpoint."""
    with DieAt(None) as counter:
        train(TASK, MCFG, CFG, out_dir=tmp_path / "count", progress=False)
    assert counter.calls > 20
    created = counter.log.index(f"mkdir {tmp_path / 'count'}") + 1  # the call that makes the directory
    for n in range(1, counter.calls + 1):
        out = tmp_path / f"kill{n}" / "run"
        assert die_during(lambda: train(TASK, MCFG, CFG, out_dir=out, progress=False), n)
        assert out.is_dir() or n <= created, n  # never empty once made (an atomic exchange on Linux)
        assert not ((out / "config.json").exists() and (out / "train_state.safetensors").exists()), n
        if (out / "config.json").exists():  # a new checkpoint is whole
            assert same_weights(weights(load(out, device="cpu").model), reference[0]), n
        train(TASK, MCFG, CFG, out_dir=out, progress=False)
        assert_finished_like_reference(out, reference)


@pytest.mark.parametrize("exchange", ["renameat2", "two renames"])
def test_replacing_a_checkpoint_killed_at_any_call_leaves_the_old_or_the_new(tmp_path, monkeypatch, exchange):
    if exchange == "two renames":
        monkeypatch.setattr(dirswap, "exchange", lambda a, b: False)
    old_model, new_model = (
        build_model(MCFG),
        build_model(ModelConfig.for_task(TASK, n_layers=1, n_heads=2, d_model=16, d_mlp=32, seed=2)),
    )
    old_snapshots = {5: weights(old_model)}

    def replace(out):
        return lambda: save_checkpoint(out, new_model, TASK, MCFG, {"steps": 2}, [{"step": 2, "loss": 1.0}])

    calls = count_calls(replace(tmp_path / "count"))
    for n in range(1, calls + 1):
        out = tmp_path / f"kill{n}" / "ckpt"
        save_checkpoint(out, old_model, TASK, MCFG, {"steps": 1}, [{"step": 1, "loss": 2.0}], snapshots=old_snapshots)
        assert die_during(replace(out), n)
        ckpt = load(out, device="cpu")  # recovers an interrupted exchange first
        if ckpt.history == [{"step": 1, "loss": 2.0}]:
            assert same_weights(weights(ckpt.model), weights(old_model)) and ckpt.snapshot_steps() == [5], n
        else:
            assert same_weights(weights(ckpt.model), weights(new_model)) and ckpt.snapshot_steps() == [], n
        save_checkpoint(out, new_model, TASK, MCFG)  # the next writer clears every leftover
        assert siblings(out.parent) == ["ckpt"], n


def test_reimport_killed_at_any_call_leaves_the_old_or_the_new_import(tmp_path):
    from test_importer import make_state  # a minGPT state dict of the shipped add3 shape

    task = Task("add", 3)
    old_file, new_file = tmp_path / "old.pt", tmp_path / "new.pt"
    torch.save(make_state(seed=1), old_file)
    torch.save(make_state(seed=2), new_file)
    calls = count_calls(lambda: import_checkpoint(new_file, "mingpt", 3, task, tmp_path / "count"))
    expected = {
        str(f): weights(load(import_checkpoint(f, "mingpt", 3, task, tmp_path / f"ref_{f.stem}"), device="cpu").model)
        for f in (old_file, new_file)
    }
    for n in range(1, calls + 1):
        out = tmp_path / f"kill{n}" / "imported"
        import_checkpoint(old_file, "mingpt", 3, task, out)
        assert die_during(lambda: import_checkpoint(new_file, "mingpt", 3, task, out), n)
        ckpt = load(out, device="cpu")  # the old import or the new one, config and weights of the same
        assert same_weights(weights(ckpt.model), expected[ckpt.config["source"]["file"]]), n
        import_checkpoint(new_file, "mingpt", 3, task, out)
        assert load(out, device="cpu").config["source"]["file"] == str(new_file)
        assert siblings(out.parent) == ["imported"], n


@pytest.mark.parametrize("stop_before_step", [2, 4])  # before the first evaluation (2), between two (4)
def test_state_saved_between_evaluations_resumes_bit_identically(tmp_path, monkeypatch, reference, stop_before_step):
    monkeypatch.setattr(train_loop, "STATE_EVERY_S", 0.0)  # a time-based save after every step
    real_step, out = train_loop.train_step, tmp_path / "run"

    def step_until_killed(runs, training, forward):
        if runs[0].step == stop_before_step - 1:
            raise KeyboardInterrupt
        return real_step(runs, training, forward)

    monkeypatch.setattr(train_loop, "train_step", step_until_killed)
    with pytest.raises(KeyboardInterrupt):
        train(TASK, MCFG, CFG, out_dir=out, progress=False)
    monkeypatch.setattr(train_loop, "train_step", real_step)
    from safetensors import safe_open

    with safe_open(str(out / "train_state.safetensors"), "pt") as f:
        state = json.loads(f.metadata()["state"])
    assert state["step"] == stop_before_step - 1 and len(state["pending_losses"]) == 1  # mid-way between evaluations
    train(TASK, MCFG, CFG, out_dir=out, progress=False)
    assert_finished_like_reference(out, reference)


# ---- the legacy leftovers of the issue ----------------------------------------------------------
def test_leftovers_of_a_killed_swap_are_recovered_not_deleted(tmp_path, reference):
    """Version 0.1.0 killed between its two renames: nothing at D, the run's state in .D.old, a
    complete new checkpoint in .D.<random>.tmp. The rerun resumes from .D.old and cleans up."""
    out = tmp_path / "D"

    train_until_first_evaluation(out)
    os.rename(out, dirswap.leftover(out, "old"))
    (tmp_path / ".D.x1y2z3.tmp").mkdir()
    (tmp_path / ".D.x1y2z3.tmp" / "model.safetensors").write_bytes(b"half")
    (dirswap.leftover(out, "old") / "snapshots" / ".step_0000004.safetensors.abc.tmp").write_bytes(b"half")
    train(TASK, MCFG, CFG, out_dir=out, progress=False)
    assert_finished_like_reference(out, reference)


def test_a_leftover_resume_state_is_never_deleted_silently(tmp_path):
    out = tmp_path / "D"

    train_until_first_evaluation(out)
    os.rename(out, tmp_path / ".D.abc123.tmp")  # not a name the recovery restores
    out.mkdir()
    with pytest.raises(CheckpointError, match=r"\.D\.abc123\.tmp holds the training state"):
        train(TASK, MCFG, CFG, out_dir=out, progress=False)
    assert (tmp_path / ".D.abc123.tmp" / "train_state.safetensors").is_file()


# ---- one owner per directory ----------------------------------------------------------------------
HOLD = """
import contextlib, importlib.util, sys, time
spec = importlib.util.spec_from_file_location("locks", sys.argv[1])  # stdlib only: starts in milliseconds
locks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(locks)
with contextlib.ExitStack() as stack:
    for path in sys.argv[2:]:
        stack.enter_context(locks.exclusive(path))
    print("held", flush=True)
    time.sleep(300)
"""


def test_a_second_writer_is_refused_and_a_dead_owner_lock_is_taken_over(tmp_path, capsys, add3):
    from test_importer import make_state

    from mechinterp_arith.report import ReportSettings, build_report

    run, imported, report = tmp_path / "run", tmp_path / "imported", tmp_path / "report"
    torch.save(make_state(), tmp_path / "model.pt")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, locks.__file__, str(run), str(imported), str(report / "index.html")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        owner = f"being written by process {holder.pid}"
        with pytest.raises(OutputLocked, match=owner):
            train(TASK, MCFG, CFG, out_dir=run, progress=False)
        with pytest.raises(OutputLocked, match=owner):
            save_checkpoint(run, build_model(MCFG), TASK, MCFG)
        with pytest.raises(OutputLocked, match=owner):
            import_checkpoint(tmp_path / "model.pt", "mingpt", 3, Task("add", 3), imported)
        with pytest.raises(OutputLocked, match=owner):
            build_report(add3, report, ReportSettings(quick=True, sections=("model",)), progress=False)
        for argv in (
            ["train", "--task", "add", "--digits", "1", "--steps", "2", "--out", str(run), "--quiet"],
            ["report", "add3", "--out", str(report), "--quick", "--quiet"],
        ):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert owner in err and len(err.strip().splitlines()) == 1, err
        torch.set_num_threads(1)  # `report --threads` set it
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_file(run).read_text().strip() == str(holder.pid)  # stale: its owner died holding it
    train(TASK, MCFG, CFG, out_dir=run, progress=False)
    import_checkpoint(tmp_path / "model.pt", "mingpt", 3, Task("add", 3), imported)
    assert siblings(tmp_path) == ["imported", "model.pt", "report", "run"]
    assert siblings(report) == [".index.html.lock"]  # stale, taken over by the next report


def test_two_threads_cannot_write_one_directory(tmp_path):
    out, inside, release = tmp_path / "run", threading.Event(), threading.Event()

    def first():
        with exclusive(out):
            inside.set()
            release.wait(30)

    t = threading.Thread(target=first)
    t.start()
    inside.wait(30)
    try:
        with pytest.raises(OutputLocked, match="another thread of this process"):
            train(TASK, MCFG, CFG, out_dir=out, progress=False)
    finally:
        release.set()
        t.join()
    with exclusive(out), exclusive(out):  # re-entrant within one thread
        pass
    assert siblings(tmp_path) == []


# ---- train owns its output directory --------------------------------------------------------------
def test_train_refuses_another_runs_checkpoint_unless_overwrite(tmp_path, reference):
    out = tmp_path / "X"
    shutil.copytree(load("add3", device="cpu").path, out)
    before = sorted(str(p) for p in out.rglob("*"))
    with pytest.raises(CheckpointError, match="finished checkpoint of another run \\(add3\\).*overwrite=True"):
        train(TASK, MCFG, CFG, out_dir=out, progress=False)
    assert sorted(str(p) for p in out.rglob("*")) == before
    train(TASK, MCFG, CFG, out_dir=out, progress=False, overwrite=True)
    assert_finished_like_reference(out, reference)  # only its own snapshots: 2 and 4, none of add3's
    model, history, snapshots = train(TASK, MCFG, CFG, out_dir=out, progress=False)  # finished: nothing to train
    assert same_weights(weights(model), reference[0]) and sorted(snapshots) == [2, 4]
    assert history[HISTORY].to_dict("records") == reference[1].to_dict("records")
    assert_finished_like_reference(out, reference)
    with pytest.raises(CheckpointError, match="finished checkpoint of this run"):
        train(TASK, MCFG, CFG, out_dir=out, progress=False, resume=False)


def test_no_resume_keeps_no_old_snapshot(tmp_path):
    out = tmp_path / "run"

    train_until_first_evaluation(out)
    assert (out / "snapshots").is_dir()
    no_snapshots = TrainConfig(**{**CFG.to_dict(), "snapshot_every": None, "betas": CFG.betas})
    with pytest.raises(CheckpointError, match="different settings"):
        train(TASK, MCFG, no_snapshots, out_dir=out, progress=False)
    train(TASK, MCFG, no_snapshots, out_dir=out, progress=False, resume=False)
    assert load(out, device="cpu").snapshot_steps() == []


def test_a_folder_of_other_things_is_never_replaced(tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    for write in (
        lambda: train(TASK, MCFG, CFG, out_dir=out, progress=False, overwrite=True),
        lambda: save_checkpoint(out, build_model(MCFG), TASK, MCFG),
    ):
        with pytest.raises(CheckpointError, match="holds 'thesis.tex', which is not part of a checkpoint"):
            write()
    assert siblings(out) == ["thesis.tex"] and siblings(tmp_path) == ["notes"]


def test_metrics_json_is_strict_json(tmp_path):
    history = [{"step": 1, "loss": float("nan"), "id_exact": 0.5}, {"step": 2, "loss": float("inf")}]
    out = save_checkpoint(tmp_path / "c", build_model(MCFG), TASK, MCFG, CFG.to_dict(), history)

    def refuse(name):
        raise ValueError(f"{name} in metrics.json")

    rows = json.loads((out / "metrics.json").read_text(), parse_constant=refuse)["history"]
    assert rows == [{"step": 1, "loss": None, "id_exact": 0.5}, {"step": 2, "loss": None}]
    assert load(out, device="cpu").history == rows


# ---- the table: each is exit status 2, one line on stderr, no traceback, nothing written ------
def _tiny_checkpoint(root):
    return save_checkpoint(root / "ck", build_model(MCFG), TASK, MCFG, CFG.to_dict(), [{"step": 4, "loss": 2.0}])


def _edit_json(name, edit):
    def setup(root):
        ck = _tiny_checkpoint(root)
        value = json.loads((ck / name).read_text())
        (ck / name).write_text(json.dumps(edit(value)))
        return ck

    return setup


def _set(section, key, value):
    return _edit_json("config.json", lambda c: {**c, section: {**c[section], key: value}})


def _int64_weights(root):
    ck = _tiny_checkpoint(root)
    tensors = {k: v.to(torch.int64) if k == "embed.weight" else v for k, v in weights(build_model(MCFG)).items()}
    save_file(tensors, ck / "model.safetensors")
    return ck


def _stray_snapshot(root):
    ck = _tiny_checkpoint(root)
    (ck / "snapshots").mkdir()
    shutil.copy(ck / "model.safetensors", ck / "snapshots" / "step_abc.safetensors")
    return ck


def _interrupted_run_with_a_corrupt_snapshot(root):
    """What `train` below starts, stopped at its first evaluation, then a snapshot truncated."""
    mcfg = ModelConfig.for_task(TASK, n_layers=1, n_heads=2, d_model=16, d_mlp=64)
    cfg = TrainConfig(steps=4, batch_size=16, eval_every=2, eval_n=20, warmup=2, snapshot_every=2)

    train_until_first_evaluation(root / "run", mcfg, cfg)
    snapshot = snapshot_path(root / "run", 2)
    snapshot.write_bytes(snapshot.read_bytes()[:100])
    return root / "run"


def _file(root):
    (root / "a_file").write_text("x")
    return root / "a_file"


def _folder(root):
    (root / "a_folder").mkdir()
    return root / "a_folder"


def _report_dir_with_index_folder(root):
    (root / "rep" / "index.html").mkdir(parents=True)
    return root / "rep"


def _pickle(root):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned > owned.txt",))

    torch.save({"model": Evil()}, root / "evil.pt")
    return root / "evil.pt"


def _nanogpt_with_bad_n_head(root):
    from test_importer import make_state

    torch.save({"model": make_state(), "model_args": {"n_head": 0}}, root / "nano.pt")
    return root / "nano.pt"


TRAIN = [
    "train",
    "--task",
    "add",
    "--digits",
    "1",
    "--layers",
    "1",
    "--heads",
    "2",
    "--d-model",
    "16",
    "--steps",
    "4",
    "--batch-size",
    "16",
    "--eval-every",
    "2",
    "--eval-n",
    "20",
    "--warmup",
    "2",
    "--snapshot-every",
    "2",
    "--quiet",
]
HUGE = "1000000000000"
CASES = {  # id: (setup(root) -> path substituted for {p}, argv, message)
    **{
        f"{c}-huge-n": (None, [c, "add3", "--n", HUGE], "--n must be at most 100,000,000")
        for c in ("evaluate", "pca", "match", "logit-lens", "equivalence", "patch", "report")
    },
    "evaluate-batch-size-0": (None, ["evaluate", "add3", "--batch-size", "0"], "--batch-size must be >= 1"),
    "evaluate-batch-size-negative": (None, ["evaluate", "add3", "--batch-size", "-1"], "--batch-size must be >= 1"),
    "evaluate-ood-digits-3": (None, ["evaluate", "add3", "--ood-digits", "3"], "must exceed the trained length"),
    "train-out-is-a-file": (_file, [*TRAIN, "--out", "{p}"], "is a file; give a directory"),
    "train-out-under-a-file": (_file, [*TRAIN, "--out", "{p}/sub"], "cannot be made"),
    "report-out-is-a-file": (_file, ["report", "add3", "--out", "{p}", "--quick"], "is a file; give a directory"),
    "report-index-is-a-folder": (
        _report_dir_with_index_folder,
        ["report", "add3", "--out", "{p}", "--quick"],
        "index.html is a folder",
    ),
    "html-is-a-folder": (_folder, ["pca", "add3", "--html", "{p}"], "is a folder; give a file name"),
    "html-in-a-missing-folder": (_folder, ["pca", "add3", "--html", "{p}/no/f.html"], "does not exist"),
    "snapshot-every-0": (None, [*TRAIN, "--snapshot-every", "0", "--out", "x"], "--snapshot-every must be >= 1"),
    "snapshot-every-negative": (
        None,
        [*TRAIN, "--snapshot-every", "-2", "--out", "x"],
        "--snapshot-every must be >= 1",
    ),
    "eval-n-0": (None, [*TRAIN, "--eval-n", "0", "--out", "x"], "--eval-n must be >= 1"),
    "config-is-a-list": (
        _edit_json("config.json", lambda c: [c]),
        ["info", "{p}"],
        "config.json: the file must be an object",
    ),
    "d_model-float": (_set("model", "d_model", 16.0), ["info", "{p}"], "model: d_model must be an integer, got 16.0"),
    "n_layers-float": (_set("model", "n_layers", 1.0), ["info", "{p}"], "model: n_layers must be an integer"),
    "d_model-3e11": (_set("model", "d_model", 3e11), ["info", "{p}"], "model: d_model must be an integer"),
    "d_model-huge-int": (
        _set("model", "d_model", 300_000_000_000),
        ["info", "{p}"],
        "d_model must be between 1 and 65,536",
    ),
    "seed-x": (_set("training", "seed", "x"), ["info", "{p}"], "training: seed must be an integer, got 'x'"),
    "pad-no": (_set("task", "pad", "no"), ["info", "{p}"], "task: pad must be true or false"),
    "unknown-task-key": (_set("task", "base", 10), ["info", "{p}"], "task: unknown task keys: base"),
    "unknown-training-key": (_set("training", "momentum", 0.9), ["info", "{p}"], "unknown training config keys"),
    "unknown-top-level-key": (
        _edit_json("config.json", lambda c: {**c, "extra": 1}),
        ["info", "{p}"],
        "unknown key 'extra'",
    ),
    "modulus-10^1001": (
        _edit_json("config.json", lambda c: {**c, "task": {**c["task"], "op": "addmod", "modulus": 10**1001}}),
        ["info", "{p}"],
        "task: operation 'addmod' needs a modulus between 2 and 10^1000, got 100000000000...000000000000 (1002 digits)",
    ),
    "history-of-numbers": (
        _edit_json("metrics.json", lambda m: {"history": [1, 2]}),
        ["info", "{p}"],
        "metrics.json: history[0] must be an object",
    ),
    "history-not-a-list": (
        _edit_json("metrics.json", lambda m: {"history": {"step": 1}}),
        ["info", "{p}"],
        "metrics.json: history must be a list",
    ),
    "int64-weights": (_int64_weights, ["info", "{p}"], "embed.weight has dtype torch.int64"),
    "stray-snapshot": (_stray_snapshot, ["info", "{p}"], "step_abc.safetensors: not a snapshot name"),
    "corrupt-snapshot-in-resumable-out": (
        _interrupted_run_with_a_corrupt_snapshot,
        [*TRAIN, "--out", "{p}"],
        "step_0000002.safetensors is corrupt or truncated",
    ),
    "train-over-add3": (
        lambda root: shutil.copytree(load("add3", device="cpu").path, root / "X"),
        [*TRAIN, "--out", "{p}"],
        "finished checkpoint of another run (add3); pass overwrite=True",
    ),
    "pickle": (_pickle, ["import", "{p}", "--from", "mingpt", "--n-heads", "3", "--out", "imp"], "refuses to unpickle"),
    "bad-n_head-in-model_args": (
        _nanogpt_with_bad_n_head,
        ["import", "{p}", "--from", "nanogpt", "--out", "imp"],
        "model_args n_head=0 is not a positive integer",
    ),
}
if not torch.cuda.is_available():
    CASES["device-cuda-without-cuda"] = (None, ["evaluate", "add3", "--device", "cuda"], "no CUDA device is available")


def _tree(root) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", list(CASES))
def test_cli_errors_are_one_line_and_leave_nothing_behind(case, tmp_path, monkeypatch, capsys):
    setup, argv, message = CASES[case]
    monkeypatch.chdir(tmp_path)
    path = setup(tmp_path) if setup else None
    before = _tree(tmp_path)
    capsys.readouterr()
    assert main([a.replace("{p}", str(path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert "\x1b" not in err and "weights_only=False" not in err and "will likely succeed" not in err
    assert ".tmp" not in err  # write errors name the target, not a hidden temporary
    assert _tree(tmp_path) == before  # nothing written, nothing half-written
    torch.set_num_threads(1)  # `report --threads` sets it


# ---- resource and write errors -------------------------------------------------------------------
@pytest.mark.parametrize(
    "error, needed",
    [
        (
            RuntimeError(
                "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                "tried to allocate 40000000000000 bytes. Error code 12 (Cannot allocate memory)"
            ),
            "37,252.9 GiB",
        ),
        (MemoryError(), None),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)"), "2.00 GiB"),
    ],
)
def test_out_of_memory_is_one_line_saying_what_to_change(monkeypatch, capsys, error, needed):
    import mechinterp_arith.core.evaluate as evaluate  # the command imports it when it runs

    def exhausted(*args, **kwargs):
        raise error

    monkeypatch.setattr(evaluate, "evaluate_checkpoint", exhausted)
    assert main(["evaluate", "add3", "--n", "100000000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mechinterp-arith evaluate: error: out of memory") and "\n" not in err
    assert "use a smaller --n or --batch-size" in err and (needed is None or f"it needed {needed} more" in err)


def test_write_errors_name_the_target_not_the_temporary(tmp_path, monkeypatch, capsys):
    import errno

    from mechinterp_arith.core.files import atomic_write_text

    real_replace = os.replace

    def disk_full(src, dst, *args, **kwargs):
        if str(src).endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device", str(src))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError) as e:
        atomic_write_text(tmp_path / "figure.html", "<html>")
    assert e.value.filename == str(tmp_path / "figure.html") and e.value.errno == errno.ENOSPC
    assert main(["logit-lens", "add3", "--n", "10", "--html", str(tmp_path / "lens.html")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mechinterp-arith logit-lens: error: {tmp_path / 'lens.html'}: No space left on device"
    )
    assert siblings(tmp_path) == []
