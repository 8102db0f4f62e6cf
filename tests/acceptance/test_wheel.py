"""A wheel built by ``python -m build`` carries the shipped checkpoints: installed into a fresh virtual
environment and run outside the clone, ``info add3``, ``ma.load("add3").predict`` and ``report add3``
work (the issue: a plain ``pip install CLONE`` used to lose them).

The wheel is built from a copy of the working tree (sdist first, then the wheel from the sdist, as
``python -m build`` does) without build isolation, so nothing is downloaded; the new environment
gets the wheel with ``--no-deps`` and sees this environment's packages (torch, TransformerLens, ...)
through a ``.pth`` file, never the editable install of the clone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIP = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache")


def run(argv, cwd, timeout=600) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{argv}: {r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    pytest.importorskip("build", reason="needs the `build` package (the dev extra has it)")
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*SKIP))
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(root / "dist"), str(source)], root)
    (wheel,) = (root / "dist").glob("*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root)
    python = venv / "bin" / "python"
    site = Path(
        run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root).stdout.strip()
    )
    (site / "this_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co, after the wheel
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], root)
    work = root / "elsewhere"  # outside the clone: no ./checkpoints, no source tree
    work.mkdir()
    return venv, work, wheel


def test_the_wheel_holds_the_shipped_checkpoints(installed):
    import zipfile

    _, _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("add3", "mul3", "addmod2_p100", "addmod2_p101"):
        for f in ("config.json", "metrics.json", "model.safetensors"):
            assert f"mechinterp_arith/checkpoints/{name}/{f}" in names
    assert sum("checkpoints/add3/snapshots/" in n for n in names) == 10


def test_a_wheel_install_loads_reports_and_predicts_outside_the_clone(installed):
    venv, work, _ = installed
    python, cli = str(venv / "bin" / "python"), str(venv / "bin" / "mechinterp-arith")
    probe = (
        "import json, mechinterp_arith as ma; c = ma.load('add3', device='cpu'); "
        "print(json.dumps({'module': ma.__file__, 'path': str(c.path), 'answers': c.predict([349, 1349], [705, 705]).tolist()}))"
    )
    found = json.loads(run([python, "-c", probe], work).stdout)
    assert found["answers"] == [1054, 1054]
    assert str(venv) in found["module"] and str(REPO) not in found["module"]  # the wheel's copy, not the clone
    assert found["path"].startswith(str(venv)) and found["path"].endswith("mechinterp_arith/checkpoints/add3")
    info = json.loads(run([cli, "info", "add3", "--json"], work).stdout)
    assert info["task"]["name"] == "add3" and info["snapshot_steps"] == list(range(100, 1001, 100))
    report = json.loads(run([cli, "report", "add3", "--out", "report", "--quick", "--json"], work).stdout)
    statuses = {s["key"]: s["status"] for s in report["sections"]}
    assert statuses and all(status != "error" for status in statuses.values()), statuses
    page = (work / "report" / "index.html").read_text()
    assert "add3" in page and 'src="http' not in page  # offline: no script or style fetched
