"""mechinterp-arith: mechanistic interpretability of arithmetic transformers (TransformerLens 4).

>>> import mechinterp_arith as ma
>>> ckpt = ma.load("add3")                        # shipped: 3-digit addition, the study's setting
>>> ckpt.predict([349, 1349], [705, 705]).tolist()   # ID, and OOD answered as (a mod 1000) + b
[1054, 1054]
"""

__version__ = "0.1.0"

from .checkpoint import Checkpoint, CheckpointError, load, save_checkpoint  # noqa: E402
from .model import ModelConfig, build_model  # noqa: E402
from .tasks import Task  # noqa: E402
from .train import TrainConfig, train  # noqa: E402
from . import data  # noqa: E402
from .evaluate import accuracy, accuracy_by_length, generate  # noqa: E402

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
]
