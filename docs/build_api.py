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

LAYERS = ["core", "analysis", "sweep", "report"]  # in import order: each layer imports only those before it
SKIP = {"core.version"}


def modules() -> list[str]:
    """Every module of the library layers, layer by layer (``report`` as one entry: its package API)."""
    import pkgutil

    names = []
    for layer in LAYERS:
        pkg = importlib.import_module(f"mechinterp_arith.{layer}")
        if layer == "report":
            names.append(layer)
            continue
        names += [f"{layer}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if f"{layer}.{m.name}" not in SKIP]
    return names


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
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/build_api.py`; do not edit by hand.",
        'Tensor shapes are written jaxtyping-style (`Int[Tensor, "batch pos"]`).',
        "",
    ]
    for mod_name in modules():
        module = importlib.import_module(f"mechinterp_arith.{mod_name}")
        lines += [f"## `mechinterp_arith.{mod_name}`", ""]
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
