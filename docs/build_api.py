"""Generate docs/api.md from the package's docstrings: ``python docs/build_api.py [--check]``.

Hand-written prose lives in the other pages; this one is always what the code says. With
``--check`` it exits 1 when docs/api.md is out of date (a test runs that).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

MODULES = [
    ("Tasks and formats", "tasks"),
    ("Operand sets", "data"),
    ("Hooked models", "model"),
    ("Training", "train"),
    ("Evaluation", "evaluate"),
    ("Plain forward (fast paths)", "plain_forward"),
    ("Fast greedy decoding", "fast_decode"),
    ("Checkpoints", "checkpoint"),
    ("Importing foreign checkpoints", "importer"),
    ("Equivalence relations", "equivalence"),
    ("Equivalence figures", "equivalence_plots"),
    ("Activations", "activations"),
    ("Labels", "labels"),
    ("Residual-stream PCA", "pca"),
    ("OOD projection", "projection"),
    ("Training dynamics", "dynamics"),
    ("Logit lens", "logit_lens"),
    ("Activation matching", "matching"),
    ("Prompt pairs and metrics", "prompt_pairs"),
    ("Activation patching", "patching"),
    ("Circuit queries", "circuits"),
    ("Report", "report"),
]
OUT = Path(__file__).resolve().parent / "api.md"


def public_members(module) -> list[tuple[str, object]]:
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    members = []
    for name in names:
        obj = getattr(module, name, None)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", "").split(".")[0] != "mechinterp_arith":
            continue
        if not module.__name__.endswith(".report") and obj.__module__ != module.__name__:
            continue
        members.append((name, obj))
    return members


def render() -> str:
    lines = ["# API reference", "", "Generated from the docstrings by `python docs/build_api.py`; do not edit by hand.",
             "Tensor shapes are written jaxtyping-style (`Int[Tensor, \"batch pos\"]`).", ""]
    for title, mod_name in MODULES:
        module = importlib.import_module(f"mechinterp_arith.{mod_name}")
        lines += [f"## {title}: `mechinterp_arith.{mod_name}`", ""]
        doc = inspect.getdoc(module)
        if doc:
            lines += [doc.split("\n\n")[0], ""]
        for name, obj in public_members(module):
            try:
                sig = str(inspect.signature(obj))
            except (TypeError, ValueError):
                sig = "(...)"
            kind = "class " if inspect.isclass(obj) else ""
            lines += [f"### `{kind}{name}{sig}`", ""]
            lines += [(inspect.getdoc(obj) or "(no docstring)").strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python docs/build_api.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
