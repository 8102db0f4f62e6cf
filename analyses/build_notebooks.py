"""The analysis notebooks: each ``analyses/NN_name.py`` (jupytext percent format) is the source, linted
by ruff and checked by the concept lint like any module; ``NN_name.ipynb`` beside it is generated from it
(no outputs, deterministic cell ids), so it opens in Jupyter as it is.

    python analyses/build_notebooks.py            # (re)write analyses/*.ipynb from their .py sources
    python analyses/build_notebooks.py --check    # exit 1 when a notebook is missing or differs from its source

Every notebook starts with a ``parameters`` cell (``# %% tags=["parameters"]``).
``MECHINTERP_ARITH_QUICK=1`` in the kernel's environment selects small sample sizes (the tests run
every notebook that way); the code is the same. Figures are offline
(:mod:`mechinterp_arith.report.notebook`): plotly.js is embedded with the first figure (never the
CDN-backed ``notebook_connected``; no MathJax link), and attention views inline circuitsvis's bundle
from the installed package. Edit a notebook in Jupyter with jupytext's paired ``.py`` (``jupytext --sync``)
or edit the ``.py`` directly, then run this script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def sources() -> list[Path]:
    """The notebook sources: ``analyses/NN_name.py``."""
    return sorted(HERE.glob("[0-9][0-9]_*.py"))


def render(source: Path) -> str:
    """The ``.ipynb`` text of one source: its cells, without outputs, with ids ``NN-ii``."""
    nb = jupytext.read(source, fmt="py:percent")
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata = {
        **METADATA,
        "mechinterp_arith": {"generated_by": "analyses/build_notebooks.py", "source": source.name},
    }
    for i, cell in enumerate(nb.cells):
        cell.id = f"{source.name[:2]}-{i:02d}"
        cell.metadata = {"tags": cell.metadata["tags"]} if "tags" in cell.metadata else {}
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args(argv)
    stale = []
    for source in sources():
        path = source.with_suffix(".ipynb")
        text = render(source)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
            continue
        tmp = path.with_suffix(".ipynb.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # atomic
        print(f"wrote {path.relative_to(HERE.parent)}")
    orphans = sorted({p.stem for p in HERE.glob("*.ipynb")} - {s.stem for s in sources()})
    if orphans:
        print(f"notebooks without a .py source: {', '.join(orphans)}", file=sys.stderr)
        return 1
    if stale:
        print("out of date (run python analyses/build_notebooks.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
