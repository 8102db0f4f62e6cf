"""The settings of one run of a sweep: one flat mapping of keys, resolved to the core's configs, and its id.

A run is described by flat keys (what a sweep spec's ``[settings]``, ``[grid]`` and ``[[runs]]``
hold): the task (``task digits format width modulus pad bos``), the model (``size`` or ``n_layers
n_heads d_model d_mlp act_fn positional``), ``seed`` (model initialisation *and* batch order) and
every training option of :class:`~mechinterp_arith.core.train_config.TrainConfig` by its own name
(``steps lr batch_size ... data_seed``). :func:`resolve` checks every value's type and builds the
:class:`RunSettings`, whose :attr:`~RunSettings.run_id` is derived from the fully resolved settings.

>>> a = resolve({"task": "add", "digits": 2, "size": "gpt-nano", "seed": 1, "steps": 300})
>>> b = resolve({"steps": 300, "seed": 1, "digits": 2, "n_layers": 3, "n_heads": 3, "d_model": 48})
>>> a.run_id == b.run_id, a.run_id.startswith("add2-learned-s1-")
(True, True)
>>> a.group_id == resolve({**a.flat, "seed": 7}).group_id    # runs differing only in seed share a group
True
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import types
import typing
from dataclasses import dataclass, fields
from functools import cached_property

from ..core.model import ModelConfig
from ..core.tasks import Task
from ..core.train_config import BEFORE_THE_KEY, OFF, OFF_WHEN_NONE, TrainConfig, with_scheme_defaults

# minGPT's named sizes: (n_layers, n_heads, d_model); d_mlp defaults to 4 * d_model
SIZES = {"gpt-nano": (3, 3, 48), "gpt-micro": (4, 4, 128), "gpt-mini": (6, 6, 192)}
TASK_KEYS = {
    "task": "op",
    "digits": "digits",
    "format": "format",
    "width": "width",
    "modulus": "modulus",
    "pad": "pad",
    "bos": "bos",
}
# keys added after sweeps were first run: left out of the run id at their earlier value, so earlier ids stay
ID_NEUTRAL = {"bos": False, **{k: BEFORE_THE_KEY[k] for k in ("distractors", "end_token_loss")}}
MODEL_KEYS = ("n_layers", "n_heads", "d_model", "d_mlp", "act_fn", "positional")
EXECUTION_ONLY = ("seed", "device")  # TrainConfig fields a sweep does not take as training options
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name not in EXECUTION_ONLY)
SETTING_KEYS = (*TASK_KEYS, "size", *MODEL_KEYS, "seed", *TRAIN_KEYS)


class SettingsError(ValueError):
    """A setting key or value a run cannot take; the message names it."""


def unknown_key_message(key: str, known, where: str) -> str:
    """``unknown key 'x' in [where]; did you mean 'y'?`` (the closest known key, when there is one)."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return f"unknown key {key!r} in {where}{hint}"


@functools.lru_cache(maxsize=1)
def _types() -> dict[str, object]:
    hints = {**typing.get_type_hints(Task), **typing.get_type_hints(ModelConfig), **typing.get_type_hints(TrainConfig)}
    out = {key: hints[field] for key, field in TASK_KEYS.items()}
    out.update({k: hints[k] for k in (*MODEL_KEYS, *TRAIN_KEYS)})
    out.update(size=str, seed=int)
    return out


def type_matches(value, hint) -> bool:
    """Whether a value fits a dataclass field's type (ints where a float is wanted; lists for tuples)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # None (unset) only comes from Python, never from TOML
        return any(value is None if h is type(None) else type_matches(value, h) for h in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        return isinstance(value, (list, tuple)) and len(value) == len(args) and all(map(type_matches, value, args))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def describe_type(hint) -> str:
    """``an integer``, ``a number``, ``a list of 2 numbers``... (the TOML a field takes)."""
    args = [h for h in typing.get_args(hint) if h is not type(None)]
    if typing.get_origin(hint) is tuple:
        return f"a list of {len(args)} {describe_type(args[0]).split(' ', 1)[1]}s"
    if args:
        return describe_type(args[0])
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def check_value(key: str, value, where: str) -> None:
    """SettingsError naming ``key`` when it is unknown or ``value`` has the wrong type."""
    hints = _types()
    if key not in hints:
        raise SettingsError(unknown_key_message(key, SETTING_KEYS, where))
    if key in OFF_WHEN_NONE and value == OFF:
        return
    if not type_matches(value, hints[key]):
        off = f' or "{OFF}"' if key in OFF_WHEN_NONE else ""
        raise SettingsError(f"{where} {key} = {value!r}: expected {describe_type(hints[key])}{off}")
    if key == "size" and value not in SIZES:
        raise SettingsError(
            f"{where} size = {value!r}: choose one of {', '.join(SIZES)} (or set n_layers, n_heads, d_model)"
        )


@dataclass(frozen=True)
class RunSettings:
    """One run, resolved: its task, model and training configs (the training device is left at "auto")."""

    task: Task
    model: ModelConfig
    training: TrainConfig

    @cached_property
    def flat(self) -> dict:
        """Every setting by its flat key (the columns of results.csv): task, model, seed, training."""
        out = {key: getattr(self.task, field) for key, field in TASK_KEYS.items()}
        out.update({k: getattr(self.model, k) for k in MODEL_KEYS})
        out["seed"] = self.model.seed
        training = self.training.to_dict()
        out.update({k: training[k] for k in TRAIN_KEYS})
        return out

    @cached_property
    def run_id(self) -> str:
        """``<task>-<positional>-s<seed>-<hash>``: a pure function of every resolved setting."""
        return f"{self.task.name}-{self.model.positional}-s{self.model.seed}-{_digest(self.flat)}"

    @cached_property
    def group_id(self) -> str:
        """The same for runs that differ only in ``seed`` (one architecture, one work unit)."""
        rest = {k: v for k, v in self.flat.items() if k != "seed"}
        return f"{self.task.name}-{self.model.positional}-{_digest(rest)}"

    def train_config(self, device: str = "auto") -> TrainConfig:
        return TrainConfig.from_dict({**self.training.to_dict(), "device": device})


def _digest(settings: dict) -> str:
    kept = {k: v for k, v in settings.items() if not (k in ID_NEUTRAL and v == ID_NEUTRAL[k])}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:10]


def resolve(settings: dict, where: str = "run") -> RunSettings:
    """The :class:`RunSettings` of a flat mapping; SettingsError naming the bad key or value."""
    settings = {k: None if k in OFF_WHEN_NONE and v == OFF else v for k, v in settings.items()}  # TOML has no null
    for key, value in settings.items():
        check_value(key, value, where)
    task_args = {field: settings[key] for key, field in TASK_KEYS.items() if key in settings}
    layers, heads, d_model = SIZES[settings.get("size", "gpt-nano")]
    model_args = {"n_layers": layers, "n_heads": heads, "d_model": d_model}
    model_args.update({k: settings[k] for k in MODEL_KEYS if k in settings})
    model_args.setdefault("d_mlp", 4 * model_args["d_model"])
    seed = settings.get("seed", 0)
    if seed < 0:
        raise SettingsError(f"{where} seed = {seed}: seeds must be >= 0")
    training = {k: settings[k] for k in TRAIN_KEYS if k in settings}
    try:
        task = Task(**task_args)
        model = ModelConfig.for_task(task, seed=seed, **model_args)
        train = TrainConfig.from_dict({**training, "seed": seed}, written_before=False)
        train = with_scheme_defaults(train, model.positional)  # as train() records it
    except (TypeError, ValueError) as e:
        raise SettingsError(f"{where}: {e}") from None
    return RunSettings(task, model, train)
