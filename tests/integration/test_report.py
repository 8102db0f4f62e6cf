"""The report page: self-contained (no network references, each bundle once), small, and its numbers."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from support.report_page import index_html, quick_report

from mechinterp_arith import data
from mechinterp_arith.analysis.attention import class_members, token_labels
from mechinterp_arith.cli import main
from mechinterp_arith.core.decoding import generate, greedy_matches
from mechinterp_arith.core.numbers import as_operands
from mechinterp_arith.report import SECTIONS, ReportContext, ReportSettings, run_section
from mechinterp_arith.report.sections.accuracy import length_grid_rates

MAX_BYTES = 10 * 1024 * 1024
# the sections that show plotly figures on add3 (snapshots present, OOD lengths 4 and 5 fit the format)
PLOTTING = (
    "training",
    "accuracy",
    "positions",
    "equivalence",
    "pca",
    "logit_lens",
    "matching",
    "patching",
    "discovery",
)


def plot_divs(html: str) -> list[str]:
    return re.findall(r'<div id="(plot-\d+)"', html)


def drawn_plots(html: str) -> dict[str, str]:
    """Element id -> the first character of the trace list each ``Plotly.newPlot`` call draws there."""
    return dict(re.findall(r'Plotly\.newPlot\(\s*"(plot-\d+)",\s*\[\s*(.)', html))


@pytest.fixture(scope="module")
def page():
    return quick_report()


def test_page_is_self_contained(page):
    _result, html = page
    parsed = index_html(html)
    refs = [
        (tag, k, v) for tag, attrs in parsed.attrs for k, v in attrs.items() if k in ("src", "href", "srcset", "data")
    ]
    assert not [r for r in refs if re.match(r"\s*(https?:)?//", r[2], re.I)], refs
    assert not [r for r in refs if r[1] == "src"], "every script is inline"  # nothing to fetch at all
    assert all(v.startswith("#") for _, _, v in refs), refs  # only in-page anchors
    assert "unpkg.com" not in html
    body = html.split("</head>", 1)[1]  # everything but the two embedded bundles
    assert not re.findall(r"https?://", body)


def test_each_bundle_embedded_once_and_page_small(page):
    result, html = page
    assert html.count("* plotly.js v") == 1
    assert html.count("var CircuitsVis=") == 1
    n_views = html.count('class="cv-attention"')
    assert n_views == 6  # 2 ID examples x (ID + 2 OOD members)
    # every figure's element exists once and is drawn once, with at least one trace: no orphan, no empty plot
    divs, drawn = plot_divs(html), drawn_plots(html)
    assert divs and len(set(divs)) == len(divs) and sorted(divs) == sorted(drawn)
    assert all(first != "]" for first in drawn.values()), drawn
    assert result.size_bytes == len(html.encode("utf-8")) < MAX_BYTES
    assert not result.errors, [s.error for s in result.errors]
    assert [s.key for s in result.sections] == list(SECTIONS)


def test_section_statuses_and_labels(page):
    result, html = page
    status = {s.key: s.status for s in result.sections}
    assert set(status.values()) == {"ok"}, status
    # add3 supports every analysis: no part of any section is skipped, none failed
    for s in result.sections:
        assert 'class="skipped"' not in s.html and 'class="section-error"' not in s.html, s.key
    assert "mechinterp-arith train --task add --digits 3" in html  # the reproducing command
    assert "0034900705450100" in html  # the format example


def _text(section_html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<script.*?</script>|<[^>]+>", " ", section_html, flags=re.S))


def test_analysis_sections_show_real_content(page):
    result, _ = page
    html = {s.key: s.html for s in result.sections}
    for key in PLOTTING:
        assert plot_divs(html[key]) and set(plot_divs(html[key])) == set(drawn_plots(html[key])), key
    eq = _text(html["equivalence"])
    # the best relation on every OOD set is the study's mod-1000 rule, with its coverage and interval
    for label in ("both 4-digit", "one 4-digit", "both 5-digit", "one 5-digit"):
        m = re.search(re.escape(label) + r" (\d+) ([\d.]+) (.+?) ([\d.]+) \[([\d.]+), ([\d.]+)\]", eq)
        assert m and m.group(3) == "(a mod 10^3) + (b mod 10^3)", (label, eq[:600])
        assert float(m.group(2)) < 0.05 and float(m.group(5)) <= float(m.group(4)) <= float(m.group(6))
    assert float(re.search(r"both 4-digit \d+ [\d.]+ \(a mod 10\^3\) \+ \(b mod 10\^3\) ([\d.]+)", eq).group(1)) > 0.8
    assert "Counter-examples" in eq and "TV 10^3" in eq
    pca = _text(html["pca"])
    row = re.search(r"ans3 12 \d+ \d+ ([\d.]+) ([\d.]+) ([\d.]+)", pca)  # thousands digit: equivalent vs true
    assert row and float(row.group(2)) > 0.8 > 0.3 > float(row.group(3)), pca[:1500]
    assert "3 training snapshots" in pca
    lens = _text(html["logit_lens"])
    assert re.search(r"id: true digit( 1\.000){6}", lens), lens
    circuit = _text(html["circuits"])
    assert re.search(r"10\^0 (L\dH\d reads [ab]\d;? ?)+", circuit), circuit[:800]
    patch = _text(html["patching"])
    assert "OOD to ID patching" in patch and "answer digit 1" in patch
    found = _text(html["discovery"])
    rows = re.findall(r"10\^(\d) (\d+) \(([\d.]+)%\) ([\d.]+) \[([\d.]+), ([\d.]+)\]", found)
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3], found[:800]
    assert all(float(r[2]) <= 10 and float(r[3]) > 0.8 for r in rows), rows  # small and faithful (quick sizes)
    assert "MakeCarry1" in found and "BaseAdd" in found


def test_teacher_forced_match_equals_greedy_generation(add3):
    task = add3.task
    a, b = data.ood_both(task, 4, 300, seed=3)
    a = np.concatenate([a, as_operands([349, 1349, 5349])])
    b = np.concatenate([b, as_operands([705, 705, 2705])])
    predicted = generate(add3.model, task, a, b).answers
    exact, rule = greedy_matches(add3.model, task, a, b, [task.apply(a, b), task.equivalent_answer(a, b)])
    assert np.array_equal(exact.numpy(), predicted == task.apply(a, b))
    assert np.array_equal(rule.numpy(), predicted == task.equivalent_answer(a, b))
    assert rule[-3:].tolist() == [True, True, True]  # 349+705, 1349+705, 5349+2705 all answered 1054
    assert rule[:-3].float().mean() > 0.9 and exact[:-3].float().mean() < 0.05


def test_length_grid_numbers(add3):
    grid = length_grid_rates(ReportContext(add3, ReportSettings(n=40, seed=1)))
    E, R = grid["exact"], grid["equivalent"]
    assert grid["lengths"] == [1, 2, 3, 4, 5]
    assert (E[:3, :3] == 1.0).all()  # in distribution: every sum right
    assert E[3:, 3:].max() < 0.1  # both operands longer: wrong...
    assert R[3, 3] > 0.85  # ...but answered as (a mod 1000) + (b mod 1000)


def test_class_members_and_labels(add3):
    task = add3.task
    members = class_members(task, 1349, 705)
    assert members[0] == (349, 705) and len(members) == 3 and members == class_members(task, 349, 705)
    for a, b in members[1:]:  # OOD members of the class: both operands longer, same residues
        assert a >= 1000 and b >= 1000 and (a % 1000, b % 1000) == (349, 705)
    labels = token_labels(task, torch.tensor(task.encode(349, 705))[: task.n_ctx])
    assert labels[:5] == ["a4:0", "a3:0", "a2:3", "a1:4", "a0:9"] and labels[10:12] == ["ans0:4", "ans1:5"]


def test_failing_section_becomes_an_error_box(add3, monkeypatch):
    def broken(ctx):
        raise RuntimeError("deliberately broken")

    monkeypatch.setitem(SECTIONS, "model", broken)
    out = run_section("model", ReportContext(add3))
    assert out.status == "error" and "deliberately broken" in out.html and "RuntimeError" in out.error


def test_cli_subset_and_bad_input(tmp_path, capsys):
    assert main(["report", "add3", "--out", str(tmp_path), "--sections", "model", "--quiet"]) == 0
    html = (tmp_path / "index.html").read_text()
    assert 'data-key="model"' in html and 'data-key="training"' not in html
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, nothing left behind
    assert main(["report", "add3", "--out", str(tmp_path), "--sections", "nope"]) == 2
    assert "unknown report section(s) nope" in capsys.readouterr().err
    assert main(["report", "add3", "--out", str(tmp_path), "--n", "0"]) == 2
