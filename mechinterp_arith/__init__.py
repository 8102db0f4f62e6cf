"""mechinterp-arith: mechanistic interpretability of arithmetic transformers (TransformerLens 4).

>>> import mechinterp_arith as ma
>>> ckpt = ma.load("add3")                        # shipped: 3-digit addition, the study's setting
>>> ckpt.predict([349, 1349], [705, 705]).tolist()   # ID, and OOD answered as (a mod 1000) + b
[1054, 1054]

Layers (docs/architecture.md): ``core`` (tasks, positions, data, model, decoding, evaluation,
checkpoints, training, import) <- ``analysis`` (representations, equivalence, causal) <- ``sweep``
(grids of training runs) <- ``report`` and ``cli``. Every public name loads its module on first use
(``ma.load`` imports the core, ``ma.residual_pca`` the PCA module), so ``import mechinterp_arith``
imports neither torch nor TransformerLens and stays quick.
"""

from __future__ import annotations

from .core.lazy import lazy_names
from .core.version import __version__

# public name -> module that defines it, imported on first access (PEP 562): `import mechinterp_arith`
# and the command line's `--help` import neither torch nor TransformerLens
_MODULES = {"data": "core.data"}  # public modules
_LAZY = {
    **_MODULES,
    "Checkpoint": "core.checkpoint",
    "CheckpointError": "core.checkpoint",
    "load": "core.checkpoint",
    "save_checkpoint": "core.checkpoint",
    "generate": "core.decoding",
    "EnsembleResult": "core.ensemble",
    "train_ensemble": "core.ensemble",
    "accuracy": "core.evaluate",
    "accuracy_by_length": "core.evaluate",
    "ModelConfig": "core.model",
    "build_model": "core.model",
    "Task": "core.tasks",
    "train": "core.train",
    "TrainConfig": "core.train_config",
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
    "score_edges": "analysis.discovery",
    "select_circuit": "analysis.discovery",
    "verify_circuit": "analysis.discovery",
    "Circuit": "analysis.discovery",
    "compare_circuits": "analysis.circuit_comparison",
    "seed_similarity": "analysis.circuit_comparison",
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


__getattr__, __dir__ = lazy_names(__name__, _LAZY, _MODULES)


__all__ = ["__version__", *_LAZY]
