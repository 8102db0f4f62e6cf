"""The package's layering: imports point one way (front ends -> analyses -> core), no cycles,
no private names imported across modules. An AST check of every module, function-level imports included."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mechinterp_arith"
# each layer may import from itself and the layers before it; the package root (the public facade)
# and __main__ may import anything, and nothing imports them
LAYERS = ["core", "analysis", "sweep", "report", "cli"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """``(imported module, names, line)`` for every intra-package import of a file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mechinterp_arith":
                continue
            names = [a.name for a in node.names]
            # "from . import data" imports a submodule
            subs = [
                f"{target}.{n}"
                for n in names
                if (PACKAGE.parent / f"{target}.{n}".replace(".", "/")).with_suffix(".py").exists()
                or (PACKAGE.parent / f"{target}.{n}".replace(".", "/") / "__init__.py").exists()
            ]
            out += [(s, [], node.lineno) for s in subs] or [(target, names, node.lineno)]
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "mechinterp_arith"]
    return out


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def graph() -> dict[str, list[tuple[str, list[str], int]]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_layer():
    stray = [m for m in graph() if layer_of(m) is None and m not in ("mechinterp_arith", "mechinterp_arith.__main__")]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"


def test_imports_point_down_the_layers():
    bad = []
    for module, deps in graph().items():
        src = layer_of(module)
        if src is None:
            continue
        for target, _, line in deps:
            dst = layer_of(target)
            if target in ("mechinterp_arith", "mechinterp_arith.__main__"):
                bad.append(f"{module}:{line} imports the package root")
            elif dst is not None and LAYERS.index(dst) > LAYERS.index(src):
                bad.append(f"{module}:{line} ({src}) imports {target} ({dst})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycles():
    g = {m: sorted({t for t, _, _ in deps if t in graph_modules()}) for m, deps in graph().items()}
    # a package's __init__ importing its own submodules is not a cycle
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m) :] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for t in g.get(m, []):
            if not (t.startswith(m + ".")):  # package -> own submodule
                visit(t)
        stack.pop()

    for m in g:
        visit(m)
    cycles = [
        c for c in cycles if not any(b.startswith(a + ".") or a.startswith(b + ".") for a, b in itertools.pairwise(c))
    ]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def graph_modules() -> set[str]:
    return {module_name(p) for p in PACKAGE.rglob("*.py")}


def test_no_private_names_cross_modules():
    bad = [
        f"{m}:{line} imports {n} from {t}"
        for m, deps in graph().items()
        for t, names, line in deps
        for n in names
        if n.startswith("_") and n != "__version__"
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("limit", [500])  # lines as `ruff format` writes them
def test_modules_stay_small(limit):
    big = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > limit}
    assert not big, f"modules over {limit} lines: {big}"
