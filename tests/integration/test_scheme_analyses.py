"""Every analysis runs on every position scheme (through the command line, as a user would), and
the length-generalisation profile reads each scheme's own position IDs."""

import json

import pytest
import torch

from mechinterp_arith import ModelConfig, Task, load, save_checkpoint
from mechinterp_arith.analysis.length_generalisation import compare_schemes, length_profile, operand_alignment
from mechinterp_arith.cli import main
from mechinterp_arith.core.errors import NotApplicable
from mechinterp_arith.core.model import build_model
from mechinterp_arith.core.position_schemes import SCHEMES

TASK = Task("add", 2, format="reversed", width=3)
FOLLOW_UP = Task("add", 2, format="reversed", width=3, bos=True)  # the follow-up's format: a BOS token first


@pytest.fixture(scope="module")
def scheme_checkpoints(tmp_path_factory):
    """A tiny untrained checkpoint per scheme (the analyses' plumbing, not their findings, is tested);
    ``(scheme, "follow_up")``: the same on the follow-up's format."""
    root = tmp_path_factory.mktemp("schemes")
    out = {}
    for scheme in SCHEMES:
        for key, task in ((scheme, TASK), ((scheme, "follow_up"), FOLLOW_UP)):
            cfg = ModelConfig.for_task(task, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional=scheme, seed=5)
            name = scheme if task is TASK else f"{scheme}_follow_up"
            out[key] = save_checkpoint(root / name, build_model(cfg, task=task), task, cfg)
    return out


def _json(capsys, *args):
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("fmt", ["reversed", "follow_up"])
def test_every_analysis_command_runs_on_the_scheme(scheme, fmt, scheme_checkpoints, capsys, tmp_path):
    ckpt = str(scheme_checkpoints[scheme if fmt == "reversed" else (scheme, fmt)])
    eq = _json(capsys, "equivalence", ckpt, "--ood-digits", "3", "--n", "40", "--json")
    assert eq["ood"]["3"]["n"] == 40
    by_length = _json(capsys, "equivalence", ckpt, "--lengths", "1-3", "--n", "40", "--json")["lengths"]
    assert [(r["m"], r["n"]) for r in by_length] == [(1, 40), (2, 40), (3, 40)]
    assert "nearest_centroid_accuracy" in json.dumps(_json(capsys, "pca", ckpt, "--n", "60", "--n-id", "40", "--json"))
    assert _json(capsys, "logit-lens", ckpt, "--n", "20", "--json")
    assert _json(capsys, "match", ckpt, "--n", "20", "--json")
    patch = _json(capsys, "patch", ckpt, "--digit", "0", "--n", "8", "--json")
    assert "0" in patch["digits"]
    assert _json(capsys, "explain", ckpt, "31", "45", "--json")["a"] == 31
    report = _json(
        capsys,
        "report",
        ckpt,
        "--quick",
        "--n",
        "20",
        "--out",
        str(tmp_path / "r"),
        "--json",
        "--sections",
        "model",
        "accuracy",
        "positions",
        "equivalence",
        "attention",
    )
    assert all(s["status"] == "ok" for s in report["sections"]), report


def test_length_profile_reads_each_schemes_ids(scheme_checkpoints, tmp_path, capsys):
    rows = []
    for scheme in ("learned", "coupling"):
        ckpt = load(scheme_checkpoints[scheme], device="cpu")
        profile = length_profile(ckpt, n=30)
        assert list(profile.index) == [2, 3] and profile["alignment_by_digit"].map(len).tolist() == [2, 3]
        assert profile["exact"].between(0, 1).all() and profile["coverage"].between(0, 1).all()
        rows += [{"scheme": scheme, "seed": 0, "m": m, **r} for m, r in profile.to_dict("index").items()]
    summary = compare_schemes(__import__("pandas").DataFrame(rows))
    assert summary[["scheme", "m"]].values.tolist() == [
        ["learned", 2],
        ["learned", 3],
        ["coupling", 2],
        ["coupling", 3],
    ]
    # the lab's comparison page, from a results file as analyses/length_generalisation.py writes it
    results = tmp_path / "lab.json"
    results.write_text(json.dumps({"rows": rows}, default=list))
    page = _json(capsys, "report", str(results), "--out", str(tmp_path / "lab"), "--json")
    html = (tmp_path / "lab" / "index.html").read_text()
    first = summary.iloc[0]
    assert page["path"].endswith("index.html") and "<td>coupling</td>" in html
    assert f"<td>{first.exact_mean:.3f}</td>" in html and "https://" not in html.split("<script>")[0]
    # coupling hides the zero padding: at 2 digits no head reads the hidden a2/b2 (pos 0, 4)
    ckpt = load(scheme_checkpoints["coupling"], device="cpu")
    tokens = TASK.encode_batch(torch.tensor([12]), torch.tensor([34]))[0][:, : TASK.n_ctx]
    _, cache = ckpt.model.run_with_cache(tokens)
    assert cache["blocks.0.attn.hook_pattern"][0, :, :, [0, 4]].abs().max() == 0
    assert len(operand_alignment(ckpt, 3, n=10)) == 2 * 3  # heads x digits


def test_length_profile_needs_a_longer_operand_and_fixed_positions():
    cfg = ModelConfig.for_task(Task("add", 3, width=3), n_layers=1, n_heads=2, d_model=16, d_mlp=32)
    full = Task("add", 3, width=3)
    from mechinterp_arith.core.checkpoint import Checkpoint

    with pytest.raises(NotApplicable, match="no operand longer"):
        length_profile(Checkpoint(build_model(cfg, task=full), full, cfg), n=10)
    unpadded = Task("add", 2, format="reversed", pad=False)
    cfg = ModelConfig.for_task(unpadded, n_layers=1, n_heads=2, d_model=16, d_mlp=32, positional="abacus")
    with pytest.raises(NotApplicable, match="fixed-length"):
        length_profile(Checkpoint(build_model(cfg, task=unpadded), unpadded, cfg), n=10)


@pytest.mark.parametrize("scheme", ["rotary", "randomized", "abacus", "coupling"])
def test_circuit_discovery_is_skipped_with_its_reason_where_the_plain_forward_cannot_run(
    scheme, scheme_checkpoints, capsys
):
    """Edge-level attribution runs on the plain forward (tokens numbered 0, 1, 2, ...): schemes
    that rotate or renumber positions are skipped, digit by digit, with that reason."""
    out = _json(capsys, "discover", str(scheme_checkpoints[scheme]), "--n", "8", "--heldout", "8", "--json")
    assert out["circuits"] == [] and set(out["skipped"]) == {"0", "1", "2"}
    assert all("plain forward, which does not support" in why for why in out["skipped"].values())
    assert (scheme if scheme != "rotary" else "rotary") in out["skipped"]["0"]
