"""Shared fixtures; every test is marked with its tier, the folder it lives in:

- ``unit``: one function or class on small inputs (seconds);
- ``integration``: trains tiny models, runs analyses, CLI commands, sweeps, fault injection;
- ``acceptance``: what a user runs: every task through every analysis, notebooks, the report in a
  browser, the shipped checkpoints and the study's reference models.

``python -m pytest -q`` (the README's command) runs all three and the doctests; ``-m unit`` one tier.
"""

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "reference" / "exploregpt"
TIERS = ("unit", "integration", "acceptance")


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``), as
    the CLI runs: tiny models lose more to a second thread on a shared machine than they gain, and
    results depend on the count."""
    from mechinterp_arith.core.threads import thread_limit

    with thread_limit(1):
        yield


@pytest.fixture(scope="session")
def add3():
    from mechinterp_arith import load

    return load("add3", device="cpu")


@pytest.fixture(scope="session")
def reference_dir():
    if not (REFERENCE / "model_s2.pt").is_file():
        pytest.skip(f"the study's reference checkpoints are not at {REFERENCE}")
    return REFERENCE
