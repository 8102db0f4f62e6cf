"""The package's layering: imports point one way (front ends -> analyses -> core), no cycles,
no private names imported across modules. An AST check of every module, function-level imports included.
And the concept lint: code patterns of a concept appear only in that concept's home module."""

from __future__ import annotations

import ast
import itertools
import re
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


# ---- the concept lint: patterns that may appear only in their concept's home (docs/architecture.md) ------------
ROOT = PACKAGE.parent
# pattern -> (what it is, the modules allowed to hold it, repository-relative). Checked in the package,
# the notebook sources and scripts in analyses/, and benchmarks/; docstrings and comments are not code.
CONCEPT_PATTERNS: dict[str, tuple[str, tuple[str, ...]]] = {
    r"blocks\.\{[^}]*\}\.(?:attn\.|mlp\.)?hook_": (
        "a hook name built by hand: use get_act_name (analysis/activations.py: resolve_hook, residual_hooks)",
        (),
    ),
    r"%\s*10\s*\*\*": (
        "an operand reduced mod 10^n: Task.id_representative / equivalent_answer, numbers.low_digits",
        ("core/tasks.py", "core/numbers.py"),
    ),
    r"349\s*%": ("the example pair reduced by hand: data.example_pair", ()),
    r"//\s*10\s*\*\*": ("a decimal digit taken by hand: numbers.digit_at / with_digit", ("core/numbers.py",)),
    r"[<>]=?\s*10\s*\*\*\s*[\w.]*digits\b": (
        "in or out of distribution by hand: data.in_distribution",
        ("core/data.py",),
    ),
    r"\.digits\s*\+\s*1\b": (
        "the default OOD length (n + 1) by hand: data.default_ood_digits, require_ood_digits, ood_digits_range",
        ("core/data.py",),
    ),
    r"prompt_len\s*-\s*1": ("an answer position by hand: core/positions.py (answer_logit_pos, answer_positions)", ()),
    r"prompt_len\s*:\s*[\w.]*prompt_len\s*\+": ("answer tokens written by hand: positions.write_answers", ()),
    r"set_num_threads\(": (
        "torch threads set by hand: core/threads.py (set_threads, thread_limit)",
        ("core/threads.py",),
    ),
    r"(?i)\bseed\s*[+-]\s*\d": ("a seed derived by arithmetic: core/seeding.py (derive_seed, generator, rng)", ()),
    r"default_rng\(|np\.random\.(?:seed|RandomState)\(": (
        "a numpy stream: core/seeding.py (rng)",
        ("core/seeding.py",),
    ),
    r"manual_seed\(": (
        "a torch stream seeded by hand: core/seeding.py (generator, arithmetic_generator)",
        ("core/seeding.py", "report/notebook.py"),  # notebook_setup: a notebook's global torch seed
    ),
    r"next\([\w.]*parameters\(\)\)": ("a model's device by hand: model.model_device", ("core/model.py",)),
    r"\.numel\(\)\s+for\s+\w+\s+in\s+[\w.]*parameters\(\)": ("a parameter count: model.n_params", ("core/model.py",)),
    r"==\s*[\w.]*equivalent_answer\(|equivalent_answer\([^()]*\)\s*==": (
        "the OOD rule's hit rate by hand: evaluate.answer_rates",
        ("core/evaluate.py",),
    ),
}
LINTED = [
    *sorted(PACKAGE.rglob("*.py")),
    *sorted((ROOT / "analyses").glob("*.py")),
    *sorted((ROOT / "benchmarks").glob("*.py")),
]


def code_lines(path: Path) -> list[str]:
    """The file's lines with comments and docstrings blanked (what the concept lint reads)."""
    import io
    import tokenize

    text = path.read_text()
    lines = text.splitlines()
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                for i in range(first.lineno - 1, first.end_lineno):
                    lines[i] = ""
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT and lines[tok.start[0] - 1]:
            row = tok.start[0] - 1
            lines[row] = lines[row][: tok.start[1]]
    return lines


def concept_violations(files, root: Path = ROOT, package: Path = PACKAGE) -> list[str]:
    """``path:line: what`` for every pattern of CONCEPT_PATTERNS found outside its home."""
    out = []
    for path in files:
        rel = path.relative_to(package).as_posix() if path.is_relative_to(package) else None
        for pattern, (what, homes) in CONCEPT_PATTERNS.items():
            if rel in homes:
                continue
            for i, line in enumerate(code_lines(path), start=1):
                if re.search(pattern, line):
                    out.append(f"{path.relative_to(root)}:{i}: {what}\n    {line.strip()}")
    return out


def test_every_concept_pattern_appears_only_in_its_home():
    bad = concept_violations(LINTED)
    assert not bad, "a concept outside its home (docs/architecture.md, CONCEPT_PATTERNS):\n" + "\n".join(bad)


def test_the_concept_lint_catches_a_planted_copy(tmp_path):
    """Planted copies are reported (code only: the same text in a docstring or a comment is not), and the
    home itself may hold its pattern."""
    package = tmp_path / "mechinterp_arith"
    (package / "core").mkdir(parents=True)
    (package / "analysis").mkdir()
    planted = package / "analysis" / "planted.py"
    planted.write_text(
        '"""Docs may say torch.set_num_threads(1) and blocks.{l}.hook_z."""\n'
        "import torch\n\n\n"
        "def f(model, task, seed):\n"
        '    """next(model.parameters()) in a docstring is fine."""\n'
        "    torch.set_num_threads(2)  # a comment naming np.random.default_rng(0) is fine too\n"
        '    name = f"blocks.{0}.attn.hook_pattern"\n'
        "    rows = slice(task.prompt_len - 1, task.n_ctx)\n"
        "    return seed + 1, next(model.parameters()).device, 349 % 10**task.digits\n"
    )
    home = package / "core" / "threads.py"
    home.write_text("import torch\n\ntorch.set_num_threads(1)\n")
    found = concept_violations([planted, home], root=tmp_path, package=package)
    lines = sorted(int(v.split(":")[1]) for v in found)
    assert lines == [7, 8, 9, 10, 10, 10, 10], found  # line 10: seed + 1, the device, 349 %, % 10**
    assert not any(v.startswith("mechinterp_arith/core/threads.py") for v in found)
