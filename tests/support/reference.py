"""Independent implementations that tests compare the package's numbers with.

Each is written from the definition (plain torch, TransformerLens hooks), shares no code with the
analysis it checks, and is small enough to read against that definition.
"""

from __future__ import annotations

import numpy as np
import torch
from transformer_lens.utilities import get_act_name


def python_ints(x) -> list[int]:
    """Operands or answers (a list, tensor or numpy array) as a list of Python ints."""
    return [int(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]


def true_answer(op: str, a, b, modulus: int | None = None) -> np.ndarray:
    """``a op b`` from the operation's definition, one Python int at a time (exact at any size): a
    numpy object array, which compares elementwise with the package's answers."""
    f = {
        "add": lambda x, y: x + y,
        "sub": lambda x, y: x - y,
        "mul": lambda x, y: x * y,
        "addmod": lambda x, y: (x + y) % modulus,
        "mulmod": lambda x, y: (x * y) % modulus,
    }[op]
    out = np.empty(len(python_ints(a)), dtype=object)
    out[:] = [f(x, y) for x, y in zip(python_ints(a), python_ints(b))]
    return out


def relation_values(op: str, kind: str, j: int | None, a: torch.Tensor, b: torch.Tensor, modulus: int | None = None):
    """The answers of one relation of docs/equivalence.md: the true answer, the true answer mod 10^j
    ("true_mod") or the operation on the operands mod 10^j ("truncated")."""
    if kind == "true":
        return true_answer(op, a, b, modulus)
    if kind == "true_mod":
        return true_answer(op, a, b, modulus) % 10**j
    if kind == "truncated":  # for sub the ID pair keeps a >= b (docs/equivalence.md): |a' - b'|
        ra, rb = [x % 10**j for x in python_ints(a)], [y % 10**j for y in python_ints(b)]
        if op == "sub":
            return true_answer(op, [max(x, y) for x, y in zip(ra, rb)], [min(x, y) for x, y in zip(ra, rb)])
        return true_answer(op, ra, rb, modulus)
    raise ValueError(kind)


def best_relation_rate(op: str, outputs, a, b, width: int, answer_width: int, modulus: int | None = None) -> float:
    """The largest share of ``outputs`` any relation of docs/equivalence.md reproduces."""
    kinds = [("true", None)] + [("truncated", j) for j in range(1, width + 1)]
    kinds += [("true_mod", j) for j in range(1, answer_width + 1)]
    outputs = np.array(python_ints(outputs), dtype=object)
    return max(float(np.mean(outputs == relation_values(op, k, j, a, b, modulus))) for k, j in kinds)


@torch.inference_mode()
def activations(model, tokens: torch.Tensor, hook: str, position: int) -> torch.Tensor:
    """``[batch, d]`` float64 activations of TL hook ``hook`` at ``position``, read from TL's cache."""
    _, cache = model.run_with_cache(tokens, names_filter=hook)
    return cache[hook][:, position].reshape(len(tokens), -1).double().cpu()


def pca_reference(x: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[list[float], float]:
    """``(explained variance ratios, nearest-centroid accuracy in the top k components)`` of the
    rows of ``x``, from the singular values of the centred matrix; a row goes to the label whose
    centroid is nearest (ties to the smaller label)."""
    labels = torch.tensor(python_ints(labels))
    centred = x - x.mean(0)
    _, s, vt = torch.linalg.svd(centred, full_matrices=False)
    ratios = (s**2 / (s**2).sum()).tolist()
    coords = centred @ vt[:k].T
    classes = torch.unique(labels)  # sorted
    centroids = torch.stack([coords[labels == c].mean(0) for c in classes])
    nearest = classes[torch.cdist(coords, centroids).argmin(1)]
    return ratios, float((nearest == labels).double().mean())


@torch.inference_mode()
def logit_difference(
    model, tokens: torch.Tensor, position: int, clean: torch.Tensor, corrupted: torch.Tensor, hooks=()
):
    """Mean over rows of logit(clean digit) - logit(corrupted digit) at ``position``, with TL ``hooks``."""
    logits = model.run_with_hooks(tokens, fwd_hooks=list(hooks))[:, position]
    rows = torch.arange(len(tokens))
    return float((logits[rows, clean] - logits[rows, corrupted]).mean())


@torch.inference_mode()
def patching_effect(model, clean_tokens, corrupted_tokens, kind: str, layer: int, pos: int, position, clean, corrupted):
    """The normalised effect of putting the clean run's ``kind`` activation of ``layer`` at ``pos``
    into the corrupted run, through TL's hooks: (patched - corrupted) / (clean - corrupted) of the
    logit difference at ``position``."""
    name = get_act_name(kind, layer)
    _, cache = model.run_with_cache(clean_tokens, names_filter=name)

    def put_clean(act, hook):
        act = act.clone()
        act[:, pos] = cache[name][:, pos]
        return act

    clean_value = logit_difference(model, clean_tokens, position, clean, corrupted)
    corr_value = logit_difference(model, corrupted_tokens, position, clean, corrupted)
    patched = logit_difference(model, corrupted_tokens, position, clean, corrupted, [(name, put_clean)])
    return (patched - corr_value) / (clean_value - corr_value), clean_value, corr_value


@torch.inference_mode()
def greedy_answers(model, task, a, b) -> np.ndarray:
    """The model's answers by the plainest greedy loop: one full forward per answer token, argmax of
    the last position, digits read in the format's order (-1 when a token is not a digit), as Python
    ints in a numpy object array."""
    tokens = task.encode_batch(a, b)[0][:, : task.prompt_len]
    for _ in range(task.answer_width):
        tokens = torch.cat([tokens, model(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    out = np.empty(len(tokens), dtype=object)
    for i, row in enumerate(tokens[:, task.prompt_len :].tolist()):
        digits = row[::-1] if task.answer_lsb_first else row  # most significant first
        out[i] = int("".join(map(str, digits))) if all(d <= 9 for d in digits) else -1
    return out


def relation_hits(
    relation: dict, op: str, a: torch.Tensor, b: torch.Tensor, outputs, modulus: int | None = None
) -> int:
    """How many ``outputs`` equal the answers of a relation as the JSON of ``equivalence`` names it."""
    j = None if relation["modulus"] is None else len(str(relation["modulus"])) - 1
    outputs = np.array(python_ints(outputs), dtype=object)
    return int((outputs == relation_values(op, relation["kind"], j, a, b, modulus)).sum())


def digit_site_effect(model, task, digit: int, n: int, seed: int, site: dict, logit_pos: int):
    """:func:`patching_effect` of one site of ``patch --json`` (kind, layer, pos) on the pairs the
    command patches for answer digit ``digit``: ``n`` pairs differing in that digit only."""
    from mechinterp_arith.analysis.prompt_pairs import differ_in_answer_digit  # the inputs, not the engine

    pairs = differ_in_answer_digit(task, digit, n=n, seed=seed)
    return patching_effect(
        model,
        pairs.clean_tokens,
        pairs.corrupted_tokens,
        site["kind"],
        site["layer"],
        site["pos"],
        logit_pos,
        pairs.clean_digits[:, digit],
        pairs.corrupted_digits[:, digit],
    )
