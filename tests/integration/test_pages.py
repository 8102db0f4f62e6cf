"""The page fixes of issue 22: the lab page wears the reports' header, navigation and footer, one
colour per scheme (its seeds' dots too), whole-digit ticks and a timing table; footers name the
embedded plotly.js; the section table keeps its columns; the PCA snapshot legend sits below the
panels; sweep progress counts runs and says what it is doing from the start.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mechinterp_arith.report.assets import plotly_js_version
from mechinterp_arith.report.length_lab import MEASURES, build_length_lab_page, lab_rows, measure_figure

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "analyses" / "results" / "length_generalisation.json"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_the_footer_names_the_embedded_plotly_js_not_the_python_package():
    from plotly.offline import get_plotlyjs

    header = get_plotlyjs()[:200]
    assert f"plotly.js v{plotly_js_version()}" in header


def test_the_lab_page_is_a_report_page_with_a_timing_table(tmp_path):
    page = build_length_lab_page(LAB, tmp_path / "lab").read_text()
    assert "<nav" in page and "<footer" in page and "<h1" in page  # the reports' template
    keys = re.findall(r'<section id="[^"]+" class="report-section" data-key="([^"]+)" data-status="ok"', page)
    assert keys == ["comparison", *MEASURES, "circuits", "timing"]  # circuits_by_length.json sits next to LAB
    assert f"plotly.js {plotly_js_version()} (of plotly" in page
    timing = page.split('data-key="timing"', 1)[1].split("</section>", 1)[0]
    rows = lab_rows(LAB)
    for scheme in rows["scheme"].unique():
        assert f"<td>{scheme}</td>" in timing
    mean = rows.groupby(["scheme", "seed"])["train_seconds"].first().groupby(level=0).mean()
    assert f"{mean.iloc[0]:.1f}" in timing  # the recorded training seconds, averaged over seeds
    assert "load average while training" in timing


def test_the_lab_page_shows_the_circuits_by_length(tmp_path):
    data = json.loads((LAB.parent / "circuits_by_length.json").read_text())
    page = build_length_lab_page(LAB, tmp_path / "lab").read_text()
    part = page.split('data-key="circuits"', 1)[1].split("</section>", 1)[0]
    for scheme, head in data["headline"].items():
        median = head["reuse_weighted_vs_id_analogue"]["median"]
        assert f"<td>{scheme}</td>" in part and f"<td>{median:.3f}</td>" in part
    # the side-by-side figure: learned and coupled, 3-digit digit 2 and 6-digit digit 4 (seed 0)
    for scheme in data["headline"]:
        for m, k in ((3, 2), (6, 4)):
            assert f"{scheme}, {m}-digit operands, answer digit {k}" in part
    with pytest.raises(ValueError, match="not the results of analyses/circuits_by_length.py"):
        build_length_lab_page(LAB, tmp_path / "bad", circuits=LAB)


def test_each_scheme_has_one_colour_for_its_line_and_its_seeds_and_ticks_are_whole_digits():
    rows = lab_rows(LAB)
    fig = measure_figure(rows, "exact")
    colors = {}
    for trace in fig.data:
        scheme = trace.legendgroup
        color = trace.line.color if trace.mode == "lines+markers" else trace.marker.color
        colors.setdefault(scheme, set()).add(color)
        if trace.mode == "lines+markers":
            assert trace.marker.color == color
    assert all(len(c) == 1 for c in colors.values()), colors  # a line and its dots share a colour
    assert len({next(iter(c)) for c in colors.values()}) == rows["scheme"].nunique() == 6  # no two schemes share one
    ticks = list(fig.layout.xaxis.tickvals)
    assert ticks == sorted(int(m) for m in rows["m"].unique()) and all(float(t).is_integer() for t in ticks)


def test_the_section_table_keeps_a_gap_before_the_status(capsys):
    from mechinterp_arith.cli.report_cmd import print_result
    from mechinterp_arith.report.build import ReportResult, SectionResult

    titles = ["Model card", "Activation matching: OOD inputs vs their ID representatives"]  # 59 characters
    sections = [SectionResult(t.lower()[:5], t, t, "", "ok", 1.0) for t in titles]
    print_result(ReportResult(Path("x/index.html"), 10, 1.0, sections), as_json=False)
    lines = capsys.readouterr().out.splitlines()[:2]
    assert all(re.search(r"\S  +ok +1\.0 s$", line) for line in lines), lines
    assert len({line.index(" ok ") for line in lines}) == 1  # one column


def test_the_pca_snapshot_legend_sits_below_the_panels(add3):
    from mechinterp_arith.report import ReportContext, ReportSettings, run_section

    section = run_section("pca", ReportContext(add3, ReportSettings(quick=True, n=60)))
    assert section.status == "ok", section.error
    snapshot_figures = [part for part in section.html.split("Training dynamics", 1)[1].split("Plotly.newPlot")[1:]]
    assert any('"legend":{"orientation":"h"' in part for part in snapshot_figures)


SWEEP = """
[settings]
digits = 1
n_layers = 1
n_heads = 2
d_model = 16
steps = 10
batch_size = 16
eval_every = 10
eval_n = 20
[grid]
positional = ["learned", "rotary"]
seed = [0, 1]
[analyses]
equivalence = false
n = 20
"""

ON_A_TERMINAL = """
import io, sys
class Terminal(io.StringIO):
    def isatty(self):
        return True
err = sys.stderr = Terminal()
from mechinterp_arith.cli import main
code = main(sys.argv[1:])
sys.__stderr__.write(err.getvalue())
sys.exit(code)
"""


def test_sweep_progress_counts_runs_and_speaks_from_the_start(tmp_path):
    (tmp_path / "spec.toml").write_text(SWEEP)
    argv = ["sweep", str(tmp_path / "spec.toml"), "--out", str(tmp_path / "s"), "--workers", "1"]
    r = subprocess.run([sys.executable, "-c", ON_A_TERMINAL, *argv], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    err = r.stderr
    assert err.startswith("mechinterp-arith sweep: sweep ")  # the start line, before torch loads
    assert "0 already finished; starting the workers" in err
    assert "4 runs in 2 units on 1 local slots" in err  # two seed groups of two runs
    assert re.search(r"training 2 failed 0", err)  # a unit of two seeds counts as two runs training
    assert "done 4 training 0 failed 0" in err.replace("\r", "\n")
    assert (
        json.loads(
            (
                tmp_path / "s" / "records" / f"{sorted(p.stem for p in (tmp_path / 's' / 'runs').iterdir())[0]}.json"
            ).read_text()
        )["status"]
        == "done"
    )
