"""The thread policy: one torch thread per process unless asked, on every command and in train()."""

import json
import os
import subprocess
import sys
import textwrap

import torch
from support import HANG_TIMEOUT_S

from mechinterp_arith import ModelConfig, Task, TrainConfig, train
from mechinterp_arith.cli import main
from mechinterp_arith.core.threads import ENV_VAR, thread_limit


def test_train_runs_under_the_policy_and_restores_the_callers_threads(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    seen = []
    task = Task("add", 1, width=2)
    mcfg = ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=16, d_mlp=32)
    cfg = TrainConfig(steps=2, batch_size=8, eval_every=1, eval_n=5, warmup=1, device="cpu")
    with thread_limit(2):
        train(task, mcfg, cfg, progress=False, callback=lambda step, model, row: seen.append(torch.get_num_threads()))
        assert torch.get_num_threads() == 2
    assert seen == [1, 1]


def test_a_bad_thread_setting_is_one_line_on_stderr(monkeypatch, capsys):
    monkeypatch.setenv(ENV_VAR, "many")
    assert main(["info", "add3"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"mechinterp-arith info: error: {ENV_VAR} must be an integer >= 0 (0: torch's default), got 'many'"
    ]
    monkeypatch.delenv(ENV_VAR)
    assert main(["info", "add3", "--threads", "-2"]) == 2
    assert "threads must be an integer >= 0" in capsys.readouterr().err


# The timing beside a busy process (within 2x of the time alone) is benchmarks/threads.py: a timing
# assertion would fail whenever the machine is loaded. What is deterministic is checked here: a
# command in a fresh process with no thread variables set trains with one torch thread and
# records it in the checkpoint's config.
FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import torch
    from mechinterp_arith.cli import main
    args = ["train", "--task", "add", "--digits", "1", "--width", "2", "--layers", "1", "--heads", "2",
            "--d-model", "16", "--batch-size", "8", "--eval-n", "5", "--steps", "2", "--eval-every", "2",
            "--quiet", "--no-resume", "--out", sys.argv[1]]
    assert main(args) == 0
    print(json.dumps({"threads": torch.get_num_threads()}))
""")


def test_a_command_in_a_fresh_process_trains_with_one_thread_and_records_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", ENV_VAR)}
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(out)], capture_output=True, text=True, env=env, timeout=HANG_TIMEOUT_S
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"threads": 1}
    assert json.loads((out / "config.json").read_text())["runtime"]["threads"] == 1
