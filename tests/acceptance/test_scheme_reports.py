"""Acceptance: the FULL report (every section) on a model of every position scheme and format, with
no part skipped for a position reason.

A section shows a part it cannot build as a note with the reason (``report/sections/helpers.py``:
``<p class="skipped">``; the discovery section's longer-operand circuits: ``<p class="note">... no
circuit (reason)``). On these tiny untrained models a part may be skipped because the model does not
compute the digit (no clean-vs-corrupted gap for a circuit to keep); never because of the positions
(an unpadded format, position IDs the plain forward cannot take, ...).
"""

from __future__ import annotations

import html as html_module
import re

import pytest
import torch
from support import models

from mechinterp_arith import load
from mechinterp_arith.core.position_schemes import SCHEMES
from mechinterp_arith.report import ReportSettings, build_report
from mechinterp_arith.report.section_keys import SECTION_KEYS

# the reasons an untrained model gives for a skipped part: it does not compute that answer digit
MODEL_REASONS = ("does not prefer the clean answer digit", "cannot be changed alone")
# words of the reasons the positions would give (core/positions.py, core/plain_forward.py, a scheme's name)
POSITION_WORDS = re.compile(r"position|fixed-length|padded|plain forward|" + "|".join(SCHEMES), re.IGNORECASE)


@pytest.fixture(scope="module")
def scheme_checkpoints(tmp_path_factory):
    return models.scheme_checkpoints(tmp_path_factory.mktemp("scheme_reports"))


def skip_notes(section_html: str) -> list[str]:
    """The text of every skipped part of a section, and of every longer-operand digit with no circuit."""
    notes = re.findall(r'<p class="skipped">(.*?)</p>', section_html, re.S)
    notes += [n for n in re.findall(r'<p class="note">(.*?)</p>', section_html, re.S) if "no circuit" in n]
    return [html_module.unescape(re.sub(r"<[^>]+>", "", n)) for n in notes]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("fmt", list(models.SCHEME_TASKS))
def test_the_full_report_skips_no_part_for_a_position_reason(scheme, fmt, scheme_checkpoints, tmp_path):
    ckpt = load(scheme_checkpoints[scheme, fmt], device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI's default --threads 1
    try:
        result = build_report(ckpt, tmp_path, ReportSettings(n=20, quick=True), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert [s.key for s in result.sections] == list(SECTION_KEYS)  # every section, none left out
    assert not result.errors, [(s.key, s.error) for s in result.errors]
    # (a reason names the checkpoint, here after its scheme: that name is left out of the check)
    notes = {s.key: [t.replace(f"{ckpt.name}: ", "") for t in skip_notes(s.html)] for s in result.sections}
    for key, texts in notes.items():
        for text in texts:
            assert not POSITION_WORDS.search(text) and any(r in text for r in MODEL_REASONS), (key, text)
    # only the discovery section may skip (a digit this model does not compute); the others are whole
    assert {k for k, t in notes.items() if t} <= {"discovery"}, notes
    html = {s.key: s.html for s in result.sections}
    assert f"<strong>{scheme}</strong>" in html["positions"] and "<th>separability (units)</th>" in html["positions"]
    # the circuits at 3-digit operands, longer than the trained 2: found or said why not, per digit
    assert "At 3-digit operands (longer than the trained 2)" in html["discovery"]
