"""Import foreign minGPT / nanoGPT checkpoints as hooked models (a normal checkpoint directory).

TransformerLens 4 has no loader for these code bases; this module maps their state dicts onto the
bridge's TL names, infers the architecture from the tensor shapes, validates everything, and only
then writes a checkpoint directory (atomically), so ``load``, ``evaluate`` and every analysis work
on it unchanged. Files are read with ``torch.load(..., weights_only=True)``: no code is unpickled.

>>> path = import_checkpoint("model_s2.pt", source="mingpt", n_heads=3,   # the study's file  # doctest: +SKIP
...                          task=Task("add", digits=3, format="paper"), out="/tmp/s2")
>>> load(path).predict([349], [705]).tolist()                                        # doctest: +SKIP
[1054]

Key mapping (minGPT and nanoGPT share names; all linear weights are ``nn.Linear`` ``[out, in]``)::

    transformer.wte.weight            [vocab, d]       -> embed.weight
    transformer.wpe.weight            [ctx, d]         -> pos_embed.weight
    transformer.h.{i}.ln_1.*          [d]              -> blocks.{i}.ln1.*
    transformer.h.{i}.attn.c_attn.*   [3d, d]  (q;k;v) -> blocks.{i}.attn.{q,k,v}.*
    transformer.h.{i}.attn.c_proj.*   [d, d]           -> blocks.{i}.attn.o.*
    transformer.h.{i}.ln_2.*          [d]              -> blocks.{i}.ln2.*
    transformer.h.{i}.mlp.c_fc.*      [d_mlp, d]       -> blocks.{i}.mlp.in.*
    transformer.h.{i}.mlp.c_proj.*    [d, d_mlp]       -> blocks.{i}.mlp.out.*
    transformer.ln_f.*                [d]              -> ln_final.*
    lm_head.weight                    [vocab, d]       -> unembed.weight   (unembed.bias = 0)
    transformer.h.{i}.attn.bias       [1, 1, ctx, ctx]    causal-mask buffer: checked, not imported
"""

from __future__ import annotations

import hashlib
import pickle
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .checkpoint import CONFIG, CheckpointError, read_json, recover_dir, save_checkpoint
from .choices import ACTIVATIONS, DEFAULT_ACT, SOURCES
from .locks import exclusive
from .model import ModelConfig, build_model
from .tasks import Task

COMPILE_PREFIX = "_orig_mod."
_LAYER = re.compile(r"^transformer\.h\.(\d+)\.")
_MASK = re.compile(r"^transformer\.h\.\d+\.attn\.bias$")  # the causal-mask buffer, not c_attn.bias
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_REFUSED = re.compile(r"(unsupported GLOBAL|Unsupported global|Unsupported operand)[^\n]*", re.IGNORECASE)


def read_foreign(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a minGPT/nanoGPT file safely: ``(state_dict, model_args)``.

    Accepts a plain state dict or nanoGPT's ``{"model": state_dict, "model_args": {...}, ...}``
    (other entries such as the optimizer are ignored); ``model_args`` is ``{}`` when absent.
    Raises CheckpointError for a missing file, a pickle that ``weights_only`` refuses, or
    anything that is not a state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} holds objects that torch.load(weights_only=True) refuses to unpickle ({_refused_object(e)}), "
            f"so it was not loaded: unpickling them could run code. Only plain state dicts of tensors are "
            f"imported: re-save it with torch.save(model.state_dict(), ...)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = _plain(str(e)).splitlines()[0] if _plain(str(e)) else type(e).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch file ({first})") from None
    model_args: dict[str, Any] = {}
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        model_args = obj.get("model_args") or {}
        if not isinstance(model_args, Mapping):
            raise CheckpointError(f"{path}: 'model_args' is a {type(model_args).__name__}, not a dict")
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} is not a state dict (got {type(obj).__name__}{' (empty)' if obj == {} else ''})")
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, Tensor):
            raise CheckpointError(f"{path} is not a state dict of tensors: entry {k!r} holds a {type(v).__name__}")
    return dict(obj), dict(model_args)


def _plain(text: str) -> str:
    """``text`` without ANSI escape codes (torch colours some messages), stripped."""
    return _ANSI.sub("", text).strip()


def _refused_object(error: Exception) -> str:
    """What torch's weights-only unpickler refused, from its message (which also advises
    ``weights_only=False``: not repeated here, since that would run the file's code)."""
    for line in _plain(str(error)).splitlines():
        found = _REFUSED.search(line)
        if found:
            return found.group(0).rstrip(".")
    return "a non-tensor object"


def _strip_compile_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        name = k[len(COMPILE_PREFIX) :] if k.startswith(COMPILE_PREFIX) else k
        if name in out:
            raise CheckpointError(f"key {name!r} appears both with and without the {COMPILE_PREFIX!r} prefix")
        out[name] = v
    return out


def _listing(keys: Iterable[str]) -> str:
    keys = sorted(keys, key=_natural)
    return ", ".join(keys[:6]) + (f" ... ({len(keys)} in all)" if len(keys) > 6 else "")


def _natural(key: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key)]


def _model_arg(model_args: Mapping[str, Any], name: str) -> int | None:
    """``model_args[name]`` checked as a positive integer (None when absent)."""
    value = model_args.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise CheckpointError(f"the checkpoint's model_args {name}={value!r} is not a positive integer")
    return value


def _resolve_heads(n_heads: int | None, model_args: Mapping[str, Any]) -> int:
    from_args = _model_arg(model_args, "n_head")
    if n_heads is not None and (isinstance(n_heads, bool) or not isinstance(n_heads, int) or n_heads < 1):
        raise ValueError(f"n_heads (--n-heads) must be a positive integer, got {n_heads!r}")
    if n_heads is None and from_args is None:
        raise ValueError("the number of attention heads is not stored in the weights: pass n_heads (--n-heads H)")
    if n_heads is not None and from_args is not None and from_args != n_heads:
        raise ValueError(f"n_heads={n_heads} contradicts the checkpoint's model_args n_head={from_args}")
    if n_heads is not None:
        return n_heads
    assert from_args is not None  # both None raised above
    return from_args


@dataclass(frozen=True)
class _Shapes:
    """The sizes of a minGPT/nanoGPT state dict, read off its tensors."""

    vocab: int
    d_model: int
    n_ctx: int
    d_mlp: int
    n_layers: int
    has_bias: bool


def convert_state_dict(
    state: Mapping[str, Tensor],
    source: str = "mingpt",
    n_heads: int | None = None,
    model_args: Mapping[str, Any] | None = None,
    act_fn: str | None = None,
) -> tuple[dict[str, Tensor], ModelConfig]:
    """Map a minGPT/nanoGPT state dict onto the bridge's TL-named state dict, and infer its config.

    Layers, d_model, d_mlp, vocabulary and context come from the shapes; heads from ``n_heads`` or
    nanoGPT's ``model_args["n_head"]`` (a ValueError if neither). nanoGPT keys may carry the
    ``_orig_mod.`` prefix, may lack every bias (``bias=False``: zero biases are imported) and may
    lack ``lm_head.weight`` (tied to ``wte``). Unknown keys, missing keys, wrong shapes, non-float
    or non-finite tensors, or ``model_args`` contradicting the shapes: one CheckpointError each.

    >>> sd, cfg = convert_state_dict(torch.load("model_s2.pt", weights_only=True), "mingpt", n_heads=3)  # doctest: +SKIP
    >>> cfg.n_layers, cfg.d_model, cfg.d_mlp, cfg.n_ctx, cfg.d_vocab, sd["blocks.0.attn.q.weight"].shape  # doctest: +SKIP
    (3, 48, 192, 15, 10, torch.Size([48, 48]))
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    act_fn = act_fn or DEFAULT_ACT[source]
    if act_fn not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act_fn!r}; choose one of {', '.join(ACTIVATIONS)}")
    model_args = dict(model_args or {})
    state = _strip_compile_prefix(state)
    shapes = _read_shapes(state, source, model_args)
    expected = _expected_shapes(shapes)
    _check_keys_and_tensors(state, source, shapes, expected)
    for arg, value in (
        ("n_layer", shapes.n_layers),
        ("n_embd", shapes.d_model),
        ("block_size", shapes.n_ctx),
        ("vocab_size", shapes.vocab),
    ):
        if _model_arg(model_args, arg) not in (None, value):
            raise CheckpointError(f"model_args {arg}={model_args[arg]} contradicts the weights ({value})")
    heads = _resolve_heads(n_heads, model_args)
    if shapes.d_model % heads:
        source_of_heads = "n_heads" if n_heads is not None else "the checkpoint's model_args n_head"
        raise ValueError(f"d_model={shapes.d_model} is not divisible by {source_of_heads}={heads}")
    cfg = ModelConfig(
        n_layers=shapes.n_layers,
        n_heads=heads,
        d_model=shapes.d_model,
        d_mlp=shapes.d_mlp,
        act_fn=act_fn,
        positional="learned",
        n_ctx=shapes.n_ctx,
        d_vocab=shapes.vocab,
    )
    return _to_bridge_names(state, shapes), cfg


def _read_shapes(state: Mapping[str, Tensor], source: str, model_args: Mapping[str, Any]) -> _Shapes:
    anchors = ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.mlp.c_fc.weight"]
    missing_anchors = [k for k in anchors if k not in state]
    if missing_anchors:
        raise CheckpointError(
            f"not a {source} GPT state dict: missing {_listing(missing_anchors)} "
            f"(keys found: {_listing(state) if state else 'none'})"
        )
    for k in anchors:
        if state[k].dim() != 2:
            raise CheckpointError(f"{k} has shape {tuple(state[k].shape)}; expected a matrix")
    vocab, d_model = state["transformer.wte.weight"].shape
    nano = source == "nanogpt"
    bias_keys = [k for k in state if k.endswith(".bias") and not _MASK.match(k)]
    has_bias = bool(model_args["bias"]) if nano and "bias" in model_args else (not nano or bool(bias_keys))
    return _Shapes(
        vocab,
        d_model,
        state["transformer.wpe.weight"].shape[0],
        state["transformer.h.0.mlp.c_fc.weight"].shape[0],
        1 + max(int(m.group(1)) for k in state if (m := _LAYER.match(k))),
        has_bias,
    )


def _expected_shapes(s: _Shapes) -> dict[str, tuple[int, ...]]:
    D = s.d_model
    expected: dict[str, tuple[int, ...]] = {
        "transformer.wte.weight": (s.vocab, D),
        "transformer.wpe.weight": (s.n_ctx, D),
        "transformer.ln_f.weight": (D,),
        "lm_head.weight": (s.vocab, D),
    }
    for i in range(s.n_layers):
        shapes = {
            "ln_1": (D,),
            "attn.c_attn": (3 * D, D),
            "attn.c_proj": (D, D),
            "ln_2": (D,),
            "mlp.c_fc": (s.d_mlp, D),
            "mlp.c_proj": (D, s.d_mlp),
        }
        for name, shape in shapes.items():
            expected[f"transformer.h.{i}.{name}.weight"] = shape
            if s.has_bias:
                expected[f"transformer.h.{i}.{name}.bias"] = shape[:1]
    if s.has_bias:
        expected["transformer.ln_f.bias"] = (D,)
    return expected


def _check_keys_and_tensors(state: Mapping[str, Tensor], source: str, s: _Shapes, expected: dict[str, Any]) -> None:
    nano = source == "nanogpt"
    masks = {f"transformer.h.{i}.attn.bias" for i in range(s.n_layers)}  # causal-mask buffers, not weights
    unknown = set(state) - set(expected) - masks
    if unknown:
        bias_keys = {k for k in state if k.endswith(".bias") and not _MASK.match(k)}
        hint = (
            " (model_args says bias=False but the weights carry biases)"
            if nano and not s.has_bias and unknown <= bias_keys
            else ""
        )
        raise CheckpointError(f"unknown keys for a {source} GPT: {_listing(unknown)}{hint}")
    optional = {"lm_head.weight"} if nano else set()  # nanoGPT ties lm_head to wte
    missing = set(expected) - set(state) - optional
    if missing:
        raise CheckpointError(f"missing keys for a {s.n_layers}-layer {source} GPT: {_listing(missing)}")
    for k, shape in expected.items():
        if k in state and tuple(state[k].shape) != shape:
            raise CheckpointError(
                f"{k} has shape {tuple(state[k].shape)}, expected {shape} "
                f"(d_model {s.d_model}, d_mlp {s.d_mlp}, vocab {s.vocab}, context {s.n_ctx})"
            )
    for k in masks & set(state):
        if tuple(state[k].shape) != (1, 1, s.n_ctx, s.n_ctx):
            raise CheckpointError(
                f"{k} (the causal mask) has shape {tuple(state[k].shape)}, expected (1, 1, {s.n_ctx}, {s.n_ctx})"
            )
    for k in expected:
        if k in state:
            if not state[k].is_floating_point():
                raise CheckpointError(f"{k} has dtype {state[k].dtype}; expected floating-point weights")
            if not torch.isfinite(state[k]).all():
                raise CheckpointError(f"{k} holds NaN or infinite values")


def _to_bridge_names(state: Mapping[str, Tensor], s: _Shapes) -> dict[str, Tensor]:
    """The weights under the bridge's TL names: q/k/v split out of c_attn, zero biases when absent."""
    D = s.d_model

    def w(key: str) -> Tensor:
        return state[key].detach().to(torch.float32).clone()

    def b(key: str, n: int) -> Tensor:
        return w(key) if s.has_bias else torch.zeros(n)

    out: dict[str, Tensor] = {
        "embed.weight": w("transformer.wte.weight"),
        "pos_embed.weight": w("transformer.wpe.weight"),
    }
    for i in range(s.n_layers):
        p, q = f"transformer.h.{i}.", f"blocks.{i}."
        qkv_w, qkv_b = w(f"{p}attn.c_attn.weight"), b(f"{p}attn.c_attn.bias", 3 * D)
        for j, name in enumerate("qkv"):
            out[f"{q}attn.{name}.weight"] = qkv_w[j * D : (j + 1) * D].clone()
            out[f"{q}attn.{name}.bias"] = qkv_b[j * D : (j + 1) * D].clone()
        for src, dst, n in (
            ("ln_1", "ln1", D),
            ("attn.c_proj", "attn.o", D),
            ("ln_2", "ln2", D),
            ("mlp.c_fc", "mlp.in", s.d_mlp),
            ("mlp.c_proj", "mlp.out", D),
        ):
            out[f"{q}{dst}.weight"] = w(f"{p}{src}.weight")
            out[f"{q}{dst}.bias"] = b(f"{p}{src}.bias", n)
    out["ln_final.weight"] = w("transformer.ln_f.weight")
    out["ln_final.bias"] = b("transformer.ln_f.bias", D)
    out["unembed.weight"] = w("lm_head.weight" if "lm_head.weight" in state else "transformer.wte.weight")
    out["unembed.bias"] = torch.zeros(s.vocab)
    return out


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file (recorded as the imported source's fingerprint)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_command(
    path: str | Path, source: str, n_heads: int | None, task: Task, out: str | Path, act_fn: str | None = None
) -> str:
    """The ``mechinterp-arith import ...`` command line equivalent to an API call."""
    args = ["import", str(path), "--from", source]
    if n_heads is not None:
        args += ["--n-heads", str(n_heads)]
    args += ["--task", task.op, "--digits", str(task.digits), "--format", task.format, "--width", str(task.width)]
    if task.modulus is not None:
        args += ["--modulus", str(task.modulus)]
    if not task.pad:
        args.append("--no-pad")
    if task.bos:
        args.append("--bos")
    if act_fn is not None:
        args += ["--act", act_fn]
    return "mechinterp-arith " + shlex.join(args + ["--out", str(out)])


def _check_out(out: Path) -> None:
    """Refuse to replace anything but an earlier import (``save_checkpoint`` replaces whole directories)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"--out {out} is an existing file")
    if not any(out.iterdir()):
        return
    try:
        previous = read_json(out / CONFIG).get("source", {}).get("kind")
    except (CheckpointError, AttributeError):
        previous = None
    if previous not in SOURCES:
        raise ValueError(
            f"--out {out} already exists and is not an imported checkpoint; choose a new directory or remove it"
        )


STUDY_TASK = Task("add", 3, "paper")  # the study's released adders


def import_checkpoint(
    path: str | Path,
    source: str = "mingpt",
    n_heads: int | None = None,
    task: Task = STUDY_TASK,
    out: str | Path = "imported",
    act_fn: str | None = None,
    command: str | None = None,
) -> Path:
    """Convert a minGPT/nanoGPT file into a checkpoint directory ``out`` and return its path.

    Everything is validated before anything is written: the weights (see
    :func:`convert_state_dict`), the vocabulary (must equal ``task.d_vocab``; token id i must
    mean what it means in ``task``'s format), and the context (at least ``task.n_ctx``).
    ``config.json`` records the source file, its sha256, the source kind and ``command`` (by
    default the equivalent ``mechinterp-arith import`` command line). An ``out`` holding
    anything but an earlier import is refused.
    """
    path, out = Path(path), Path(out)
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    state, model_args = read_foreign(path)
    try:
        weights, cfg = convert_state_dict(state, source, n_heads=n_heads, model_args=model_args, act_fn=act_fn)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if cfg.d_vocab != task.d_vocab:
        raise CheckpointError(
            f"{path}: vocabulary of {cfg.d_vocab} tokens does not fit task {task.name} in format "
            f"{task.format!r}, which uses {task.d_vocab} tokens"
        )
    if cfg.n_ctx < task.n_ctx:
        raise CheckpointError(
            f"{path}: context of {cfg.n_ctx} positions is shorter than task {task.name} in format "
            f"{task.format!r} (width {task.width}) needs ({task.n_ctx})"
        )
    model = build_model(cfg, device="cpu")
    model.load_state_dict(weights, strict=True)
    source_info = {
        "file": str(path.resolve()),
        "sha256": sha256_of(path),
        "kind": source,
        "n_heads": cfg.n_heads,
        "act_fn": cfg.act_fn,
        "model_args": {k: v for k, v in model_args.items() if isinstance(v, (int, float, str, bool, type(None)))},
        "ignored_keys": sorted((k for k in _strip_compile_prefix(state) if _MASK.match(k)), key=_natural),
    }
    with exclusive(out):  # one writer; an interrupted earlier import is finished or undone first
        recover_dir(out)
        _check_out(out)
        return save_checkpoint(
            out,
            model.eval(),
            task,
            cfg,
            train_config={},
            history=[],
            command=command or import_command(path, source, n_heads, task, out, act_fn),
            extra={"source": source_info},
        )
