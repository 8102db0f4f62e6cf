"""mechinterp-arith: mechanistic interpretability of arithmetic transformers (TransformerLens 4).

>>> import mechinterp_arith as ma
>>> ckpt = ma.load("add3")                        # shipped: 3-digit addition, the study's setting
>>> ckpt.predict([349, 1349], [705, 705]).tolist()   # ID, and OOD answered as (a mod 1000) + b
[1054, 1054]

The core (tasks, data, model, training, evaluation, checkpoints) is imported eagerly; analysis
entry points load their module on first use, so ``import mechinterp_arith`` stays quick.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from . import data  # noqa: E402
from .checkpoint import Checkpoint, CheckpointError, load, save_checkpoint  # noqa: E402
from .evaluate import accuracy, accuracy_by_length, generate  # noqa: E402
from .model import ModelConfig, build_model  # noqa: E402
from .tasks import Task  # noqa: E402
from .train import TrainConfig, train  # noqa: E402

# public name -> module that defines it (imported on first access)
_LAZY = {
    "import_checkpoint": "importer",
    "analyse_checkpoint": "equivalence",
    "find_relation": "equivalence",
    "relation_maps": "equivalence_plots",
    "class_probability_figure": "equivalence_plots",
    "residual_pca": "pca",
    "pca_sweep": "pca",
    "ood_projection": "projection",
    "pca_dynamics": "dynamics",
    "logit_lens": "logit_lens",
    "id_ood_logit_lens": "logit_lens",
    "match_activations": "matching",
    "match_ood": "matching",
    "patch_sweep": "patching",
    "circuit": "circuits",
    "digit_sites": "circuits",
    "head_operand_map": "circuits",
    "ood_sites": "circuits",
    "explain": "circuits",
    "build_report": "report",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Checkpoint",
    "CheckpointError",
    "ModelConfig",
    "Task",
    "TrainConfig",
    "accuracy",
    "accuracy_by_length",
    "build_model",
    "data",
    "generate",
    "load",
    "save_checkpoint",
    "train",
    *_LAZY,
]
