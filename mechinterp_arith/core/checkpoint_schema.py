"""The schema of a checkpoint's JSON files, checked key by key: ``config.json`` and ``metrics.json``.

``config.json`` is one object::

    format_version   1
    package_version  the version that wrote it (a string)
    task             a Task (core/tasks.py): op, digits, format, width, modulus, pad
    model            a ModelConfig (core/model.py)
    training         a TrainConfig (core/train_config.py), or {} for an imported model
    command          the command line that reproduces it, or null
    source           imported models only: file, sha256, kind, ... (core/importer.py)
    trained_on       optional: a note on the hardware it was trained on
    runtime          trained here: threads, torch version, device, the training forward (core/train_loop.py)
    ensemble_seeds   trained in a seed ensemble: the seeds trained together (core/ensemble.py)

``metrics.json`` is ``{"history": [row, ...]}``: one object per evaluation, ``step`` an integer
>= 0 that increases row by row, every other value a number or null (``loss``, ``lr``,
``elapsed_s`` >= 0; ``id_exact``, ``ood_exact`` in [0, 1]).

Types and ranges of the sections come from the classes themselves (their ``from_dict`` rejects
unknown keys; ``__post_init__`` checks types and ranges), so the file schema and the Python API
cannot drift apart. Every problem is a ValueError naming the key: ``model: d_model must be an
integer, got 48.0``; ``core/checkpoint.py`` prefixes the file.

>>> check_config({"format_version": 1, "task": {"op": "add"}, "model": {"d_model": 48.0}})
Traceback (most recent call last):
ValueError: model: d_model must be an integer, got 48.0
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

from .model import ModelConfig
from .tasks import Task
from .train_config import TrainConfig

FORMAT_VERSION = 1
CONFIG_KEYS = (
    "format_version",
    "package_version",
    "task",
    "model",
    "training",
    "command",
    "source",
    "trained_on",
    "runtime",
    "ensemble_seeds",
)
_JSON_TYPES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}
_METRIC_RANGES = {"loss": (0, None), "lr": (0, None), "elapsed_s": (0, None), "id_exact": (0, 1), "ood_exact": (0, 1)}

T = TypeVar("T")


def parse_json(text: str) -> Any:
    """``json.loads`` that reads NaN and infinities (written by version 0.1.0) as null."""
    return json.loads(text, parse_constant=lambda name: None)


def _kind(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _require(value: object, types: tuple[type, ...], where: str) -> None:
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        wanted = " or ".join(_JSON_TYPES[t] for t in types)
        raise ValueError(f"{where} must be {wanted}, got {_kind(value)} {value!r}"[:300])


def _section(config: dict[str, Any], key: str, build: Callable[[dict[str, Any]], T]) -> T:
    _require(config[key], (dict,), key)
    try:
        return build(config[key])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{key}: {e}") from None


def check_config(config: Any) -> tuple[Task, ModelConfig, TrainConfig | None]:
    """The task, model config and training config (None for an import) of a ``config.json`` object."""
    _require(config, (dict,), "the file")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(CONFIG_KEYS)})")
    for key in ("format_version", "task", "model"):
        if key not in config:
            raise ValueError(f"no {key!r} key")
    _require(config["format_version"], (int,), "format_version")
    if config["format_version"] != FORMAT_VERSION:
        raise ValueError(f"format_version {config['format_version']} is not one this version reads ({FORMAT_VERSION})")
    for key, types in (
        ("package_version", (str,)),
        ("command", (str, type(None))),
        ("source", (dict,)),
        ("trained_on", (str,)),
        ("training", (dict,)),
        ("runtime", (dict,)),
        ("ensemble_seeds", (list,)),
    ):
        if key in config:
            _require(config[key], types, key)
    task = _section(config, "task", Task.from_dict)
    model = _section(config, "model", ModelConfig.from_dict)
    training = _section(config, "training", TrainConfig.from_dict) if config.get("training") else None
    if model.d_vocab != task.d_vocab or model.n_ctx < task.n_ctx:
        raise ValueError(
            f"model (vocab {model.d_vocab}, context {model.n_ctx}) does not fit task {task.name} "
            f"in format {task.format!r} (vocab {task.d_vocab}, context {task.n_ctx})"
        )
    return task, model, training


def check_history(rows: Any, where: str = "history") -> list[dict[str, Any]]:
    """``rows`` if it is a list of metric rows (see the module docstring), else a ValueError naming the row."""
    _require(rows, (list,), where)
    last = -1
    for i, row in enumerate(rows):
        at = f"{where}[{i}]"
        _require(row, (dict,), at)
        if "step" not in row:
            raise ValueError(f"{at} has no 'step'")
        _require(row["step"], (int,), f"{at}.step")
        if row["step"] <= last:
            raise ValueError(f"{at}.step {row['step']} does not follow step {last}")
        last = row["step"]
        for key, value in row.items():
            if value is None or key == "step":
                continue
            _require(value, (int, float), f"{at}.{key}")
            low, high = _METRIC_RANGES.get(key, (None, None))
            if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
                raise ValueError(f"{at}.{key} = {value!r} is out of range")
    return rows


def check_metrics(metrics: Any) -> list[dict[str, Any]]:
    """The history of a ``metrics.json`` object."""
    _require(metrics, (dict,), "the file")
    unknown = sorted(set(metrics) - {"history"})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: history)")
    return check_history(metrics.get("history", []))
