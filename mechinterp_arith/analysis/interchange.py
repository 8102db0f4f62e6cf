"""Interchange interventions for the study's claim, with TransformerLens's ``interchange`` tools.

Two causal-abstraction questions (Geiger et al.): does a high-level model's variable live in the
network where we think, measured by the interchange intervention accuracy (IIA), the share of
(base, source) pairs on which the intervened network gives the answer the high-level model
predicts for the base with that variable taken from the source.

* :func:`extra_digit_interchange`: at the positions of the extra operand digits a_n and b_n of
  (n+1)-digit inputs, set the base's residual stream to the source's (every layer in turn).
  Two high-level models: the digits are *ignored* (the answer does not change, as under the
  study's truncation (a mod 10^n) op (b mod 10^n)) and *true arithmetic* (the answer follows the
  swapped digits).
* :func:`units_digit_das`: a distributed alignment search (TL's ``fit_das``) subspace for the
  units digit of the answer at the position that predicts it; its IIA beside a random subspace
  and an arbitrary-label control, and how it lines up with the PCA clusters of the same states
  (principal-angle cosines, nearest-centroid accuracy in its coordinates).

Answers are checked as greedy decoding would produce them, in one teacher-forced pass: the model
answers ``c`` exactly when every answer digit of ``c`` is the argmax given the digits before it.

>>> from mechinterp_arith import load
>>> df = extra_digit_interchange(load("add3"), n=64)
>>> bool((df["iia_true_arithmetic"] == 0).all())       # swapping a3/b3 never gives the true sum
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.tools.analysis import interchange as tl_interchange
from transformer_lens.utilities import get_act_name

from ..core import data
from ..core.checkpoint import Checkpoint
from ..core.errors import NotApplicable
from ..core.evaluate import answer_rates
from ..core.numbers import Values
from ..core.positions import answer_logit_pos, answer_positions, operand_pos, require_fixed_length
from ..core.seeding import derive_seed
from ..core.tasks import Task
from .choices import DEFAULT_HOOK
from .pca import fit_pca, separability
from .prompt_pairs import make_pairs


def _teacher_forced(task: Task, a: Values, b: Values, answer: Values) -> Int[Tensor, "n ctx"]:
    """Inputs (full example minus its last token) of (a, b) with ``answer``'s digits teacher-forced."""
    return make_pairs(task, a, b, a, b, clean_answer=answer, corrupted_answer=answer).clean_tokens


def _answer_digits_logits(model: TransformerBridge, task: Task) -> Callable[[Tensor], Tensor]:
    pos = answer_positions(task)
    return lambda tokens: model(tokens)[:, pos]  # [B, answer digits, vocab]


def _interchanged_matches(
    ckpt: Checkpoint,
    hook: str,
    positions: list[int],
    base: tuple[Values, Values],
    source: tuple[Values, Values],
    answer: Values,
) -> Bool[Tensor, " n"]:
    """Whether the base's greedy answer is ``answer`` with the residual at ``positions`` set to the source's."""
    task, model = ckpt.task, ckpt.model
    logits_fn = _answer_digits_logits(model, task)
    src_tokens = _teacher_forced(task, *source, task.apply(*source)).to(ckpt.device)
    tokens = _teacher_forced(task, *base, answer).to(ckpt.device)
    swap = tl_interchange.SubspaceInterchange(torch.eye(model.cfg.d_model))
    n = len(answer)

    at = [torch.full((n,), p) for p in positions]
    sources = [tl_interchange.collect_activations(model, hook, src_tokens, logits_fn, positions=p) for p in at]

    def run(
        toks: Tensor, i: int = 0
    ) -> Tensor:  # one TL intervention per position, nested: each hook fires once per pass
        if i == len(at):
            return logits_fn(toks)
        return tl_interchange.run_with_intervention(
            model, hook, swap, toks, sources[i], lambda t: run(t, i + 1), positions=at[i]
        )

    with torch.no_grad():
        pred = run(tokens).argmax(-1).cpu()
    digits = task.answer_digits(answer)
    return (pred == digits).all(-1)


def extra_digit_interchange(ckpt: Checkpoint, n: int = 256, seed: int = 0, m: int | None = None) -> pd.DataFrame:
    """IIA of swapping the residual stream at the extra operand digits between ``m``-digit inputs
    (default m = n + 1: a_n and b_n).

    One row per hook (each layer's resid_pre, then the last resid_post): ``iia_unchanged`` (the
    answer stays the model's own answer to the base: the digits are ignored) and
    ``iia_true_arithmetic`` (it becomes the true answer with the source's digits), over the
    ``n_pairs`` pairs where the two differ. ``attrs``: ``baseline_truncation``, the share of
    bases the model answers as the study's truncation (a mod 10^n) op (b mod 10^n).
    """
    task = ckpt.task
    require_fixed_length(task)
    m = data.require_ood_digits(task, m)
    if task.modulus is not None:
        raise NotApplicable(f"{task.name}: a modular answer does not separate the extra digits' effect digit by digit")
    a, b = data.ood_both(task, m, n, seed=derive_seed(seed, "interchange", "base"))
    sa, sb = data.ood_both(task, m, n, seed=derive_seed(seed, "interchange", "source"))
    N = 10**task.digits
    ca, cb = a % N + (sa // N) * N, b % N + (sb // N) * N  # the base with the source's extra digits
    with torch.inference_mode():
        own = ckpt.predict(a, b)
    true_cf = task.apply(ca, cb)
    fits = (true_cf >= 0) & (true_cf < 10**task.answer_width) & (own != true_cf) & (own >= 0)
    if not bool(fits.any()):
        raise NotApplicable(
            f"no {m}-digit pair separates the model's answer from true arithmetic within the answer width"
        )
    a, b, sa, sb, own, true_cf = (t[fits] for t in (a, b, sa, sb, own, true_cf))
    extra = [operand_pos(task, op, place) for op in ("a", "b") for place in range(task.digits, m)]
    L = ckpt.model.cfg.n_layers
    rows = []
    for hook in [get_act_name("resid_pre", l) for l in range(L)] + [get_act_name("resid_post", L - 1)]:
        stays = _interchanged_matches(ckpt, hook, extra, (a, b), (sa, sb), own)
        follows = _interchanged_matches(ckpt, hook, extra, (a, b), (sa, sb), true_cf)
        rows.append(
            {
                "hook": hook,
                "iia_unchanged": float(stays.float().mean()),
                "iia_true_arithmetic": float(follows.float().mean()),
                "n_pairs": len(a),
            }
        )
    df = pd.DataFrame(rows)
    truncation = answer_rates(ckpt.model, task, a, b, answers=own)["equivalent"]
    df.attrs.update(m=m, positions=extra, baseline_truncation=truncation)
    return df


@dataclass
class DASResult:
    """A learned units-digit subspace and its checks (see :func:`units_digit_das`)."""

    hook: str
    position: int
    rank: int
    iia: float
    iia_random_basis: float
    iia_arbitrary_labels: float
    pca_cosines: list[float]  # cosines of the principal angles to the top-``rank`` PCA subspace
    cluster_share_das: float  # share of the between-digit variance of the states inside the subspace
    cluster_share_pca: float  # ... inside the top-``rank`` principal components
    centroid_accuracy_das: float
    centroid_accuracy_pca: float
    basis: Tensor
    losses: tuple[float, ...]


def cluster_variance_share(
    states: Float[Tensor, "n d"], labels: Int[Tensor, " n"], basis: Float[Tensor, "d r"]
) -> float:
    """Share of the between-class variance (of the class means, weighted by class size) that lies
    in the span of the orthonormal ``basis``: 1 when the clusters' separation is all inside it."""
    centred = states - states.mean(0)
    means = torch.stack([centred[labels == c].mean(0) for c in labels.unique()])
    weights = torch.stack([(labels == c).sum() for c in labels.unique()]).to(states.dtype)
    inside = ((means @ basis) ** 2).sum(-1)
    return float((weights * inside).sum() / (weights * (means**2).sum(-1)).sum())


def units_digit_das(
    ckpt: Checkpoint,
    rank: int = 8,
    n: int = 1024,
    n_test: int = 512,
    hook: str = DEFAULT_HOOK,
    epochs: int = 20,
    seed: int = 0,
) -> DASResult:
    """DAS subspace of rank ``rank`` for the answer's units digit at the position predicting it.

    High-level model: the units digit depends on the operands only through itself, so setting
    it from a source makes the model output the source's units digit. ``n`` random ID (base,
    source) pairs train the basis (TL ``fit_das``), ``n_test`` others score it; controls: a
    random basis of the same rank, and DAS trained on arbitrary labels (TL ``arbitrary_targets``).
    """
    task, model = ckpt.task, ckpt.model
    require_fixed_length(task)
    if task.modulus is not None:
        raise NotApplicable(f"{task.name}: the units digit of a modular answer depends on every operand digit")
    pos = answer_logit_pos(task, 0)
    logits_fn = lambda tokens: model(tokens)[:, pos]
    sets = []
    for part, size in (("train", n), ("test", n_test)):
        a, b = data.random_pairs(task, size, seed=derive_seed(seed, "das", part, "base"))
        sa, sb = data.random_pairs(task, size, seed=derive_seed(seed, "das", part, "source"))
        base = _teacher_forced(task, a, b, task.apply(a, b)).to(ckpt.device)
        src = _teacher_forced(task, sa, sb, task.apply(sa, sb)).to(ckpt.device)
        sets.append(
            (base, src, task.answer_digits(task.apply(sa, sb))[:, 0], task.answer_digits(task.apply(a, b))[:, 0])
        )
    (base, src, target, _), (tb, ts, tt, t_own) = sets
    p_train, p_test = torch.full((n,), pos), torch.full((n_test,), pos)

    def fit(targets: Tensor) -> tl_interchange.DASResult:
        return tl_interchange.fit_das(
            model,
            hook,
            base,
            src,
            targets,
            logits_fn,
            rank=rank,
            base_positions=p_train,
            source_positions=p_train,
            epochs=epochs,
            seed=seed,
        )

    def iia(basis: Tensor, targets: Tensor) -> float:
        acts = tl_interchange.collect_activations(model, hook, ts, logits_fn, positions=p_test)
        out = tl_interchange.intervened_logits(
            model, hook, tl_interchange.SubspaceInterchange(basis), tb, acts, logits_fn, positions=p_test
        )
        return float((out.argmax(-1) == targets).float().mean())

    das = fit(target)
    arbitrary = tl_interchange.arbitrary_targets(
        [str(d) for d in range(10)], 10, seed
    )  # a fixed relabelling of the digit
    das_arb = fit(arbitrary[target])
    acts = tl_interchange.collect_activations(model, hook, tb, logits_fn, positions=p_test).numpy()
    pca, _, pca_accuracy, _ = fit_pca(acts, t_own.numpy(), k=rank, seed=seed)
    B = das.basis.cpu()
    cosines = torch.linalg.svdvals(B.T @ torch.as_tensor(pca.components_[:rank], dtype=B.dtype).T).tolist()
    x = torch.as_tensor(acts)
    das_coords = (x - x.mean(0)) @ B
    pcs = torch.as_tensor(pca.components_[:rank], dtype=B.dtype).T
    return DASResult(
        hook,
        pos,
        rank,
        iia(das.basis, tt),
        iia(tl_interchange.random_basis(model.cfg.d_model, rank, seed), tt),
        iia(das_arb.basis, arbitrary[tt]),
        [round(c, 4) for c in cosines],
        cluster_variance_share(x, t_own, B),
        cluster_variance_share(x, t_own, pcs),
        separability(das_coords.numpy(), t_own.numpy(), seed)[0],
        pca_accuracy,
        B,
        das.losses,
    )
