"""Fast greedy decoding with a key/value cache, through the model's plain forward.

:func:`evaluate.generate` runs the hooked bridge once per answer token over the whole prefix: the
right tool when hooks must fire, but slow for the 100,000-sample sets of the equivalence analysis.
Here the same weights run through :class:`~mechinterp_arith.plain_forward.PlainGPT` with a
key/value cache: the prompt once, then one position per answer token. Two more savings:

- *shared prefixes*: causal attention makes the first ``s`` positions depend on the first ``s``
  tokens only, so they are computed once per distinct prefix (on 4-digit addition, the ~10,000
  distinct first operands of 200,000 prompts) and their keys/values gathered for every row;
  ``s`` is chosen to minimise the positions computed;
- the last layer computes only the position whose logits pick the next token.

No hooks fire. The answers agree with :func:`evaluate.generate` (tested on add3, ID and OOD);
logits agree to float rounding. Used only where :func:`checked_plain_forward` accepts the model
(learned positions, fixed-length formats, logits checked against the bridge, no hooks attached);
otherwise :func:`fast_generate` falls back to :func:`evaluate.generate`.

>>> from mechinterp_arith import load, data
>>> ckpt = load("add3")
>>> a, b = data.ood_both(ckpt.task, m=4, n=100_000)
>>> answers = fast_generate(ckpt.model, ckpt.task, a, b).answers      # a few seconds on a CPU
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .evaluate import DEFAULT_BATCH, Generation, generate
from .model import model_device
from .plain_forward import KVBuffer, PlainGPT, checked_plain_forward
from .tasks import Task, _as_long

DECODE_ROWS = 4096  # rows per decoding chunk: larger chunks spill the CPU's caches
_KEY_LIMIT = 2**62


def shared_prefix_split(prompt: Int[Tensor, "batch prompt"], vocab: int) -> tuple[int, Int[Tensor, "batch"] | None, Int[Tensor, "unique"] | None]:
    """The prefix length ``s`` that minimises positions computed, ``U(s)*s + batch*(prompt-s)``.

    Returns ``(s, inverse, first)``: row ``i``'s prefix is distinct prefix ``inverse[i]``, whose
    first row is ``first[u]``; ``(0, None, None)`` when sharing saves nothing.
    """
    N, P = prompt.shape
    key = torch.zeros(N, dtype=torch.long, device=prompt.device)
    best = (N * P, 0, None)
    for s in range(1, P):
        if vocab ** s >= _KEY_LIMIT:
            break
        key = key * vocab + prompt[:, s - 1]
        uniq, inverse = torch.unique(key, return_inverse=True)
        cost = len(uniq) * s + N * (P - s)
        if cost < best[0]:
            best = (cost, s, inverse)
    _, s, inverse = best
    if not s:
        return 0, None, None
    first = torch.full((int(inverse.max()) + 1,), N, dtype=torch.long, device=prompt.device)
    first.scatter_reduce_(0, inverse, torch.arange(N, device=prompt.device), reduce="amin")
    return s, inverse, first


@torch.inference_mode()
def kv_greedy(
    model, prompt: Int[Tensor, "batch prompt"], n_new: int, return_logits: bool = False,
    plain: PlainGPT | None = None, rows: int = DECODE_ROWS,
) -> tuple[Int[Tensor, "batch prompt+n_new"], Float[Tensor, "batch n_new vocab"] | None]:
    """Greedy continuation of each prompt row with a key/value cache.

    Returns ``(tokens, logits)``: the prompt with ``n_new`` tokens appended, and (when
    ``return_logits``) the logits that chose each new token (``logits[:, k]`` chose token
    ``prompt_len + k``), else None. ``plain`` defaults to ``PlainGPT(model)`` (unchecked).
    """
    plain = plain if plain is not None else PlainGPT(model)
    N, P = prompt.shape
    if P + n_new - 1 > plain.context:
        raise ValueError(f"prompt of {P} + {n_new} new tokens exceeds the model's context {plain.context}")
    s, inverse, first = shared_prefix_split(prompt, plain.embed.shape[0])
    if s:  # keys/values of the shared prefix positions, once per distinct prefix
        cache: dict = {}
        plain.blocks(plain.embed_tokens(prompt[first, :s]), 0, 0, None, cache=cache, last_only=True)
        prefix_kv = [(cache[("k", j)], cache[("v", j)]) for j in range(plain.L)]
    out_tokens, out_logits = [], []
    for i in range(0, N, rows):
        chunk = prompt[i : i + rows]
        B = chunk.shape[0]
        past = KVBuffer(plain.L, B, plain.H, P + n_new - 1, plain.dh, prompt.device, plain.embed.dtype)
        if s:
            idx = inverse[i : i + rows]
            for j, (k, v) in enumerate(prefix_kv):
                past.keys[j][:, :, :s] = k[idx]
                past.values[j][:, :, :s] = v[idx]
        x = plain.blocks(plain.embed_tokens(chunk[:, s:], s), 0, s, past, last_only=True)
        new, kept = [], []
        for k in range(n_new):
            last = plain.logits(x[:, -1])
            tok = last.argmax(-1)
            new.append(tok)
            if return_logits:
                kept.append(last)
            if k < n_new - 1:
                x = plain.blocks(plain.embed_tokens(tok[:, None], P + k), 0, P + k, past)
        out_tokens.append(torch.cat([chunk, torch.stack(new, dim=1)], dim=1))
        if return_logits:
            out_logits.append(torch.stack(kept, dim=1))
    if not out_tokens:
        return prompt.new_zeros(0, P + n_new), None
    return torch.cat(out_tokens), (torch.cat(out_logits) if return_logits else None)


def fast_generate(model, task: Task, a, b, batch_size: int = 16_384) -> Generation:
    """Like :func:`evaluate.generate` (same answers), through :func:`kv_greedy` when supported.

    Falls back to :func:`evaluate.generate` for unpadded formats, unsupported architectures, a
    plain forward that differs from the bridge, or a model with hooks attached.
    """
    a, b = _as_long(a), _as_long(b)
    task.check_operands(a, b)
    plain = None
    device = model_device(model)
    if task.fixed_length and len(a):
        probe, _ = task.encode_batch(a[:8], b[:8])
        plain = checked_plain_forward(model, probe[:, : task.prompt_len].to(device))
    if plain is None:
        return generate(model, task, a, b, batch_size=min(batch_size, DEFAULT_BATCH))
    tokens, _ = task.encode_batch(a, b)
    out, _ = kv_greedy(model, tokens[:, : task.prompt_len].to(device), task.answer_width, plain=plain)
    out = out.cpu()
    return Generation(task.decode_answer(out[:, task.prompt_len :]), out)
