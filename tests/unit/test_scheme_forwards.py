"""Every forward of the toolkit against the bridge, under every position scheme.

The plain forward (decoding, patching), the stacked training forward and the edge forward all read
each scheme's position IDs and hidden tokens from the model's position rule, and rotary models'
rotations from the bridge's own tables; here each one is checked against the hooked bridge on
seeded random weights (no training): logits and gradients to float rounding, on padded and
unpadded rows, in distribution and at operand lengths the models were never meant to see.
"""

import pytest
import torch
from support.models import moved_model

from mechinterp_arith import Task, data
from mechinterp_arith.analysis.edge_forward import PairRuns, ablated_logits, reader_gradients
from mechinterp_arith.analysis.edge_graph import EdgeGraph
from mechinterp_arith.analysis.metrics import logit_diff_metric
from mechinterp_arith.analysis.patching import patch_each_site
from mechinterp_arith.analysis.prompt_pairs import differ_in_answer_digit, make_pairs
from mechinterp_arith.core.decoding import generate, kv_greedy
from mechinterp_arith.core.numbers import with_digits
from mechinterp_arith.core.plain_forward import LOGIT_RTOL, MAX_LOGIT_DIFF, PlainGPT
from mechinterp_arith.core.position_schemes import SCHEMES, position_rule
from mechinterp_arith.core.seeding import generator
from mechinterp_arith.core.stacked_forward import StackedForward

PADDED = Task("add", 2, format="reversed", width=4)  # trained length 2; operands of 3 and 4 digits fit
UNPADDED = Task("add", 2, format="reversed", pad=False, width=4)


def _close(ours: torch.Tensor, ref: torch.Tensor) -> bool:
    """Equal to float rounding, by the toolkit's own criterion for the plain forward (1e-4 + 1e-5 |logit|;
    measured here: at most 1.8e-5 on logits of size ~5-10, rotary's edge forward the largest)."""
    return torch.allclose(ours, ref, atol=MAX_LOGIT_DIFF, rtol=LOGIT_RTOL)


def _model(scheme: str, task: Task = PADDED, seed: int = 3, n_layers: int = 2):
    """A seeded model whose weights are moved off their initialisation (larger, varied logits)."""
    return moved_model(scheme, task, seed, n_layers)[0]


def _rows(task: Task, lengths: tuple[int, int], n: int = 24, seed: int = 0) -> torch.Tensor:
    """Model inputs (every token but the last) of ``n`` pairs with operands of up to ``lengths`` digits."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 10 ** lengths[0], (n,), generator=g)
    b = torch.randint(0, 10 ** lengths[1], (n,), generator=g)
    tokens, _ = task.encode_batch(a, b)
    return tokens[:, :-1]


INPUTS = [("padded ID", PADDED, (2, 2)), ("padded OOD", PADDED, (4, 3)), ("unpadded ID", UNPADDED, (2, 2))]
INPUTS += [("unpadded OOD", UNPADDED, (4, 4))]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_plain_forward_is_the_bridge_on_every_input(scheme):
    for name, task, lengths in INPUTS:
        model = _model(scheme, task)
        tokens = _rows(task, lengths)
        with torch.inference_mode():
            ref, cache = model.run_with_cache(tokens)
            logits, ours = PlainGPT(model).run(tokens)
        assert ref.abs().max() > 2, name  # logits worth comparing
        assert _close(logits, ref), name
        assert torch.allclose(ours[("z", 1)], cache["blocks.1.attn.hook_z"], atol=1e-5), name
    if scheme in ("abacus", "coupling"):  # padding is hidden: some rows hide tokens
        assert PlainGPT(model).numbering(_rows(PADDED, (2, 2))).visible is not None


@pytest.mark.parametrize("scheme", SCHEMES)
def test_key_value_decoding_is_the_bridges(scheme):
    model = _model(scheme)
    a, b = data.random_pairs(PADDED, 64, max_value=10**4, seed=1)
    prompt = PADDED.encode_batch(a, b)[0][:, : PADDED.prompt_len]
    fast, bridge = generate(model, PADDED, a, b), generate(model, PADDED, a, b, path="bridge")
    assert fast.path == "kv" and torch.equal(fast.tokens, bridge.tokens)
    out, logits = kv_greedy(model, prompt, PADDED.answer_width, return_logits=True, rows=24)
    with torch.inference_mode():
        ref = model(out[:, :-1])[:, PADDED.prompt_len - 1 :]
    assert torch.equal(out, fast.tokens) and (logits - ref).abs().max() < 1e-4


def _training_numbering(models, tokens, step: int):
    """Each model's random training positions for ``tokens`` [K, B, T] (its rule's draw), else None."""
    ids, masks = [], []
    for k, model in enumerate(models):
        rule = position_rule(model)
        if rule is None:
            return None, None
        drawn = rule.training_inputs(tokens[k], generator(k, "positions", step))
        ids.append(drawn["position_ids"])
        masks.append(drawn.get("attention_mask", torch.ones_like(tokens[k])).bool())
    return torch.stack(ids), torch.stack(masks)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_stacked_forward_logits_and_gradients_are_the_bridges(scheme):
    for task, lengths in ((PADDED, (2, 2)), (PADDED, (4, 3)), (UNPADDED, (2, 2))):
        models = [_model(scheme, task, seed=s) for s in (1, 2)]
        fwd = StackedForward(models)
        tokens = torch.stack([_rows(task, lengths, seed=s) for s in (1, 2)])  # [K, B, T]
        for how in ("evaluation", "training"):
            ids, visible = fwd.numbering(tokens) if how == "evaluation" else _training_numbering(models, tokens, 7)
            if how == "training" and ids is None:
                continue  # no rule: no random positions
            params = [p for m in models for p in m.parameters() if p.requires_grad]
            ours = fwd(tokens, 0, ids, visible)
            grads = torch.autograd.grad(ours.square().mean(), params)
            refs = []
            for k, model in enumerate(models):
                kwargs = {} if how == "evaluation" else {"position_ids": ids[k], "attention_mask": visible[k].long()}
                refs.append(model(tokens[k], **kwargs))
            ref = torch.stack(refs)
            ref_grads = torch.autograd.grad(ref.square().mean(), params)
            assert _close(ours, ref), (how, lengths)
            for g, r in zip(grads, ref_grads):
                assert (g - r).abs().max() <= 1e-6 + 1e-4 * r.abs().max(), (how, lengths)


def _pairs(task: Task, kind: str, n: int = 32):
    """ID pairs whose answers differ in digit 1; OOD pairs (4-digit operands); pairs whose corrupted
    a is longer (1 digit vs 3: abacus and coupling number and hide tokens differently)."""
    if kind == "ID":
        return differ_in_answer_digit(task, 1, n=n, seed=0)
    g = torch.Generator().manual_seed(1)
    if kind == "OOD":
        a, b, x, y = (with_digits(4, n, g) for _ in range(4))
        return make_pairs(task, a, b, x, y)
    a, b = with_digits(1, n, g), with_digits(2, n, g)
    return make_pairs(task, a, b, a + 100 * torch.randint(1, 10, (n,), generator=g).numpy(), b)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_edge_ablation_keeps_the_clean_run_and_drops_to_the_corrupted_run(scheme):
    model = _model(scheme)
    plain = PlainGPT(model)
    for kind in ("ID", "OOD", "longer"):
        pairs = _pairs(PADDED, kind)
        runs = PairRuns.build(plain, pairs.clean_tokens, pairs.corrupted_tokens)
        graph = EdgeGraph(plain.L, plain.H, pairs.clean_tokens.shape[1])
        every = graph.feeds.expand(1, runs.n_pos, -1, -1).float()
        logits = ablated_logits(plain, graph, runs, torch.cat([every, torch.zeros_like(every)]))
        with torch.inference_mode():
            clean, corrupted = model(pairs.clean_tokens), model(pairs.corrupted_tokens)
        s = runs.start
        assert _close(logits[0][:, s:], clean[:, s:]) and _close(logits[1][:, s:], corrupted[:, s:]), kind
        assert (clean[:, s:] - corrupted[:, s:]).abs().max() > 0.1  # the two runs differ
        # a random circuit, closed by pruning: pruned edges change no ablated run
        g = torch.Generator().manual_seed(2)
        mask = (torch.rand(graph.n_pos, graph.n_readers, graph.n_writers, generator=g) < 0.3) & graph.feeds
        sinks = torch.zeros(graph.n_pos, dtype=torch.bool)
        sinks[-3:] = True
        closed = graph.prune_dangling(mask, runs.differing, sinks, runs.rewired)
        both = torch.stack([mask, closed])[:, runs.start : runs.end].float()
        kept = ablated_logits(plain, graph, runs, both)[:, :, -3:]
        assert closed.sum() < mask.sum() and (kept[0] - kept[1]).abs().max() < 1e-5, kind
        renumbered = runs.differing & ~(pairs.clean_tokens != pairs.corrupted_tokens).any(0)
        if scheme in ("abacus", "coupling") and kind == "longer":
            assert bool(runs.rewired.any()) and bool(renumbered.any())  # a zero inside the longer a
        if scheme not in ("abacus", "coupling") or kind == "OOD":  # IDs follow the layout alone
            assert not renumbered.any() and not runs.rewired.any()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_reader_gradients_are_the_bridges(scheme):
    """d(metric)/d(reader input) at the clean run: the gradient at each layer's ln1 input (the q/k/v
    readers' sum), ln2 input (the MLP reader) and ln_final input (the logits reader)."""
    model = _model(scheme)
    plain = PlainGPT(model)
    pairs = _pairs(PADDED, "ID")
    metric = logit_diff_metric(pairs, 1)
    runs = PairRuns.build(plain, pairs.clean_tokens, pairs.corrupted_tokens)
    graph = EdgeGraph(plain.L, plain.H, pairs.clean_tokens.shape[1])
    ours = reader_gradients(plain, graph, runs, metric, torch.ones(1))[0]  # [pos, R, B, D]
    names = [f"blocks.{l}.ln{i}.hook_in" for l in range(plain.L) for i in (1, 2)] + ["ln_final.hook_in"]
    leaves = {n: None for n in names}

    def leaf(act, hook):
        leaves[hook.name] = torch.zeros_like(act, requires_grad=True)
        return act + leaves[hook.name]

    logits = model.run_with_hooks(pairs.clean_tokens, fwd_hooks=[(n, leaf) for n in names])
    grads = dict(zip(names, torch.autograd.grad(metric(logits), [leaves[n] for n in names])))
    s, e = runs.start, runs.end
    for l in range(plain.L):
        attn = ours[:, graph.attn_readers(l)].sum(1).transpose(0, 1)  # [B, pos, D]
        assert torch.allclose(attn, grads[f"blocks.{l}.ln1.hook_in"][:, s:e], atol=1e-6, rtol=1e-4)
        mlp = ours[:, graph.mlp_reader(l)].transpose(0, 1)
        assert torch.allclose(mlp, grads[f"blocks.{l}.ln2.hook_in"][:, s:e], atol=1e-6, rtol=1e-4)
    final = ours[:, graph.logits_reader].transpose(0, 1)
    assert torch.allclose(final, grads["ln_final.hook_in"][:, s:e], atol=1e-6, rtol=1e-4)
    assert final.abs().max() > 1e-3


@pytest.mark.parametrize("scheme", SCHEMES)
def test_fast_patching_is_the_hook_path(scheme):
    model = _model(scheme)
    for kind in ("OOD", "longer"):
        pairs = _pairs(PADDED, kind, n=8)
        metric = logit_diff_metric(pairs, 2 if kind == "longer" else 1)  # a + 100 d changes digit 2
        with torch.inference_mode():
            _, cache = model.run_with_cache(pairs.clean_tokens)
        for site, by_pos in (("resid_pre", True), ("z", True), ("z", False)):  # the fast path's three modes
            fast = patch_each_site(model, pairs.corrupted_tokens, cache, metric, site, by_pos)
            hooks = patch_each_site(model, pairs.corrupted_tokens, cache, metric, site, by_pos, method="hooks")
            assert fast.method == "fast" and hooks.method == "hooks"
            assert (fast.values - hooks.values).abs().max() < 1e-5, (kind, site)
            assert (fast.values - fast.baseline).abs().max() > 1e-3  # patches move the metric
