"""Execute every notebook in analyses/ with small settings (MECHINTERP_ARITH_QUICK=1) and check its outputs.

The kernel is this interpreter (``sys.executable -m ipykernel_launcher``), from a kernel spec written to
a temporary directory: nothing is installed into the environment or the user's Jupyter directories.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import HANG_TIMEOUT_S

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ANALYSES = ROOT / "analyses"
NOTEBOOKS = sorted(p.stem for p in ANALYSES.glob("*.ipynb"))
CELL_TIMEOUT = HANG_TIMEOUT_S

# References that would make a browser fetch something: script/img/iframe src, link href, ES-module
# imports (circuitsvis' default display: import ... from "https://unpkg.com/..."), require.js paths.
REMOTE = re.compile(
    r"""<(?:script|img|iframe|link)\b[^>]*\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//"""
    r"""|\bimport\b[^;\n]{0,200}?\bfrom\s*["'](?:https?:)?//"""
    r"""|\bimport\s*\(\s*["'](?:https?:)?//"""
    r"""|require(?:js)?\.config\(\s*\{[^}]{0,500}?["'](?:https?:)?//""",
    re.IGNORECASE,
)


def test_remote_pattern_catches_cdn_loaders():
    """The check below is not vacuous: it flags what circuitsvis and plotly's CDN renderers emit."""
    assert REMOTE.search('<script src="https://cdn.plot.ly/plotly-2.35.2.min.js"></script>')
    assert REMOTE.search('import { render } from "https://unpkg.com/circuitsvis@1.43.2/dist/cdn/esm.js";')
    assert REMOTE.search("require.config({paths: {'plotly': 'https://cdn.plot.ly/plotly-2.35.2.min'}});")
    assert not REMOTE.search('<script type="text/javascript">var x = "https://example.org";</script>')


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kernels")
    spec = root / "mechinterp-test"
    spec.mkdir()
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "mechinterp-arith test",
                "language": "python",
            }
        )
    )
    return root


def execute(name: str, kernel_dir: Path, cwd: Path) -> tuple[nbformat.NotebookNode, float]:
    nb = nbformat.read(ANALYSES / f"{name}.ipynb", as_version=4)
    km = KernelManager(
        kernel_name="mechinterp-test", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    )
    env = {
        **os.environ,
        "MECHINTERP_ARITH_QUICK": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    client = nbclient.NotebookClient(
        nb, km=km, timeout=CELL_TIMEOUT, allow_errors=False, resources={"metadata": {"path": str(cwd)}}
    )
    t0 = time.perf_counter()
    try:
        client.execute(env=env)
    finally:  # nbclient leaves a kernel it did not start running: shut it down
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    return nb, time.perf_counter() - t0


def texts(nb, cell_index: int | None = None) -> str:
    """All text of the outputs (stream, text/plain, text/html), of one cell or of the whole notebook."""
    cells = nb.cells if cell_index is None else [nb.cells[cell_index]]
    out = []
    for cell in cells:
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                out.append(o.text)
            elif o.output_type in ("execute_result", "display_data"):
                for mime in ("text/plain", "text/html"):
                    if mime in o.data:
                        out.append(o.data[mime])
    return "\n".join(out)


def html_outputs(nb) -> list[str]:
    return [
        o.data["text/html"]
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type in ("execute_result", "display_data") and "text/html" in o.data
    ]


def code_cell(nb, needle: str) -> int:
    """Index of the first code cell whose source contains ``needle``."""
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code" and needle in c.source:
            return i
    raise AssertionError(f"no code cell contains {needle!r}")


def number(pattern: str, text: str) -> float:
    """The first number captured by ``pattern`` in ``text`` (AssertionError naming the pattern if absent)."""
    m = re.search(pattern, text)
    assert m, f"no output matches {pattern!r}"
    return float(m.group(1))


NUM = r"(-?[\d.]+(?:e-?\d+)?)"
EXPECTED = {
    # notebook -> checks on the values the executed notebook printed (quick mode: small samples)
    "01_training_curves": lambda nb: (
        re.search(r"after \d+ steps: loss [\d.]+, ID exact [\d.]+", texts(nb)),
        number(r"final snapshot \(step 1000\): ID exact " + NUM, texts(nb)) >= 0.98,
        number(r"final snapshot .*OOD exact " + NUM, texts(nb)) <= 0.05,
        number(r"final snapshot .*OOD answer = \(a mod 10\^3\) \+ \(b mod 10\^3\) " + NUM, texts(nb)) >= 0.8,
    ),
    "02_equivalence_maps": lambda nb: (
        number(r"add3, both 4-digit: \(a mod 10\^3\) \+ \(b mod 10\^3\) covers " + NUM, texts(nb)) >= 0.85,
        re.search(r"mul3, both 4-digit: .*\(a mod 10\^3\) · \(b mod 10\^3\)", texts(nb)),
    ),
    "03_probability_heatmaps": lambda nb: (
        "add3: ID 349 + 705 -> 1054" in texts(nb),
        number(r"add3: mean TV over the members " + NUM, texts(nb)) < 0.1,  # members answered like the ID input
    ),
    "04_pca_over_training": lambda nb: (
        number(r"'nearest_centroid_accuracy': " + NUM, texts(nb)) > 0.8,
        number(r"thousands digit: OOD on the equivalent cluster " + NUM, texts(nb)) > 0.9,
        number(r"thousands digit: .*on the true cluster " + NUM, texts(nb)) < 0.2,
    ),
    "05_causal_views": lambda nb: (
        number(r"last state reproduces the logits: max \|diff\| = " + NUM, texts(nb)) < 1e-4,
        texts(nb).count("CircuitsVis.render(") >= 6,  # 2 classes x (ID + 2 OOD members)
        "mechinterp-arith: circuitsvis bundle" in texts(nb),
    ),
    "07_circuit_discovery": lambda nb: (
        re.search(r"'faithfulness': 0\.9\d+", texts(nb)) is not None,
        "EAP-IG" in texts(nb) and "iia_unchanged" in texts(nb) and "iia_random_basis" in texts(nb),
    ),
    "06_circuit_query_tour": lambda nb: (
        '"id_representative": {\n  "a": 349,\n  "b": 705,\n  "prediction": 1054\n }' in texts(nb),
        number(r"'ood_answers_equal_representative': " + NUM, texts(nb)) >= 0.75,
        number(r"'ood_exact': " + NUM, texts(nb)) == 0.0,
    ),
}


def test_notebooks_present_and_in_sync():
    """Each notebook is generated from its jupytext source ``analyses/NN_name.py`` (build_notebooks.py --check)."""
    assert set(NOTEBOOKS) == set(EXPECTED), f"notebooks {NOTEBOOKS} vs checks {sorted(EXPECTED)}"
    assert sorted(p.stem for p in ANALYSES.glob("[0-9][0-9]_*.py")) == NOTEBOOKS, "a notebook without its .py source"
    r = subprocess.run(
        [sys.executable, str(ANALYSES / "build_notebooks.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    for name in NOTEBOOKS:
        nb = nbformat.reads((ANALYSES / f"{name}.ipynb").read_text(encoding="utf-8"), as_version=4)
        assert all(
            not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"
        ), f"{name}.ipynb is committed with outputs"
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert "parameters" in first.metadata.get("tags", []) and "MECHINTERP_ARITH_QUICK" in first.source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_offline(name, kernel_dir, tmp_path):
    nb, seconds = execute(name, kernel_dir, tmp_path)
    print(f"{name}: {seconds:.1f} s")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    for ok in EXPECTED[name](nb):
        assert ok, f"{name}: an expected output is missing"
    html = html_outputs(nb)
    assert html, f"{name} displayed no HTML (figures)"
    for h in html:
        m = REMOTE.search(h)
        assert m is None, f"{name} output loads from the network: {h[max(0, m.start() - 80) : m.end() + 80]!r}"
    plotly_js = sum("* plotly.js v" in h for h in html)
    figures = sum(h.count('class="plotly-graph-div"') for h in html)
    assert plotly_js == (1 if figures else 0), (
        f"{name}: plotly.js embedded {plotly_js} times for {figures} figures (want once)"
    )
    assert not list(tmp_path.iterdir()), f"{name} wrote files into its working directory"
