"""The report in a real browser: headless Chromium opens the page with the network blocked.

Checks: no console output (errors, warnings, failed loads), no uncaught script error, every plotly
figure and every circuitsvis attention view has rendered DOM content, and a screenshot is saved
(to ``$MECHINTERP_ARITH_ARTIFACTS`` when set, else the test's temporary directory).

Needs Chromium (Debian: ``apt-get install -y chromium``); skips, saying so, only when none is found.
No Python browser driver and nothing downloaded at run time: Chromium's own ``--dump-dom`` and
``--screenshot`` modes, with console messages read from its ``--enable-logging=stderr`` output.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from support import HANG_TIMEOUT_S
from support.report_page import index_html, quick_report
from support.sweeps import tiny_sweep

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless_shell")
TIMEOUT_S = HANG_TIMEOUT_S


def find_browser() -> str | None:
    """``$CHROME_BIN`` / ``$CHROMIUM`` when set, else the first Chromium-family browser on PATH."""
    for var in ("CHROME_BIN", "CHROMIUM"):
        if os.environ.get(var) and shutil.which(os.environ[var]):
            return shutil.which(os.environ[var])
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def browser():
    exe = find_browser()
    if exe is None:
        pytest.skip(
            "no Chromium found (install Debian's chromium package, or set CHROME_BIN); the browser test cannot run here"
        )
    return exe


def run_browser(exe: str, page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    """One headless Chromium run on a local file, with every network host unresolvable."""
    args = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--mute-audio",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=15000",
        *mode,
        page.resolve().as_uri(),
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S)


def console_lines(stderr: str) -> list[str]:
    """What the page wrote to the console (``console.*`` calls, uncaught errors, failed loads)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def rendered(browser, tmp_path_factory):
    result, html = quick_report()
    proc = run_browser(browser, result.path, tmp_path_factory.mktemp("chromium-profile"), "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return html, proc.stdout, proc.stderr


def test_no_console_errors(rendered):
    _, dom, stderr = rendered
    assert console_lines(stderr) == []
    assert re.search(r'<html[^>]*data-js-errors="0"', dom), "the page recorded an uncaught script error"
    assert re.search(r'<html[^>]*data-report-ready="1"', dom), "DOMContentLoaded never ran"


def test_every_view_and_plot_rendered(rendered):
    html, dom, _ = rendered
    source = index_html(html).inside
    after = index_html(dom).inside
    views = [i for i, info in source.items() if "cv-attention" in info["class"].split()]
    plots = [i for i in source if re.fullmatch(r"plot-\d+", i)]
    assert len(views) == 6 and len(plots) >= 13  # training, accuracy and the analysis sections' figures
    for i in views:
        assert source[i]["tags"] == [], "attention containers start empty: content must come from circuitsvis"
        assert "canvas" in after[i]["tags"] and len(after[i]["tags"]) > 20, f"{i} did not render"
    for i in plots:
        assert "main-svg" in after[i]["classes"] and after[i]["tags"].count("path") > 5, f"{i} did not render"


@pytest.fixture(scope="module")
def sweep_page(tmp_path_factory):
    from mechinterp_arith.report.sweep_page import build_sweep_report

    _, sweep = tiny_sweep()
    result = build_sweep_report(sweep.sweep_dir, tmp_path_factory.mktemp("sweep-report"))
    assert not result.errors
    return result.path


def test_sweep_page_renders_offline(browser, sweep_page, tmp_path):
    """The sweep report: the same checks (no console output, no script error, every figure drawn)."""
    proc = run_browser(browser, sweep_page, tmp_path / "profile", "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert console_lines(proc.stderr) == []
    assert re.search(r'<html[^>]*data-js-errors="0"', proc.stdout)
    source = index_html(sweep_page.read_text(encoding="utf-8")).inside
    after = index_html(proc.stdout).inside
    plots = [i for i in source if re.fullmatch(r"plot-\d+", i)]
    assert len(plots) == 3  # by length, equivalence vs OOD exact, ID accuracy over training
    for i in plots:
        assert "main-svg" in after[i]["classes"] and after[i]["tags"].count("path") > 5, f"{i} did not render"


def test_screenshot(browser, tmp_path, tmp_path_factory):
    result, _ = quick_report()
    out_dir = Path(os.environ.get("MECHINTERP_ARITH_ARTIFACTS") or tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "report-screenshot.png"
    png.unlink(missing_ok=True)
    proc = run_browser(
        browser,
        result.path,
        tmp_path_factory.mktemp("chromium-profile"),
        f"--screenshot={png}",
        "--window-size=1400,5000",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert console_lines(proc.stderr) == []
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1400, 5000)
    assert len(data) > 150_000, "a nearly blank page compresses to far less"
    print(f"screenshot: {png}")


def test_console_check_catches_errors(browser, tmp_path):
    """The checks above can fail: a page with an uncaught error and a blocked fetch is caught."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><body><img src="https://example.com/x.png">'
        "<script>undefinedFunction();</script></body></html>"
    )
    proc = run_browser(browser, page, tmp_path / "profile", "--dump-dom")
    lines = console_lines(proc.stderr)
    assert any("undefinedFunction is not defined" in line for line in lines), proc.stderr[-2000:]
