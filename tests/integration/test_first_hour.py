"""What a user meets in the first hour (issue 22): a command says at once what it is doing and shows
progress on stderr (never in ``--json`` stdout), reruns say when nothing was written, outputs that
would land inside a checkpoint are refused, numbers read as numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mechinterp_arith.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# main() in a fresh interpreter whose stderr claims to be a terminal; records whether torch was
# loaded when the first line reached stderr
ON_A_TERMINAL = """
import io, json, sys
class Terminal(io.StringIO):
    first = None
    def isatty(self):
        return True
    def write(self, text):
        if self.first is None and text.strip():
            self.first = {"line": text.strip(), "torch_loaded": "torch" in sys.modules}
        return super().write(text)
err = sys.stderr = Terminal()
from mechinterp_arith.cli import main
code = main(sys.argv[1:])
sys.stderr = sys.__stderr__
print(json.dumps({"code": code, "first": err.first, "stderr": err.getvalue()}), file=sys.stderr)
"""


def on_a_terminal(*argv: str) -> tuple[dict, str]:
    r = subprocess.run([sys.executable, "-c", ON_A_TERMINAL, *argv], capture_output=True, text=True, timeout=600)
    return json.loads(r.stderr.strip().splitlines()[-1]), r.stdout


@pytest.mark.parametrize(
    "argv, start, bar",
    [
        (
            ["evaluate", "add3", "--n", "300", "--json"],
            "mechinterp-arith evaluate: scoring add3",
            "evaluate add3: 100%",
        ),
        (
            ["equivalence", "add3", "--n", "200", "--json"],
            "mechinterp-arith equivalence: testing relations on add3",
            "equivalence: 100%",
        ),
    ],
)
def test_a_long_command_says_what_it_does_before_torch_loads_and_shows_progress_on_stderr(argv, start, bar):
    seen, stdout = on_a_terminal(*argv)
    assert seen["code"] == 0
    assert seen["first"]["line"].startswith(start) and not seen["first"]["torch_loaded"], seen["first"]
    assert bar in seen["stderr"]
    result = json.loads(stdout)  # stdout is the JSON object alone: progress went to stderr
    assert result["task"] == "add3"


def test_quiet_and_a_pipe_keep_stderr_silent(capsys):
    assert main(["evaluate", "add3", "--n", "200", "--json"]) == 0  # capsys: not a terminal
    captured = capsys.readouterr()
    assert captured.err == "" and json.loads(captured.out)["id"]["n"] == 200
    seen, _ = on_a_terminal("evaluate", "add3", "--n", "200", "--quiet")
    assert seen["code"] == 0 and seen["stderr"] == ""


TRAIN = "train --task add --digits 1 --layers 1 --heads 2 --d-model 16 --steps 4 --batch-size 16 --eval-every 2 "
TRAIN += "--eval-n 20 --warmup 2 --quiet --out"


def test_training_into_its_own_finished_checkpoint_says_nothing_was_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN.split(), str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: step 4")
    before = (out / "config.json").stat()
    assert main([*TRAIN.split(), str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"nothing to train: kept the finished checkpoint in {out}: step 4"), said
    assert "--overwrite trains it again" in said
    after = (out / "config.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert main([*TRAIN.split(), str(out), "--overwrite"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: step 4")


def test_a_report_is_never_written_into_a_checkpoint(tmp_path, capsys):
    import shutil

    from mechinterp_arith import load

    ckpt = tmp_path / "ck"
    shutil.copytree(load("addmod2_p100", device="cpu").path, ckpt)
    files = sorted(p.name for p in ckpt.iterdir())
    for argv, message in [
        (["report", str(ckpt), "--out", str(ckpt)], "is the checkpoint itself"),
        (["report", "add3", "--out", str(ckpt)], "is a checkpoint directory"),
    ]:
        assert main([*argv, "--quick", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and f"--out {ckpt}-report" in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in ckpt.iterdir()) == files


def test_info_prints_metrics_as_numbers(capsys):
    assert main(["info", "add3"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("last eval"))
    assert "loss 2.57791e-05" in line and "lr 0.00030001" in line and "id_exact 1," in line, line


@pytest.mark.parametrize("source", ["option", "environment"])
def test_absurd_thread_counts_are_one_line_not_a_crash(source, monkeypatch, capsys):
    import os

    argv = ["info", "add3"] + (["--threads", "100000"] if source == "option" else [])
    if source == "environment":
        monkeypatch.setenv("MECHINTERP_ARITH_THREADS", "50000")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    limit = (os.cpu_count() or 1) * 4
    name = "--threads" if source == "option" else "MECHINTERP_ARITH_THREADS"
    assert err == (
        f"mechinterp-arith info: error: {name} must be at most {limit} ({os.cpu_count()} cores x 4), "
        f"got {100000 if source == 'option' else 50000:,}"
    )
