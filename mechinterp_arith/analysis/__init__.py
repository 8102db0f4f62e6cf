"""The analysis layer: representations, equivalence relations and causal analyses of a checkpoint.

Representations (``activations``, ``pca``, ``projection``, ``dynamics``, ``logit_lens``,
``matching``), equivalence relations (``equivalence``, ``equivalence_plots``) and causal analyses
(``prompt_pairs``, ``metrics``, ``patching``, ``circuits``). Built on ``core`` only; front ends
(``report``, ``cli``) format what these return and compute nothing of their own.
"""
