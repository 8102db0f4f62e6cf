"""Circuit queries on a checkpoint, answered with batched patching; pandas DataFrames out.

>>> from mechinterp_arith import load
>>> ckpt = load("add3")
>>> sites = digit_sites(ckpt, k=1)                          # where answer digit 1 (tens) lives
>>> sites.nlargest(1, "effect")[["kind", "layer", "label"]].values.tolist()
[['resid_pre', 1, 'b1']]
>>> heads = head_operand_map(ckpt, k=1)        # which heads move a's tens digit: L0H2 (into b1), L2H1 (reads it)
>>> heads.query("operand == 'a' and place == 1").nlargest(2, "best_effect")[["layer", "head"]].values.tolist()
[[0, 2], [2, 1]]
>>> explain(ckpt, 1349, 705)["id_representative"]          # an OOD input answered as its representative
{'a': 349, 'b': 705, 'prediction': 1054}

:func:`circuit_heads` (``ma.circuit_heads``) is a DataFrame of heads; the edge circuits that
:func:`~mechinterp_arith.analysis.discovery.discover` finds are :class:`~mechinterp_arith.analysis.discovery.Circuit`
objects.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import ActivationCache
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.utilities import get_act_name

from ..core import data
from ..core.checkpoint import Checkpoint
from ..core.errors import NotApplicable
from ..core.evaluate import answer_rates
from ..core.numbers import Values, as_operands
from ..core.positions import (
    OPERANDS,
    answer_logit_pos,
    answer_positions,
    check_digit,
    operand_pos,
    position_labels,
)
from ..core.tasks import Task
from .attention import mean_attention, operand_attention
from .metrics import Metric, logit_diff_metric, normalised_effect
from .patching import PatchResult, patch_each_site
from .prompt_pairs import (
    PromptPairs,
    change_operand_digit,
    differ_in_answer_digit,
    make_pairs,
    ood_id_pairs,
)

SITE_KINDS = ("resid_pre", "attn_out", "mlp_out")
MIN_PAIRS = 4
PATCH_PAIRS = 256  # pairs patched at a time: memory is bounded by this, not by n (the same figures)


def _cache(model: TransformerBridge, tokens: Tensor) -> tuple[Tensor, ActivationCache]:
    with torch.inference_mode():
        return model.run_with_cache(tokens)


def streamed_sweeps(
    ckpt: Checkpoint, pairs: PromptPairs, k: int, kinds: tuple[str, ...], by_pos: bool | None = None
) -> tuple[dict[str, PatchResult], float, float]:
    """``(sweeps by kind, clean value, corrupted value)`` of the logit difference of answer digit ``k``
    over ``pairs``, patched :data:`PATCH_PAIRS` pairs at a time (a clean cache of all pairs took
    0.74 MB per pair): the metric is a mean over pairs, so each value is the pair-weighted mean of
    the chunks' (the same as one pass, to float rounding; one chunk when ``len(pairs) <= PATCH_PAIRS``)."""
    sweeps: dict[str, tuple[PatchResult, Tensor]] = {}
    sums, total = torch.zeros(2, dtype=torch.float64), len(pairs)
    for i in range(0, total, PATCH_PAIRS):
        part = slice(i, i + PATCH_PAIRS)
        rows: dict[str, Any] = {  # every per-pair field: the token tensors and the operand values
            f.name: getattr(pairs, f.name)[part]
            for f in dataclasses.fields(pairs)
            if isinstance(getattr(pairs, f.name), (Tensor, np.ndarray))
        }
        chunk = dataclasses.replace(pairs, **rows)
        chunk = chunk.to(ckpt.device)
        metric, weight = logit_diff_metric(chunk, k), len(chunk)
        sums += weight * torch.tensor(_baselines(ckpt, chunk, metric), dtype=torch.float64)
        _, clean_cache = _cache(ckpt.model, chunk.clean_tokens)
        for kind in kinds:
            options: dict[str, Any] = {} if by_pos is None else {"by_pos": by_pos}
            s = patch_each_site(ckpt.model, chunk.corrupted_tokens, clean_cache, metric, kind, **options)
            if kind not in sweeps:
                sweeps[kind] = (s, s.values.double() * weight)
                continue
            first, weighted = sweeps[kind]
            first.identical &= s.identical
            first.max_logit_change = torch.maximum(first.max_logit_change, s.max_logit_change)
            sweeps[kind] = (first, weighted + s.values.double() * weight)
        del clean_cache
    for s, weighted in sweeps.values():
        s.values = (weighted / total).to(s.values.dtype)
    return {kind: s for kind, (s, _) in sweeps.items()}, float(sums[0] / total), float(sums[1] / total)


def _site_frame(
    ckpt: Checkpoint, pairs: PromptPairs, k: int, kinds: tuple[str, ...]
) -> tuple[pd.DataFrame, float, float]:
    labels = position_labels(ckpt.task)
    sweeps, clean_value, corr_value = streamed_sweeps(ckpt, pairs, k, kinds)
    frames = [sweeps[kind].frame() for kind in kinds]
    df = pd.concat(frames, ignore_index=True).rename(columns={"value": "logit_diff"})
    df["label"] = [labels[p] for p in df["pos"]]
    df["effect"] = normalised_effect(torch.tensor(df["logit_diff"].to_numpy()), clean_value, corr_value).numpy()
    return (
        df[["kind", "layer", "pos", "label", "logit_diff", "effect", "identical", "max_logit_change"]],
        clean_value,
        corr_value,
    )


def _baselines(ckpt: Checkpoint, pairs: PromptPairs, metric: Metric) -> tuple[float, float]:
    with torch.inference_mode():
        return float(metric(ckpt.model(pairs.clean_tokens))), float(metric(ckpt.model(pairs.corrupted_tokens)))


def digit_sites(
    ckpt: Checkpoint, k: int, n: int = 64, seed: int = 0, kinds: tuple[str, ...] = SITE_KINDS
) -> pd.DataFrame:
    """Which (layer, position) sites carry answer digit ``k``.

    Pairs whose answers differ only in digit k; metric: logit(clean digit) - logit(corrupted digit)
    at answer position k; ``effect`` is the normalised patching effect (1 = clean restored).
    One row per (kind, layer, pos); ``attrs`` hold the clean and corrupted metric values.
    """
    check_digit(ckpt.task, k)
    pairs = differ_in_answer_digit(ckpt.task, k, n=n, seed=seed)
    df, clean_value, corr_value = _site_frame(ckpt, pairs, k, kinds)
    df.attrs.update(digit=k, n_pairs=len(pairs), clean_logit_diff=clean_value, corrupted_logit_diff=corr_value)
    return df


def attention_to_operands(ckpt: Checkpoint, k: int, n: int = 64, seed: int = 0) -> pd.DataFrame:
    """Mean attention from the position predicting answer digit ``k`` to every ID operand digit, per
    head, over ``n`` random ID pairs (:func:`~mechinterp_arith.analysis.attention.operand_attention`).
    Columns: ``layer, head, operand, place, src_pos, attention``."""
    task = ckpt.task
    check_digit(task, k)
    a, b = data.random_pairs(task, n, seed=seed)
    return operand_attention(ckpt, a, b, [k], range(task.digits)).drop(columns="digit")


def head_operand_map(ckpt: Checkpoint, k: int, n: int = 64, seed: int = 0) -> pd.DataFrame:
    """Which heads move which operand digits into answer position ``k``.

    For every head and operand digit (a or b, place i): ``attention`` from the position that
    predicts answer digit k to that digit and ``effect``, the normalised effect of patching the
    head's z at that position, with pairs that change only that operand digit (the rows where
    answer digit k changes; NaN when fewer than 4 of ``n`` do). Heads may also move the digit
    elsewhere first (e.g. a_i into b_i's position): ``best_pos``/``best_label``/``best_effect``
    give the position where patching the head matters most and ``attention_at_best`` its
    attention from there to the operand digit.
    """
    task = ckpt.task
    check_digit(task, k)
    q = answer_logit_pos(task, k)
    att = attention_to_operands(ckpt, k, n, seed)
    labels = position_labels(task)
    patterns = mean_attention(ckpt, *data.random_pairs(task, n, seed=seed)).permute(
        0, 2, 1, 3
    )  # [layer, dest, head, src]
    effects = []
    for op in OPERANDS:
        for place in range(task.digits):
            pairs = change_operand_digit(task, n=n, operand=op, place=place, seed=seed)
            keep = pairs.clean_digits[:, k] != pairs.corrupted_digits[:, k]
            n_used = int(keep.sum())
            if n_used < MIN_PAIRS:
                effects += [
                    {
                        "layer": l,
                        "head": h,
                        "operand": op,
                        "place": place,
                        "effect": float("nan"),
                        "best_pos": -1,
                        "best_label": "",
                        "best_effect": float("nan"),
                        "attention_at_best": float("nan"),
                        "n_pairs": n_used,
                    }
                    for l in range(ckpt.model.cfg.n_layers)
                    for h in range(ckpt.model.cfg.n_heads)
                ]
                continue
            pairs = make_pairs(
                task, pairs.clean_a[keep], pairs.clean_b[keep], pairs.corrupted_a[keep], pairs.corrupted_b[keep]
            )
            sweeps, clean_value, corr_value = streamed_sweeps(ckpt, pairs, k, ("z",), by_pos=True)
            eff = normalised_effect(sweeps["z"].values, clean_value, corr_value)  # [layer, pos, head]
            src = operand_pos(task, op, place)
            for l in range(eff.shape[0]):
                for h in range(eff.shape[2]):
                    best = int(eff[l, :, h].nan_to_num(-1e9).argmax())
                    effects.append(
                        {
                            "layer": l,
                            "head": h,
                            "operand": op,
                            "place": place,
                            "effect": float(eff[l, q, h]),
                            "best_pos": best,
                            "best_label": labels[best],
                            "best_effect": float(eff[l, best, h]),
                            "attention_at_best": float(patterns[l][best, h, src]),
                            "n_pairs": n_used,
                        }
                    )
    df = att.merge(pd.DataFrame(effects), on=["layer", "head", "operand", "place"])
    df.insert(0, "digit", k)
    return df


def circuit_digits(task: Task) -> list[int]:
    """The answer digits a circuit summary covers: 0..n (the carry digit included), within the answer."""
    return list(range(min(task.digits, task.answer_width - 1) + 1))


def circuit_heads(
    ckpt: Checkpoint, n: int = 64, seed: int = 0, min_attention: float = 0.2, min_effect: float = 0.1
) -> pd.DataFrame:
    """The head-level circuit summary over answer digits 0..n: for each digit, the heads that attend to
    an operand digit (attention >= ``min_attention``) and whose patching moves it (effect >=
    ``min_effect``); rows of :func:`head_operand_map`. (A discovered edge circuit is
    :func:`~mechinterp_arith.analysis.discovery.discover`'s ``Circuit``.)

    ``attrs["skipped"]`` maps each digit the task cannot isolate to the reason (e.g. the units
    digit of a product changes with every operand edit); those digits have no rows.
    """
    frames, skipped = [], {}
    for k in circuit_digits(ckpt.task):
        try:
            frames.append(head_operand_map(ckpt, k, n, seed))
        except NotApplicable as e:
            skipped[k] = str(e)
    df = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["digit", "layer", "head", "attention", "effect"])
    )
    df = df[(df.attention >= min_attention) & (df.effect >= min_effect)].reset_index(drop=True)
    df.attrs["skipped"] = skipped
    return df


def head_effects(ckpt: Checkpoint, digits: list[int] | None = None, n: int = 64, seed: int = 0) -> pd.DataFrame:
    """Normalised effect of patching each head's z at every position at once, per answer digit.

    One row per (digit, layer, head) with ``effect``; for pairs whose answers differ only in that
    digit (metric: the logit difference at the position predicting it). Digits the task cannot
    change alone get NaN effects and their reason in ``attrs["skipped"]``.
    """
    task, model = ckpt.task, ckpt.model
    digits = circuit_digits(task) if digits is None else digits
    rows, skipped = [], {}
    for k in digits:
        try:
            pairs = differ_in_answer_digit(task, k, n=n, seed=seed)
        except NotApplicable as e:
            skipped[k] = str(e)
            values = torch.full((model.cfg.n_layers, model.cfg.n_heads), float("nan"))
        else:
            sweeps, clean_value, corr_value = streamed_sweeps(ckpt, pairs, k, ("z",), by_pos=False)
            values = normalised_effect(sweeps["z"].values, clean_value, corr_value)
        rows += [
            {"digit": k, "layer": l, "head": h, "effect": float(values[l, h])}
            for l in range(values.shape[0])
            for h in range(values.shape[1])
        ]
    df = pd.DataFrame(rows)
    df.attrs["skipped"] = skipped
    return df


# ---- OOD vs ID representative ------------------------------------------------------------------------
def _answer_metric(
    task: Task, base_logits: Float[Tensor, "batch pos vocab"], true_digits: Int[Tensor, "batch digit"]
) -> Metric:
    positions = answer_positions(task)
    base_pred = base_logits[:, positions].argmax(-1)
    # the digit where the extra operand digits would show first (the top digit for narrow answers,
    # e.g. a 2-digit modular result)
    dropped = min(task.digits, task.answer_width - 1)

    def metric(logits: Tensor) -> Tensor:
        lg = logits[:, positions]
        pred = lg.argmax(-1)
        flips = (pred != base_pred).any(1).float().mean()
        change = (lg - base_logits[:, positions]).abs().amax(dim=(1, 2)).mean()
        true_rate = (pred[:, dropped] == true_digits[:, dropped]).float().mean()
        return torch.stack([flips, change, true_rate])

    return metric


def ood_sites(
    ckpt: Checkpoint, m: int | None = None, n: int = 64, seed: int = 0, kinds: tuple[str, ...] = SITE_KINDS
) -> pd.DataFrame:
    """Patch between OOD inputs and their ID representatives (a mod 10^n, b mod 10^n), both ways.

    Both runs are teacher-forced with the representative's answer, so inputs differ only at the
    extra operand digits. Per (direction, kind, layer, pos): ``act_diff`` (relative size of the
    activation difference between the two runs), ``flip_rate`` (rows whose greedy answer digits
    change), ``answer_logit_change`` (mean over rows of the largest answer-logit change),
    ``true_digit_rate`` (rows predicting the true OOD answer's digit n, e.g. the 2 of 1349+705=2054)
    and ``identical``. ``attrs``: ``n_pairs``, ``m`` (default n + 1; :class:`NotApplicable` when the
    format holds no longer operand), ``ood_answers_equal_representative`` (the share of OOD answers
    following the study's rule) and ``ood_exact``.
    """
    task = ckpt.task
    m = data.require_ood_digits(task, m)
    pairs = ood_id_pairs(task, n=n, m=m, seed=seed).to(ckpt.device)
    true_ood = task.answer_digits(task.apply(pairs.corrupted_a, pairs.corrupted_b)).to(ckpt.device)
    labels = position_labels(task)
    _, id_cache = _cache(ckpt.model, pairs.clean_tokens)
    _, ood_cache = _cache(ckpt.model, pairs.corrupted_tokens)
    frames = []
    for direction, receiver, donor_cache, recv_cache in (
        ("id->ood", pairs.corrupted_tokens, id_cache, ood_cache),
        ("ood->id", pairs.clean_tokens, ood_cache, id_cache),
    ):
        with torch.inference_mode():
            base = ckpt.model(receiver)
        metric = _answer_metric(task, base, true_ood)
        base_vals = metric(base)
        for kind in kinds:
            sweep = patch_each_site(ckpt.model, receiver, donor_cache, metric, kind)
            df = sweep.frame().rename(
                columns={"value_0": "flip_rate", "value_1": "answer_logit_change", "value_2": "true_digit_rate"}
            )
            diffs = []
            for layer, pos in zip(df.layer, df.pos):
                name = get_act_name(kind, layer)
                d, r = donor_cache[name][:, pos], recv_cache[name][:, pos]
                diffs.append(float(((d - r).norm(dim=-1) / r.norm(dim=-1).clamp_min(1e-9)).mean()))
            df["act_diff"] = diffs
            df["direction"] = direction
            df["label"] = [labels[p] for p in df.pos]
            df.attrs["base_true_digit_rate"] = float(base_vals[2])
            frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out = out[
        [
            "direction",
            "kind",
            "layer",
            "pos",
            "label",
            "act_diff",
            "flip_rate",
            "answer_logit_change",
            "true_digit_rate",
            "identical",
        ]
    ]
    with torch.inference_mode():
        ood_pred = ckpt.predict(pairs.corrupted_a, pairs.corrupted_b)
    rates = answer_rates(ckpt.model, task, pairs.corrupted_a, pairs.corrupted_b, answers=ood_pred)
    out.attrs.update(
        n_pairs=len(pairs),
        m=m,
        ood_answers_equal_representative=rates["equivalent"],
        ood_exact=rates["exact"],
    )
    return out


def circuit(*args: Any, **kwargs: Any) -> pd.DataFrame:
    """Deprecated name of :func:`circuit_heads` (a DataFrame of heads, not a discovered ``Circuit``)."""
    warnings.warn(
        "circuit() is renamed circuit_heads(): it returns a DataFrame of heads, not a discovered Circuit",
        DeprecationWarning,
        stacklevel=2,
    )
    return circuit_heads(*args, **kwargs)


# ---- one input ---------------------------------------------------------------------------------------
def _candidate_edits(ckpt: Checkpoint, a: int, b: int) -> tuple[Values, Values, Values]:
    """Single- and same-place double-digit edits of (a, b) at ID places, with the model's answers."""
    task = ckpt.task
    cand = []
    for place in range(task.digits):
        p = 10**place
        da, db = (a // p) % 10, (b // p) % 10
        for x in range(10):
            if x != da:
                cand.append((a + (x - da) * p, b))
            if x != db:
                cand.append((a, b + (x - db) * p))
            for y in range(10):
                if x != da and y != db:
                    cand.append((a + (x - da) * p, b + (y - db) * p))
    ca = as_operands([c[0] for c in cand])
    cb = as_operands([c[1] for c in cand])
    if task.op == "sub":
        ok = ca >= cb
        ca, cb = ca[ok], cb[ok]
    return ca, cb, ckpt.predict(ca, cb)


def _corruptions_for_digit(
    task: Task, candidates: tuple[Values, Values, Values], pred: int, k: int
) -> tuple[Values, Values, Values]:
    """The candidate edits whose predicted answer differs from ``pred`` in digit k and nowhere else."""
    ca, cb, preds = candidates
    diff = task.answer_digits(preds) != task.answer_digits([pred])
    only = (diff[:, k] & (diff.sum(1) == 1)).numpy() & (preds >= 0)
    return ca[only], cb[only], preds[only]


def explain(
    ckpt: Checkpoint, a: int, b: int, top: int = 3, kinds: tuple[str, ...] = SITE_KINDS, max_pairs: int = 64
) -> dict[str, Any]:
    """Prediction, ID representative and the top patching sites per answer digit for one input.

    For answer digit k, the corruptions are edits of the operands' ID digits after which the model's
    answer changes in digit k only; all runs are teacher-forced with the model's own answers, so the
    sites are those the model uses for *its* digit k (also for OOD inputs).
    """
    task = ckpt.task
    a_t, b_t = as_operands([a]), as_operands([b])
    task.check_operands(a_t, b_t)
    a, b = int(a_t[0]), int(b_t[0])
    pred = int(ckpt.predict(a_t, b_t)[0])
    truth = int(task.apply(a_t, b_t)[0])
    ra, rb = task.id_representative(a_t, b_t)
    rep_pred = int(ckpt.predict(ra, rb)[0])
    labels = position_labels(task)
    digits = []
    pred_digits = task.answer_digits([pred])[0].tolist()
    true_digits = task.answer_digits([truth])[0].tolist()
    candidates = _candidate_edits(ckpt, a, b)
    for k in range(task.answer_width):
        entry = {"k": k, "predicted": pred_digits[k], "true": true_digits[k], "logit_pos": answer_logit_pos(task, k)}
        xa, xb, xp = _corruptions_for_digit(task, candidates, pred, k)
        xa, xb, xp = xa[:max_pairs], xb[:max_pairs], xp[:max_pairs]
        entry["n_corruptions"] = len(xa)
        if len(xa) == 0:
            entry["top_sites"] = []
            entry["note"] = f"no edit of the operands' {task.digits} ID digits changes the model's digit {k} alone"
            digits.append(entry)
            continue
        nrow = len(xa)
        pairs = make_pairs(
            task,
            np.repeat(a_t, nrow),
            np.repeat(b_t, nrow),
            xa,
            xb,
            f"explain digit {k}",
            clean_answer=np.repeat(as_operands([pred]), nrow),
            corrupted_answer=xp,
        )
        df, clean_value, corr_value = _site_frame(ckpt, pairs, k, kinds)
        best = df[~df.identical].nlargest(top, "effect")
        entry["clean_logit_diff"] = round(clean_value, 4)
        entry["corrupted_logit_diff"] = round(corr_value, 4)
        entry["top_sites"] = [
            {
                "kind": r["kind"],
                "layer": int(r["layer"]),
                "pos": int(r["pos"]),
                "label": labels[int(r["pos"])],
                "effect": round(float(r["effect"]), 4),
            }
            for r in best.to_dict("records")
        ]
        digits.append(entry)
    return {
        "task": task.name,
        "a": a,
        "b": b,
        "prediction": pred,
        "true_answer": truth,
        "correct": pred == truth,
        "in_distribution": bool(data.in_distribution(task, a_t, b_t)[0]),
        "id_representative": {"a": int(ra[0]), "b": int(rb[0]), "prediction": rep_pred},
        "prediction_equals_representative": pred == rep_pred,
        "digits": digits,
    }
