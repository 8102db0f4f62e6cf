"""The command line answers at once: building its parser, ``--help``, ``--version`` and argument
errors import neither torch nor TransformerLens (nor pandas, plotly or an analysis), and the help
says each default once. Timings are in ``benchmarks/cli_startup.py``; this checks what makes them.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys

HEAVY = ("torch", "transformer_lens", "pandas", "plotly", "scipy", "sklearn", "safetensors", "numpy")

# in a fresh interpreter: this test process has imported torch long ago
PROBE = """
import contextlib, io, json, sys
import mechinterp_arith as ma
from mechinterp_arith.cli import build_parser, main

parser = build_parser()
commands = parser._subparsers._group_actions[0].choices
helps = {"": parser.format_help(), **{name: p.format_help() for name, p in commands.items()}}
exits = {}
for argv in (["--version"], ["--help"], ["train", "--help"], ["evaluate", "add3", "--n", "abc"], ["no-such-command"],
             ["evaluate", "add3", "--threads", "100000"]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            exits[" ".join(argv)] = [main(argv), out.getvalue(), err.getvalue()]
        except SystemExit as e:
            exits[" ".join(argv)] = [e.code, out.getvalue(), err.getvalue()]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY or m.startswith("mechinterp_arith.analysis."))
print(json.dumps({"helps": helps, "exits": exits, "loaded": loaded, "public": dir(ma)}))
"""


@functools.cache
def probe() -> dict:
    code = f"HEAVY = {HEAVY!r}\n" + PROBE
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_parser_help_version_and_argument_errors_import_nothing_heavy():
    result = probe()
    assert result["loaded"] == ["mechinterp_arith.analysis.choices"], result["loaded"]
    exits = result["exits"]
    assert exits["--version"][0] == 0 and exits["--version"][1].startswith("mechinterp-arith 0.")
    assert exits["--help"][0] == 0 and "evaluate" in exits["--help"][1]
    assert exits["train --help"][0] == 0 and "--steps" in exits["train --help"][1]
    assert exits["evaluate add3 --n abc"][0] == 2 and "invalid int value: 'abc'" in exits["evaluate add3 --n abc"][2]
    assert exits["no-such-command"][0] == 2 and "invalid choice" in exits["no-such-command"][2]
    code, _, err = exits["evaluate add3 --threads 100000"]  # checked before torch loads: no libgomp crash
    assert code == 2 and err.strip().startswith("mechinterp-arith evaluate: error: --threads must be at most")
    # the facade still lists every public name
    assert {"load", "Task", "train", "residual_pca", "data", "__version__"} <= set(result["public"])


def option_help(text: str, option: str) -> str:
    """The help of ``option`` (its usage, e.g. ``--steps STEPS``) in a parser's help, on one line."""
    lines = text.split("options:", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(option))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("  -") or not lines[i].strip()), None)
    return " ".join(" ".join(lines[start:end]).split())[len(option) :]


def test_help_gives_each_default_once_and_reads_as_written():
    helps = probe()["helps"]
    train = " ".join(helps["train"].split("options:", 1)[1].split())  # after the usage lines
    assert "(default: None)" not in train and "(default: False)" not in train
    for option, default in [
        ("--steps STEPS", "2,000"),
        ("--batch-size BATCH_SIZE", "128"),
        ("--lr LR", "0.003"),
        ("--warmup WARMUP", "50"),
        ("--eval-every EVAL_EVERY", "50"),
        ("--data-seed DATA_SEED", "0"),
    ]:
        text = option_help(helps["train"], option)
        if "by --positional" in text:
            # a default some position scheme sets: the study's for learned, then each scheme's
            assert text.count("default") == 1 and "default by --positional: learned, rotary, nope" in text, text
            assert f"learned, rotary, nope, randomized: {default};" in text, (option, text)
        else:
            assert text.count("default") == 1 and f"(default: {default})" in text, (option, text)
    for name, text in helps.items():
        flat = " ".join(text.split())
        assert "%%" not in flat and not re.search(r"\(default[^)]*\) \(default", flat), name
    assert "95% Wilson" in " ".join(helps["equivalence"].split())
    n_help = option_help(helps["evaluate"], "--n N").replace("- ", "-")  # the split may be 2,000 pairs, not 10,000
    assert "all 10,000" not in n_help and "the checkpoint's whole held-out split" in n_help, n_help
