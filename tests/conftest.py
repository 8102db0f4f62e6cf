import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "reference" / "exploregpt"


@pytest.fixture(scope="session")
def add3():
    from mechinterp_arith import load

    return load("add3", device="cpu")


@pytest.fixture(scope="session")
def reference_dir():
    if not (REFERENCE / "model_s2.pt").is_file():
        pytest.skip(f"the study's reference checkpoints are not at {REFERENCE}")
    return REFERENCE
