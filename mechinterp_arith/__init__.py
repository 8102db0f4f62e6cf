"""mechinterp-arith: mechanistic interpretability of arithmetic transformers (TransformerLens 4).

>>> import mechinterp_arith as ma
>>> ckpt = ma.load("add3")                        # shipped: 3-digit addition, the study's setting
>>> ckpt.predict([349, 1349], [705, 705]).tolist()   # ID, and OOD answered as (a mod 1000) + b
[1054, 1054]

Layers (docs/architecture.md): ``core`` (tasks, positions, data, model, decoding, evaluation,
checkpoints, training, import) <- ``analysis`` (representations, equivalence, causal) <- ``sweep``
(grids of training runs) <- ``report`` and ``cli``. The core is imported eagerly; analysis entry points load their module on first use,
so ``import mechinterp_arith`` stays quick.
"""

from __future__ import annotations

import importlib

from .core import data
from .core.checkpoint import Checkpoint, CheckpointError, load, save_checkpoint
from .core.decoding import generate
from .core.ensemble import EnsembleResult, train_ensemble
from .core.evaluate import accuracy, accuracy_by_length
from .core.model import ModelConfig, build_model
from .core.tasks import Task
from .core.train import train
from .core.train_config import TrainConfig
from .core.version import __version__

# public name -> module that defines it (imported on first access)
_LAZY = {
    "import_checkpoint": "core.importer",
    "answer_rates": "core.evaluate",
    "snapshot_scores": "core.evaluate",
    "analyse_checkpoint": "analysis.equivalence",
    "find_relation": "analysis.equivalence",
    "relation_maps": "analysis.equivalence_plots",
    "class_probability_figure": "analysis.equivalence_plots",
    "residual_pca": "analysis.pca",
    "pca_each_site": "analysis.pca",
    "ood_projection": "analysis.projection",
    "study_pca": "analysis.projection",
    "pca_dynamics": "analysis.dynamics",
    "logit_lens": "analysis.logit_lens",
    "id_ood_logit_lens": "analysis.logit_lens",
    "match_activations": "analysis.matching",
    "match_ood": "analysis.matching",
    "patch_each_site": "analysis.patching",
    "circuit_heads": "analysis.circuits",
    "class_attention": "analysis.attention",
    "digit_sites": "analysis.circuits",
    "head_operand_map": "analysis.circuits",
    "ood_sites": "analysis.circuits",
    "explain": "analysis.circuits",
    "load_sweep": "sweep.results",
    "run_sweep": "sweep.runner",
    "load_spec": "sweep.spec",
    "discover": "analysis.discovery",
    "attribute": "analysis.attribution",
    "attribution_sites": "analysis.attribution",
    "attribution_agreement": "analysis.attribution",
    "subtask_tags": "analysis.subtasks",
    "node_necessity": "analysis.subtasks",
    "extra_digit_interchange": "analysis.interchange",
    "units_digit_das": "analysis.interchange",
    "build_report": "report",
    "build_sweep_report": "report",
    # deprecated names, kept for notebooks that use them (each warns and calls its new name)
    "circuit": "analysis.circuits",  # -> circuit_heads
    "patch_sweep": "analysis.patching",  # -> patch_each_site
    "pca_sweep": "analysis.pca",  # -> pca_each_site
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
    "__version__",
    "Checkpoint",
    "CheckpointError",
    "EnsembleResult",
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
    "train_ensemble",
    *_LAZY,
]
