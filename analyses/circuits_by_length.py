"""Why coupling works, edge by edge: the circuit of every answer digit of the lab's coupled and learned
models (docs/length_generalisation.md), at 3-digit and at 6-digit operands, compared by role.

    python analyses/circuits_by_length.py --lab /work/runs/lab [--schemes coupling learned] [--seeds 0 1 2 3 4]

``--lab`` holds the lab's trained models (``SCHEME_sSEED``, as ``analyses/length_generalisation.py
--out`` writes them; nothing is trained here). For each model, operand length M in ``--lengths`` and
answer digit k in 0..M, ``discover(ckpt, k, operand_digits=M)`` (one thread); a digit whose clean run
does not prefer the clean answer has no circuit (``no_circuit``); a model that is not a finished
checkpoint is listed in ``models_missing``. Writes ``--results`` (default
analyses/results/circuits_by_length.json): the headline numbers (reuse of the ID circuits by the
6-digit circuits of digits 3..6, coupled vs learned, over seeds; seed similarity), the table of
:func:`mechinterp_arith.analysis.circuit_comparison.compare_circuits` and every circuit's JSON
(``Circuit.from_json`` reads them back; the lab page draws its circuit figure from them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

from mechinterp_arith import load
from mechinterp_arith.analysis.circuit_comparison import compare_circuits, seed_similarity
from mechinterp_arith.analysis.discovery import Circuit, discover
from mechinterp_arith.core.checkpoint import CheckpointError
from mechinterp_arith.core.errors import NotApplicable
from mechinterp_arith.core.files import atomic_write_text
from mechinterp_arith.core.threads import set_threads

RESULTS = Path(__file__).resolve().parent / "results" / "circuits_by_length.json"


def _clean(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, float):
        return round(x, 4)
    if hasattr(x, "item"):
        return _clean(x.item())
    return x


def _mean_sd(values: list[float]) -> dict:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"mean": None, "sd": None, "n": 0}
    mean = sum(vals) / len(vals)
    sd = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0.0
    median = (
        sorted(vals)[len(vals) // 2]
        if len(vals) % 2
        else sum(sorted(vals)[len(vals) // 2 - 1 : len(vals) // 2 + 1]) / 2
    )
    return {
        "mean": round(mean, 4),
        "sd": round(sd, 4),
        "median": round(median, 4),
        "min": round(min(vals), 4),
        "max": round(max(vals), 4),
        "n": len(vals),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lab", type=Path, required=True, help="directory of the lab's trained models")
    p.add_argument("--schemes", nargs="+", default=["coupling", "learned"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--lengths", nargs="+", type=int, default=[3, 6])
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument(
        "--circuits-from",
        type=Path,
        default=None,
        help="recompute the comparison from the circuits of an earlier results file (Circuit.from_json) "
        "instead of discovering them again",
    )
    args = p.parse_args(argv)
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    set_threads(1)
    t0 = time.perf_counter()
    circuits: dict[tuple, Circuit] = {}
    no_gap: list[dict] = []
    missing: list[dict] = []
    task = None
    earlier = None if args.circuits_from is None else json.loads(args.circuits_from.read_text())
    if earlier is not None:
        for entry in earlier["circuits"]:
            key = (entry["scheme"], entry["seed"], entry["operand_digits"], entry["digit"])
            circuits[key] = Circuit.from_json(entry["circuit"])
        no_gap, missing = earlier["no_circuit"], earlier.get("models_missing", [])
        task = load(args.lab / f"{earlier['circuits'][0]['scheme']}_s{earlier['circuits'][0]['seed']}").task
    for scheme in args.schemes if earlier is None else []:
        for seed in args.seeds:
            try:
                ckpt = load(args.lab / f"{scheme}_s{seed}", device="cpu")
            except CheckpointError as e:  # e.g. a lab run that never finished: recorded, not retrained
                missing.append({"scheme": scheme, "seed": seed, "why": str(e)})
                print(f"{scheme} s{seed}: skipped ({e})", flush=True)
                continue
            task = ckpt.task
            for m in args.lengths:
                for k in range(min(m, task.answer_width - 1) + 1):
                    try:
                        c = discover(ckpt, k, operand_digits=m)
                    except NotApplicable as e:
                        no_gap.append({"scheme": scheme, "seed": seed, "operand_digits": m, "digit": k, "why": str(e)})
                        print(f"{scheme} s{seed} M={m} k={k}: no circuit ({e})", flush=True)
                        continue
                    circuits[(scheme, seed, m, k)] = c
                    print(
                        f"{scheme} s{seed} M={m} k={k}: {c.n_edges} edges, faithfulness {c.faithfulness:.3f}, "
                        f"cpr {c.cpr:.3f} cmd {c.cmd:.3f} (random {c.metrics['random']['cmd']:.3f}), "
                        f"{c.seconds:.1f} s",
                        flush=True,
                    )
    table = compare_circuits(circuits, task, id_digits=min(args.lengths))
    ood = table[(table.operand_digits == max(args.lengths)) & (table.digit >= min(args.lengths))]
    headline = {}
    for scheme in args.schemes:
        rows = ood[ood.scheme == scheme]
        headline[scheme] = {
            "reuse_weighted_vs_id_analogue": _mean_sd(rows.get("reuse_weighted", []).tolist()),
            "reuse_jaccard_vs_id_analogue": _mean_sd(rows.get("reuse_jaccard", []).tolist()),
            "reuse_containment_vs_id_analogue": _mean_sd(rows.get("reuse_containment", []).tolist()),
            "best_reuse_weighted": _mean_sd(rows.get("best_reuse_weighted", []).tolist()),
            "ood_faithfulness": _mean_sd(rows.faithfulness.tolist()),
            "ood_clean_logit_diff": _mean_sd(rows.clean_logit_diff.tolist()),
            "ood_score_total": _mean_sd(rows.score_total.tolist()),
            "id_clean_logit_diff": _mean_sd(
                table[(table.scheme == scheme) & (table.operand_digits == min(args.lengths))].clean_logit_diff.tolist()
            ),
            "id_score_total": _mean_sd(
                table[(table.scheme == scheme) & (table.operand_digits == min(args.lengths))].score_total.tolist()
            ),
            "ood_agreement": _mean_sd(rows.agreement.tolist()),
            "ood_digits_without_circuit": sum(
                1 for r in no_gap if r["scheme"] == scheme and r["operand_digits"] == max(args.lengths)
            ),
        }
        sims = {}
        for m in args.lengths:
            for k in range(m + 1):
                sim = seed_similarity(circuits, task, scheme, m, k)
                if len(sim) > 1:
                    off = [sim.iloc[i, j] for i in range(len(sim)) for j in range(len(sim)) if i != j]
                    sims[f"{m}_{k}"] = {
                        "mean_offdiagonal": round(sum(off) / len(off), 4),
                        "matrix": sim.round(4).values.tolist(),
                    }
        headline[scheme]["seed_similarity_head_agnostic"] = sims
    out = {
        "command": "python analyses/circuits_by_length.py --lab "
        + str(args.lab)
        + f" --schemes {' '.join(args.schemes)} --seeds {' '.join(map(str, args.seeds))}"
        + f" --lengths {' '.join(map(str, args.lengths))}",
        "seconds": round(time.perf_counter() - t0, 1) if earlier is None else earlier["seconds"],
        "load_average": os.getloadavg() if earlier is None else earlier["load_average"],
        "matching": "edges matched by role relative to the predicted digit k (a_{i} -> a{i-k}, '=' -> ans{-1-k}); "
        "weighted = weighted Jaccard of |score| shares; reuse_* against the 3-digit circuit of the analogue digit "
        "(digit 2 for digits 3..5, digit 3, the carry out, for digit 6)",
        "headline": headline,
        "no_circuit": no_gap,
        "models_missing": missing,
        "table": [{k: _clean(v) for k, v in r.items()} for r in table.to_dict("records")],
        "circuits": [
            {"scheme": s, "seed": seed, "operand_digits": m, "digit": k, "circuit": c.to_json()}
            for (s, seed, m, k), c in circuits.items()
        ],
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results, json.dumps(out, indent=1) + "\n")
    print(json.dumps(headline, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
