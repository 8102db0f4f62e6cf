"""Circuit discovery on add3: the edge graph against TL's, the batched edge ablation against a
hook-level ablation written here, node scores against TL's attribution_patch, the JSON contract."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformer_lens.tools.analysis import attribution_patching as tl_ap

from mechinterp_arith.analysis.attribution import attribute
from mechinterp_arith.analysis.discovery import Circuit, discover, score_edges, select_circuit, verify_circuit
from mechinterp_arith.analysis.edge_forward import PairRuns, ablated_logits
from mechinterp_arith.analysis.edge_graph import EdgeGraph
from mechinterp_arith.analysis.metrics import logit_diff_metric
from mechinterp_arith.analysis.prompt_pairs import differ_in_answer_digit, make_pairs
from mechinterp_arith.cli import main
from mechinterp_arith.core.plain_forward import PlainGPT

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def circuit0(add3):
    return discover(add3, digit=0)


def test_edge_graph_is_tls(add3):
    acts = {"hook_embed": torch.zeros(1, 15, 48), "blocks.2.hook_resid_post": torch.zeros(1, 15, 48)}
    for l in range(3):
        for name in (
            "attn.hook_z",
            "hook_mlp_out",
            "attn.hook_result",
            "attn.hook_q_input",
            "attn.hook_k_input",
            "attn.hook_v_input",
            "hook_mlp_in",
        ):
            acts[f"blocks.{l}.{name}"] = torch.zeros(1, 15, 3, 16)
    tl_edges = tl_ap.enumerate_edges(add3.model, tl_ap.GradientCache(acts, {}, torch.tensor(0.0)))
    graph = EdgeGraph(3, 3, 15)
    assert graph.edges() == tl_edges and graph.n_edges == len(tl_edges) == 2580
    assert graph.edges(graph.mask_of(tl_edges[100:140])) == tl_edges[100:140]


def _hook_level_ablation(model, clean, corrupted, edges):
    """TL's faithfulness ablation written with bridge hooks: every reader's input is its live input
    with the live contribution of each writer not kept replaced by the corrupted run's."""
    graph = EdgeGraph(model.cfg.n_layers, model.cfg.n_heads, clean.shape[1])
    kept = set(edges)
    excluded: dict = {}
    for w, r in graph.edges():
        if (w, r) not in kept:
            excluded.setdefault(r, []).append(w)
    sd = model.state_dict()
    L, H = model.cfg.n_layers, model.cfg.n_heads

    def contributions(cache):  # writer Node -> [B, pos, D]
        out = {}
        for p in range(clean.shape[1]):
            out[tl_ap.Node("embed", p)] = cache["hook_embed"][:, p]
            for l in range(L):
                for h in range(H):
                    out[tl_ap.Node("attn_head_out", p, l, h)] = (
                        cache[f"blocks.{l}.attn.hook_z"][:, p, h] @ model.W_O[l, h]
                    )
                out[tl_ap.Node("mlp_out", p, l)] = cache[f"blocks.{l}.hook_mlp_out"][:, p]
        return out

    with torch.no_grad():
        _, corr_cache = model.run_with_cache(corrupted)
    corr = contributions(corr_cache)
    live: dict = {}

    def rebuilt(resid, reader):
        x = resid[:, reader.position].clone()
        for w in excluded.get(reader, []):
            x += corr[w] - live[w]
        return x

    def capture(name):
        def hook(act, hook):
            live[name] = act

        return hook

    def attn_hook(l, kind):
        def hook(act, hook):
            act = act.clone()
            for p in range(act.shape[1]):
                for h in range(H):
                    x = rebuilt(live[f"blocks.{l}.hook_resid_pre"], tl_ap.Node(f"{kind}_input", p, l, h))
                    x = F.layer_norm(x, (x.shape[-1],), sd[f"blocks.{l}.ln1.weight"], sd[f"blocks.{l}.ln1.bias"], 1e-5)
                    W, b = getattr(model, f"W_{kind.upper()}")[l, h], getattr(model, f"b_{kind.upper()}")[l, h]
                    act[:, p, h] = x @ W + b
            return act

        return hook

    def mlp_hook(l):
        def hook(act, hook):
            act = act.clone()
            for p in range(act.shape[1]):
                x = rebuilt(live[f"blocks.{l}.hook_resid_mid"], tl_ap.Node("mlp_in", p, l))
                x = F.layer_norm(x, (x.shape[-1],), sd[f"blocks.{l}.ln2.weight"], sd[f"blocks.{l}.ln2.bias"], 1e-5)
                act[:, p] = (
                    F.gelu(x @ model.W_in[l] + model.b_in[l], approximate="tanh") @ model.W_out[l] + model.b_out[l]
                )
            for p in range(act.shape[1]):
                live[tl_ap.Node("mlp_out", p, l)] = act[:, p]
            return act

        return hook

    def z_hook(l):
        def hook(act, hook):
            for p in range(act.shape[1]):
                for h in range(H):
                    live[tl_ap.Node("attn_head_out", p, l, h)] = act[:, p, h] @ model.W_O[l, h]

        return hook

    def embed_hook(act, hook):
        for p in range(act.shape[1]):
            live[tl_ap.Node("embed", p)] = act[:, p]

    def final_hook(act, hook):
        act = act.clone()
        for p in range(act.shape[1]):
            act[:, p] = rebuilt(act, tl_ap.Node("logits", p, L - 1))
        return act

    hooks = [("hook_embed", embed_hook)]
    for l in range(L):
        hooks += [(f"blocks.{l}.hook_resid_pre", capture(f"blocks.{l}.hook_resid_pre"))]
        hooks += [(f"blocks.{l}.attn.hook_{k}", attn_hook(l, k)) for k in "qkv"]
        hooks += [
            (f"blocks.{l}.attn.hook_z", z_hook(l)),
            (f"blocks.{l}.hook_resid_mid", capture(f"blocks.{l}.hook_resid_mid")),
            (f"blocks.{l}.hook_mlp_out", mlp_hook(l)),
        ]
    hooks += [(f"blocks.{L - 1}.hook_resid_post", final_hook)]
    with torch.no_grad():
        return model.run_with_hooks(clean, fwd_hooks=hooks)


def test_edge_ablation_equals_a_hook_level_ablation(add3):
    pairs = differ_in_answer_digit(add3.task, 1, n=3, seed=5)
    graph = EdgeGraph(3, 3, 15)
    g = torch.Generator().manual_seed(0)
    keep = (torch.rand(15, graph.n_readers, graph.n_writers, generator=g) < 0.5) & graph.feeds
    keep[:, :, 0] |= graph.feeds[:, 0]  # every embedding kept: the runs differ by much
    plain = PlainGPT(add3.model)
    runs = PairRuns.build(plain, pairs.clean_tokens, pairs.corrupted_tokens)
    ours = ablated_logits(plain, graph, runs, keep[runs.start :].float()[None])[0]
    ref = _hook_level_ablation(add3.model, pairs.clean_tokens, pairs.corrupted_tokens, graph.edges(keep))
    sl = slice(runs.start, None)
    with torch.no_grad():
        clean, corr = add3.model(pairs.clean_tokens), add3.model(pairs.corrupted_tokens)
    assert (ours[:, sl] - ref[:, sl]).abs().max() < 2e-4
    assert (ref[:, sl] - clean[:, sl]).abs().max() > 1 and (ref[:, sl] - corr[:, sl]).abs().max() > 1  # a real ablation
    # dropping dangling edges changes nothing, exactly
    sources = (pairs.clean_tokens != pairs.corrupted_tokens).any(0)
    pruned = graph.prune_dangling(keep, sources, torch.ones(15, dtype=torch.bool))
    assert pruned.sum() < keep.sum()
    assert torch.allclose(
        ablated_logits(plain, graph, runs, pruned[runs.start :].float()[None])[0], ours, atol=1e-5, equal_nan=True
    )


def test_node_scores_equal_tls_attribution_patch(add3):
    pairs = differ_in_answer_digit(add3.task, 0, n=3, seed=1)
    ref: dict = {}
    for i in range(len(pairs)):  # TL scores one pair per metric call; its batch mean of per-pair scores
        one = make_pairs(
            add3.task, *(t[i : i + 1] for t in (pairs.clean_a, pairs.clean_b, pairs.corrupted_a, pairs.corrupted_b))
        )
        res = tl_ap.attribution_patch(add3.model, one.clean_tokens, one.corrupted_tokens, logit_diff_metric(one, 0))
        for node, score in res.node_scores.items():
            ref[node] = ref.get(node, 0.0) + score / len(pairs)
    att = attribute(add3, pairs, logit_diff_metric(pairs, 0), ig_steps=1, end=15)
    ours = att.edge_scores.sum(1)  # a writer's node score is the sum over its edges [pos, writer]
    diffs = [abs(float(ours[node.position, att.graph.writer_index(node)]) - score) for node, score in ref.items()]
    assert len(ref) == 15 * 13 and max(ref.values()) > 1 and max(diffs) < 1e-3


def test_eap_ig_closes_the_linear_estimates_gap(add3):
    from mechinterp_arith.analysis.patching import patch_each_site

    pairs = differ_in_answer_digit(add3.task, 0, n=16, seed=2)
    metric = logit_diff_metric(pairs, 0)
    with torch.inference_mode():
        _, cache = add3.model.run_with_cache(pairs.clean_tokens)
    sweep = patch_each_site(add3.model, pairs.corrupted_tokens, cache, metric, "mlp_out")
    exact = (sweep.values - sweep.baseline).nan_to_num()
    miss = {s: (attribute(add3, pairs, metric, s).node_scores("mlp_out") - exact).abs().max() for s in (1, 5)}
    assert exact.abs().max() > 10 and miss[5] < 0.5 * miss[1]


def test_discovered_circuit_and_its_json(circuit0):
    out = circuit0.to_json()
    assert set(out) >= {"digit", "edges", "n_edges_total", "faithfulness", "faithfulness_ci95", "pairs", "seconds"}
    assert out["digit"] == 0 and out["n_edges_total"] == 2580 and out["pairs"] == 256
    assert (
        0.9 <= out["faithfulness"] <= 1.05
        and out["faithfulness_ci95"][0] <= out["faithfulness"] <= out["faithfulness_ci95"][1]
    )
    assert 0 < len(out["edges"]) <= 0.1 * out["n_edges_total"]
    scores = [abs(e["score"]) for e in out["edges"]]
    assert scores == sorted(scores, reverse=True)
    edges = [(tl_ap.Node(**e["writer"]), tl_ap.Node(**e["reader"])) for e in out["edges"]]  # TL's Node accepts them
    assert torch.equal(circuit0.graph.mask_of(edges), circuit0.mask)
    assert {w.kind for w, _ in edges} <= {"embed", "attn_head_out", "mlp_out"} and any(
        r.kind == "logits" for _, r in edges
    )
    json.dumps(out)


def test_json_gains_operand_digits_and_mibs_metrics_and_round_trips(add3, circuit0):
    out = json.loads(json.dumps(circuit0.to_json()))
    assert out["operand_digits"] is None and out["graph"] == {"n_layers": 3, "n_heads": 3, "n_pos": 15}
    m = out["metrics"]
    assert m["edges"] == [int(f * 2580) for f in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)]
    # the last cut is the whole graph (the clean run), the first keeps 2 edges of 2580
    assert m["faithfulness"][-1] == pytest.approx(1.0, abs=1e-4) and m["random"]["faithfulness"][-1] == pytest.approx(
        1.0, abs=1e-4
    )
    # cpr/cmd: the trapezoid rule of an independent implementation (numpy) on the reported curve
    assert out["cpr"] == pytest.approx(np.trapezoid(m["faithfulness"], m["fractions"]), abs=1e-3)
    assert out["cmd"] == pytest.approx(np.trapezoid(np.abs(1 - np.array(m["faithfulness"])), m["fractions"]), abs=1e-3)
    # the ranking's curve is far from the model's, a random ranking's far more
    assert out["cmd"] < 0.1 < 0.4 < m["random"]["cmd"] and out["cpr"] > 0.9 > m["random"]["cpr"]
    back = Circuit.from_json(out)
    assert back == circuit0 and back.to_json() == circuit0.to_json() and torch.equal(back.mask, circuit0.mask)
    assert back.cpr == out["cpr"] and back.n_edges_total == 2580
    other = Circuit.from_json({**out, "edges": out["edges"][1:]})
    assert other != circuit0
    with pytest.raises(ValueError, match="not a discover --json circuit"):
        Circuit.from_json({k: v for k, v in out.items() if k != "graph"})


def test_discover_is_its_three_steps(add3):
    scored = score_edges(add3, 1, n=24, seed=3)
    mask, curve = select_circuit(scored, target=0.9)
    again = verify_circuit(add3, scored, mask, n_heldout=64)
    whole = discover(add3, 1, n=24, n_heldout=64, seed=3, target=0.9)
    assert torch.equal(whole.mask, mask) and whole.search["curve"] == curve
    assert (whole.faithfulness, whole.metrics) == (again.faithfulness, again.metrics)


def test_discover_cli(capsys):
    code = main(["discover", "add3", "--digit", "3", "--json", "--device", "cpu", "--heldout", "64"])
    out = capsys.readouterr()
    assert code == 0, out.err
    got = json.loads(out.out)
    assert got["digit"] == 3 and got["faithfulness"] >= 0.9 and got["pairs"] == 64
    code = main(["discover", "add3", "--digit", "5", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "answer digit 5 of add3 cannot be changed alone" in err and len(err.strip().splitlines()) == 1
    code = main(["discover", "add3", "--digit", "1", "--operand-digits", "2", "--json", "--heldout", "64"])
    got = json.loads(capsys.readouterr().out)
    assert code == 0 and got["operand_digits"] == 2 and got["faithfulness"] >= 0.9 and {"cpr", "cmd"} <= set(got)
    code = main(["discover", "add3", "--digit", "1", "--operand-digits", "6"])
    err = capsys.readouterr().err
    assert code == 2 and "operand_digits must be in 1..5" in err and len(err.strip().splitlines()) == 1


def test_every_task_runs_or_says_why(add3):
    import mechinterp_arith as ma
    from mechinterp_arith.analysis.interchange import extra_digit_interchange
    from mechinterp_arith.core.checkpoint import Checkpoint
    from mechinterp_arith.core.errors import NotApplicable

    modular = ma.load("addmod2_p101", device="cpu")  # 2-digit addition mod 101
    circuit = discover(modular, 1, n=24, n_heldout=64)
    assert circuit.faithfulness > 0.85 and circuit.n_edges <= 0.1 * circuit.n_edges_total == 206.4
    with pytest.raises(NotApplicable, match="cannot be changed alone"):
        discover(modular, 2)
    with pytest.raises(NotApplicable, match="modular answer"):
        extra_digit_interchange(modular)
    unpadded = Checkpoint(add3.model, ma.Task("add", 3, format="plain", pad=False), add3.model_config)
    with pytest.raises(NotApplicable, match="fixed-length"):
        discover(unpadded, 0)
