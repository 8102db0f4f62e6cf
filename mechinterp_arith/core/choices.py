"""The names settings take, and the bounds of sample sizes: plain Python, no torch.

The command line builds its parser from these (``--help`` and argument errors answer in a fraction
of a second, before torch or TransformerLens is imported); the modules that use them re-export
them where they are documented (``tasks.OPERATIONS``, ``model.ACTIVATIONS``,
``position_schemes.SCHEMES``, ``data.MAX_SAMPLES``, ``importer.SOURCES``, ``labels.LABEL_HELP``).

>>> OPERATIONS
('add', 'sub', 'mul', 'addmod', 'mulmod')
"""

from __future__ import annotations

OPERATIONS: tuple[str, ...] = ("add", "sub", "mul", "addmod", "mulmod")  # core/tasks.py
FORMATS: tuple[str, ...] = ("paper", "plain", "reversed")  # core/tasks.py
ACTIVATIONS = ("gelu_new", "gelu", "relu", "silu")  # MLP activations (core/model.py)
SCHEMES = ("learned", "rotary", "nope", "randomized", "abacus", "coupling")  # core/position_schemes.py
MAX_SAMPLES = 100_000_000  # larger sets do not fit in memory on the machines this runs on (core/data.py)
SOURCES: tuple[str, ...] = ("mingpt", "nanogpt")  # foreign checkpoints (core/importer.py)
DEFAULT_ACT = {"mingpt": "gelu_new", "nanogpt": "gelu"}  # minGPT: tanh GELU; nanoGPT: nn.GELU() (exact)
DEFAULT_LABEL = "units"  # core/labels.py
LABEL_HELP = (
    "a<i>, b<i> (operand digit, 0 = units), ans<k> or units (result digit), carry<k> (k >= 1), mod<j> (result mod 10^j)"
)
