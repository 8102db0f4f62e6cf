"""Importing minGPT / nanoGPT checkpoints: parity with a reference GPT-2 forward, errors, the study's adder."""

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F

from mechinterp_arith import CheckpointError, Task, data, load
from mechinterp_arith.cli import main
from mechinterp_arith.core.importer import convert_state_dict, import_checkpoint

PAPER = Task("add", 3, "paper")  # vocab 10, context 15
LAYERS, D, HEADS, D_MLP, CTX = 2, 24, 4, 40, 17


class Opaque:
    """Not a tensor: weights_only refuses to unpickle it."""


def make_state(vocab=10, ctx=CTX, bias=True, masks=True, lm_head=True, seed=0) -> dict:
    """Random minGPT/nanoGPT-named weights (nn.Linear layout), scaled so every part matters."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.3, mean=0.0):
        return mean + scale * torch.randn(*shape, generator=g)

    sd = {"transformer.wte.weight": r(vocab, D, scale=1.0), "transformer.wpe.weight": r(ctx, D, scale=1.0)}
    for i in range(LAYERS):
        p = f"transformer.h.{i}."
        sd[p + "ln_1.weight"] = r(D, mean=1.0)
        if masks:
            sd[p + "attn.bias"] = torch.tril(torch.ones(ctx, ctx)).view(1, 1, ctx, ctx)
        sd[p + "attn.c_attn.weight"] = r(3 * D, D)
        sd[p + "attn.c_proj.weight"] = r(D, D)
        sd[p + "ln_2.weight"] = r(D, mean=1.0)
        sd[p + "mlp.c_fc.weight"] = r(D_MLP, D)
        sd[p + "mlp.c_proj.weight"] = r(D, D_MLP)
        if bias:
            for name, n in (
                ("ln_1", D),
                ("attn.c_attn", 3 * D),
                ("attn.c_proj", D),
                ("ln_2", D),
                ("mlp.c_fc", D_MLP),
                ("mlp.c_proj", D),
            ):
                sd[f"{p}{name}.bias"] = r(n)
    sd["transformer.ln_f.weight"] = r(D, mean=1.0)
    if bias:
        sd["transformer.ln_f.bias"] = r(D)
    if lm_head:
        sd["lm_head.weight"] = r(vocab, D)
    return sd


def reference_forward(sd: dict, idx: torch.Tensor, n_heads: int, tanh_gelu: bool) -> torch.Tensor:
    """GPT-2-style forward (minGPT/nanoGPT semantics) straight from the raw state dict: [B, T, vocab]."""
    sd = {k.removeprefix("_orig_mod."): v for k, v in sd.items()}
    wte = sd["transformer.wte.weight"]
    d = wte.shape[1]
    hs = d // n_heads
    n_layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.h."))

    def lin(x, name):
        return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))

    def ln(x, name):
        return F.layer_norm(x, (d,), sd[name + ".weight"], sd.get(name + ".bias"), 1e-5)

    B, T = idx.shape
    x = wte[idx] + sd["transformer.wpe.weight"][:T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for i in range(n_layers):
        p = f"transformer.h.{i}."
        q, k, v = lin(ln(x, p + "ln_1"), p + "attn.c_attn").split(d, dim=2)
        q, k, v = (t.view(B, T, n_heads, hs).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        x = x + lin((att @ v).transpose(1, 2).reshape(B, T, d), p + "attn.c_proj")
        h = F.gelu(lin(ln(x, p + "ln_2"), p + "mlp.c_fc"), approximate="tanh" if tanh_gelu else "none")
        x = x + lin(h, p + "mlp.c_proj")
    return ln(x, "transformer.ln_f") @ sd.get("lm_head.weight", wte).T


def tokens(n=16, T=CTX, vocab=10, seed=1):
    return torch.randint(0, vocab, (n, T), generator=torch.Generator().manual_seed(seed))


def imported_logits(out) -> torch.Tensor:
    ckpt = load(out, device="cpu")
    with torch.inference_mode():
        return ckpt.model(tokens())


def test_mingpt_layout_matches_reference_forward(tmp_path):
    sd = make_state()
    torch.save(sd, tmp_path / "mingpt.pt")
    out = import_checkpoint(tmp_path / "mingpt.pt", "mingpt", n_heads=HEADS, task=PAPER, out=tmp_path / "ck")
    ckpt = load(out, device="cpu")
    m = ckpt.model_config
    assert (m.n_layers, m.n_heads, m.d_model, m.d_mlp, m.n_ctx, m.d_vocab, m.act_fn) == (
        LAYERS,
        HEADS,
        D,
        D_MLP,
        CTX,
        10,
        "gelu_new",
    )
    got = imported_logits(out)
    want = reference_forward(sd, tokens(), HEADS, tanh_gelu=True)
    assert got.shape == (16, CTX, 10)
    assert (got - want).abs().max().item() < 1e-4
    # the comparison can fail: the exact-GELU forward misses the tolerance (by ~10x: max diff ~1e-3)
    assert (reference_forward(sd, tokens(), HEADS, tanh_gelu=False) - want).abs().max().item() > 5e-4
    src = ckpt.config["source"]
    assert (
        src["kind"] == "mingpt" and len(src["sha256"]) == 64 and src["ignored_keys"][0] == "transformer.h.0.attn.bias"
    )
    assert ckpt.config["command"].startswith(
        f"mechinterp-arith import {tmp_path / 'mingpt.pt'} --from mingpt --n-heads 4"
    )
    assert torch.equal(ckpt.model.state_dict()["unembed.bias"], torch.zeros(10))


def test_nanogpt_wrapper_with_compile_prefix_matches_reference_forward(tmp_path):
    sd = make_state(seed=2)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # nanoGPT ties them; both names are saved
    model_args = {
        "n_layer": LAYERS,
        "n_head": HEADS,
        "n_embd": D,
        "block_size": CTX,
        "bias": True,
        "vocab_size": 10,
        "dropout": 0.0,
    }
    torch.save(
        {
            "model": {"_orig_mod." + k: v for k, v in sd.items()},
            "model_args": model_args,
            "iter_num": 500,
            "best_val_loss": torch.tensor(0.01),
            "config": {"dataset": "adder"},
        },
        tmp_path / "ckpt.pt",
    )
    out = import_checkpoint(tmp_path / "ckpt.pt", "nanogpt", task=PAPER, out=tmp_path / "ck")  # heads from model_args
    assert load(out, device="cpu").model_config.act_fn == "gelu"
    want = reference_forward(sd, tokens(), HEADS, tanh_gelu=False)
    assert (imported_logits(out) - want).abs().max().item() < 1e-4


def test_nanogpt_without_biases_or_lm_head_matches_reference_forward(tmp_path):
    sd = make_state(bias=False, masks=False, lm_head=False, seed=3)
    torch.save(
        {
            "model": {"_orig_mod." + k: v for k, v in sd.items()},
            "model_args": {"n_layer": LAYERS, "n_embd": D, "block_size": CTX, "bias": False, "vocab_size": 10},
        },
        tmp_path / "ckpt.pt",
    )
    out = import_checkpoint(tmp_path / "ckpt.pt", "nanogpt", n_heads=HEADS, task=PAPER, out=tmp_path / "ck")
    weights = load(out, device="cpu").model.state_dict()
    assert weights["blocks.1.ln2.bias"].abs().sum() == 0 and weights["blocks.0.attn.q.bias"].abs().sum() == 0
    assert torch.equal(weights["unembed.weight"], sd["transformer.wte.weight"])
    want = reference_forward(sd, tokens(), HEADS, tanh_gelu=False)
    assert (imported_logits(out) - want).abs().max().item() < 1e-4


def test_convert_state_dict_splits_qkv_by_output_rows():
    sd = make_state()
    weights, cfg = convert_state_dict(sd, "mingpt", n_heads=HEADS)
    c_attn = sd["transformer.h.1.attn.c_attn.weight"]
    assert torch.equal(weights["blocks.1.attn.k.weight"], c_attn[D : 2 * D])
    assert torch.equal(weights["blocks.1.attn.v.bias"], sd["transformer.h.1.attn.c_attn.bias"][2 * D :])
    assert cfg.d_head == D // HEADS and "transformer.h.0.attn.bias" not in weights


def _drop(sd, key):
    return {k: v for k, v in sd.items() if k != key}


@pytest.mark.parametrize(
    "state, kwargs, message",
    [
        (
            {**make_state(), "transformer.h.0.attn.rotary.weight": torch.zeros(3)},
            {},
            "unknown keys for a mingpt GPT: transformer.h.0.attn.rotary.weight",
        ),
        (
            _drop(make_state(), "transformer.h.1.mlp.c_proj.bias"),
            {},
            "missing keys for a 2-layer mingpt GPT: transformer.h.1.mlp.c_proj.bias",
        ),
        (_drop(make_state(), "lm_head.weight"), {}, "missing keys for a 2-layer mingpt GPT: lm_head.weight"),
        (
            {**make_state(), "transformer.h.1.attn.c_proj.weight": torch.zeros(D, D + 1)},
            {},
            "transformer.h.1.attn.c_proj.weight has shape (24, 25), expected (24, 24)",
        ),
        (make_state(vocab=15), {}, "vocabulary of 15 tokens does not fit task add3 in format 'paper', which uses 10"),
        (make_state(ctx=12, masks=False), {}, "context of 12 positions is shorter than task add3"),
        (make_state(), {"n_heads": None}, "number of attention heads is not stored"),
        (make_state(), {"n_heads": 5}, "d_model=24 is not divisible by n_heads=5"),
        (
            {"transformer.wte.weight": torch.zeros(10, D)},
            {},
            "not a mingpt GPT state dict: missing transformer.h.0.mlp.c_fc.weight, transformer.wpe.weight",
        ),
        ({**make_state(), "transformer.wpe.weight": torch.full((CTX, D), float("nan"))}, {}, "NaN or infinite"),
    ],
)
def test_bad_weights_raise_one_clear_error_and_write_nothing(tmp_path, state, kwargs, message):
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=re.escape(message)):
        import_checkpoint(
            tmp_path / "bad.pt", "mingpt", **{"n_heads": HEADS, **kwargs}, task=PAPER, out=tmp_path / "ck"
        )
    assert not (tmp_path / "ck").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]  # no temporary leftovers either


def test_nanogpt_bias_flag_contradicting_the_weights(tmp_path):
    torch.save({"model": make_state(), "model_args": {"n_head": HEADS, "bias": False}}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="model_args says bias=False but the weights carry biases"):
        import_checkpoint(tmp_path / "c.pt", "nanogpt", task=PAPER, out=tmp_path / "ck")
    torch.save({"model": make_state(), "model_args": {"n_head": HEADS, "n_embd": 32}}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"model_args n_embd=32 contradicts the weights \(24\)"):
        import_checkpoint(tmp_path / "c.pt", "nanogpt", task=PAPER, out=tmp_path / "ck")
    torch.save({"model": make_state(), "model_args": {"n_head": HEADS}}, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="n_heads=6 contradicts the checkpoint's model_args n_head=4"):
        import_checkpoint(tmp_path / "c.pt", "nanogpt", n_heads=6, task=PAPER, out=tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize(
    "obj, message",
    [
        ({**make_state(), "meta": Opaque()}, "refuses to unpickle"),
        ([torch.zeros(3)], "is not a state dict \\(got list\\)"),
        ({**make_state(), "step": "final"}, "entry 'step' holds a str"),
    ],
)
def test_files_that_are_not_state_dicts(tmp_path, obj, message):
    torch.save(obj, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=message):
        import_checkpoint(tmp_path / "x.pt", "mingpt", n_heads=HEADS, task=PAPER, out=tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


def test_cli_errors_are_one_line_and_other_directories_are_not_replaced(tmp_path, capsys):
    torch.save(make_state(), tmp_path / "m.pt")
    assert main(["import", str(tmp_path / "m.pt"), "--from", "mingpt", "--out", str(tmp_path / "ck")]) == 2
    err = capsys.readouterr().err
    assert "import: error:" in err and "--n-heads H" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert (
        main(["import", str(tmp_path / "m.pt"), "--from", "mingpt", "--n-heads", "4", "--out", str(tmp_path / "mine")])
        == 2
    )
    assert "already exists and is not an imported checkpoint" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    args = [
        "import",
        str(tmp_path / "m.pt"),
        "--from",
        "mingpt",
        "--n-heads",
        "4",
        "--out",
        str(tmp_path / "ck"),
        "--json",
    ]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0  # an earlier import is replaced
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["d_mlp"] == D_MLP and out["command"] == "mechinterp-arith " + " ".join(args)


def test_the_studys_adder_imports_and_adds(reference_dir, tmp_path, capsys):
    """model_s2.pt, the released gpt-nano adder: ~100% on 3-digit sums, (a mod 1000) + (b mod 1000) on 4-digit."""
    src = reference_dir / "model_s2.pt"
    out = tmp_path / "s2"
    assert (
        main(
            [
                "import",
                str(src),
                "--from",
                "mingpt",
                "--n-heads",
                "3",
                "--task",
                "add",
                "--digits",
                "3",
                "--format",
                "paper",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    ckpt = load(out, device="cpu")
    assert ckpt.config["source"]["sha256"] == "5cf788d370e90b2a58b202b9cbb17e174aae0dc83f5ef28fe581484b3a4717b9"
    assert ckpt.config["command"].startswith(f"mechinterp-arith import {src} --from mingpt --n-heads 3")
    a, b = data.random_pairs(ckpt.task, 2000, seed=0)
    assert (ckpt.predict(a, b) == a + b).mean() >= 0.99  # measured: 1.0
    assert ckpt.predict([349, 1349, 9999, 4567], [705, 705, 9999, 8765]).tolist() == [1054, 1054, 1998, 1332]
    oa, ob = data.ood_both(ckpt.task, 4, 300, seed=0)
    pred = ckpt.predict(oa, ob)
    assert (pred == oa + ob).mean() == 0.0
    assert (pred == oa % 1000 + ob % 1000).mean() >= 0.99  # measured: 1.0 on 2,000
    # parity with the minGPT forward on the real weights
    raw = torch.load(src, map_location="cpu", weights_only=True)
    toks = ckpt.task.encode_batch(a[:64], b[:64])[0][:, :15]
    with torch.inference_mode():
        assert (ckpt.model(toks) - reference_forward(raw, toks, 3, tanh_gelu=True)).abs().max().item() < 1e-4
