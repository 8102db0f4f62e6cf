"""Five times the trained length from the bare command (issue 24, item 3): every finished model's length
curve, from 1 digit to the first length whose exact match is below 50% (at least 40 digits where it holds),
with the best equivalence relation at every length, the breaking length's above all.

    python analyses/length_5x.py --runs /work/runs/24e [--schemes coupling abacus learned] [--seeds 0 1 2 3 4]

``--runs`` holds one directory per model, ``SCHEME_sSEED``, trained by the bare command
``mechinterp-arith train --task add --digits 4 --width 20 --positional SCHEME --model-seed S --seed S --out D``
(nothing is trained here), with ``SCHEME_sSEED.log`` beside it (``/usr/bin/time -v`` of the training
process: wall and CPU seconds) and ``queue*.log`` files (``HH:MM:SS start SCHEME S load X`` and ``...
end SCHEME S rc R load Y``: the 1-minute load when training started and ended; a later file's line
wins). The models of one scheme may sit elsewhere (links: ``runs/24e`` links the abacus and learned
models of ``runs/24b``, which coupling's distractor and end-token defaults did not change). For each
model: :func:`~mechinterp_arith.analysis.relation_by_length.relation_by_length` on ``--n`` pairs per
length whose operands both have exactly m digits, lengths 1..``--max-length`` (capped at what the
weights can read: lengths past the format's width are read in a wider format, ``core/widening.py``),
stopping after the first length below ``--stop-below``; then the ``--also`` lengths (4, the trained
length, and the targets 20 and 40) where the curve stopped short of them and the scheme can read them.
One thread; run it niced. Writes ``--results`` (default analyses/results/length_5x.json). Models not finished are listed as pending.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mechinterp_arith import load
from mechinterp_arith.analysis.relation_by_length import by_length_dict, relation_by_length
from mechinterp_arith.core.data import length_pairs
from mechinterp_arith.core.errors import NotApplicable
from mechinterp_arith.core.files import atomic_write_text
from mechinterp_arith.core.numbers import digit_at, low_digits
from mechinterp_arith.core.threads import set_threads
from mechinterp_arith.core.widening import widening_limit

RESULTS = Path(__file__).resolve().parent / "results" / "length_5x.json"
TARGETS = {
    "coupling": ">= 0.95 exact at 20 digits for >= 3 of 5 seeds; stretch: >= 0.90 at 40",
    "learned": "<= 0.05 exact at 20 digits, with its best relation",
    "abacus": "the same lengths and seeds as coupling",
    "time": "<= 15 minutes (900 s) of training per model on one thread",
}


def training_record(runs: Path, scheme: str, seed: int) -> dict[str, Any]:
    """Wall and CPU seconds and peak memory of the training process (its ``/usr/bin/time -v`` log) and
    the load when it started and ended (the queue logs)."""
    out: dict[str, Any] = {}
    log = runs / f"{scheme}_s{seed}.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    fields = {
        "wall_seconds": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)",
        "user_seconds": r"User time \(seconds\): (\S+)",
        "system_seconds": r"System time \(seconds\): (\S+)",
        "max_rss_kib": r"Maximum resident set size \(kbytes\): (\d+)",
    }
    for key, pattern in fields.items():
        found = re.search(pattern, text)
        if found and key == "wall_seconds":
            parts = [float(x) for x in found.group(1).split(":")]
            out[key] = round(sum(x * 60**i for i, x in enumerate(reversed(parts))), 1)
        elif found:
            out[key] = float(found.group(1))
    if "user_seconds" in out and "system_seconds" in out:
        out["cpu_seconds"] = round(out["user_seconds"] + out["system_seconds"], 1)
    for queue in sorted(runs.glob("queue*.log")):
        for line in queue.read_text().splitlines():
            m = re.match(rf"(\S+) (start|end) {scheme} {seed} (?:rc (\d+) )?load (\S+)", line)
            if m:
                out[f"{m.group(2)}_time_utc"] = m.group(1)
                out[f"load_at_{m.group(2)}"] = float(m.group(4))
                if m.group(3) is not None:
                    out["rc"] = int(m.group(3))
    return out


def curve(ckpt, args) -> dict[str, Any]:
    """The length curve (lengths 1.. until exact < ``--stop-below``) and the ``--also`` lengths."""
    cfg = ckpt.model_config
    limit = widening_limit(cfg.positional, ckpt.task, cfg.n_ctx)
    top = args.max_length if limit is None else min(args.max_length, limit)
    table = relation_by_length(ckpt, range(1, top + 1), n=args.n, seed=args.seed, stop_below=args.stop_below)
    rows = by_length_dict(ckpt, table)["lengths"]
    scored = {r["m"] for r in rows}
    extra, refused = [], {}
    for m in args.also:
        if m in scored:
            continue
        try:
            extra += by_length_dict(ckpt, relation_by_length(ckpt, [m], n=args.n, seed=args.seed))["lengths"]
        except NotApplicable as e:
            refused[str(m)] = str(e)
    breaking = next((r for r in rows if r["exact"] < args.stop_below), None)
    return {
        "answers_at_break": answers_at(ckpt, breaking["m"], args) if breaking else None,
        "widest_readable": limit,
        "curve": rows,
        "also": extra,
        "not_readable": refused,
        "breaking_length": breaking["m"] if breaking else None,
        "best_relation_at_break": breaking["best_relation"] if breaking else None,
        "holds_through": rows[-1]["m"] if breaking is None else breaking["m"] - 1,
    }


def answers_at(ckpt, m: int, args) -> dict[str, Any]:
    """What the answers are where the curve breaks, beyond the candidate relations: the share whose low m
    digits are a + b's (all but the top, carry, digit), the top digit written against the true one, and
    the place most often wrong with the share of answers writing there the carry into it (the operands'
    digits at that place read as 0)."""
    (a, b), _ = length_pairs(ckpt.for_length(m).task, m, args.n, seed=args.seed)
    out, truth = ckpt.predict(a, b), ckpt.task.apply(a, b)
    readable = out >= 0
    low = (low_digits(out[readable], m) == low_digits(truth[readable], m)).mean() if readable.any() else float("nan")
    pairs = Counter(zip(digit_at(truth[readable], m).tolist(), digit_at(out[readable], m).tolist()))
    places = range(m + 1)
    right = [float((digit_at(out[readable], p) == digit_at(truth[readable], p)).float().mean()) for p in places]
    worst = min(places, key=lambda p: right[p])
    carry_in = digit_at(low_digits(a[readable], worst) + low_digits(b[readable], worst), worst)
    return {
        "m": m,
        "n": len(a),
        "unreadable": int((~readable).sum()),
        "low_m_digits_right": round(float(low), 6),
        "top_digit_true_vs_written": {f"{t}->{w}": c for (t, w), c in pairs.most_common()},
        "worst_place": worst,
        "worst_place_right": round(right[worst], 6),
        "worst_place_is_carry_in": round(float((digit_at(out[readable], worst) == carry_in).float().mean()), 6),
    }


def exact_at(result: dict[str, Any], m: int) -> float | None:
    for r in result.get("curve", []) + result.get("also", []):
        if r["m"] == m:
            return r["exact"]
    return None


def summary(models: list[dict[str, Any]]) -> dict[str, Any]:
    """The targets of item 3, scheme by scheme, from the finished models."""
    out: dict[str, Any] = {}
    for scheme in sorted({r["scheme"] for r in models}):
        done = [r for r in models if r["scheme"] == scheme and r.get("curve")]
        at20 = {r["seed"]: exact_at(r, 20) for r in done}
        at40 = {r["seed"]: exact_at(r, 40) for r in done}
        out[scheme] = {
            "seeds_finished": sorted(r["seed"] for r in done),
            "exact_at_20": at20,
            "exact_at_40": at40,
            "seeds_at_least_0.95_at_20": sorted(s for s, x in at20.items() if x is not None and x >= 0.95),
            "seeds_at_least_0.90_at_40": sorted(s for s, x in at40.items() if x is not None and x >= 0.90),
            "breaking_length": {r["seed"]: r["breaking_length"] for r in done},
            "train_wall_seconds": {r["seed"]: r["training"].get("wall_seconds") for r in done},
            "train_cpu_seconds": {r["seed"]: r["training"].get("cpu_seconds") for r in done},
        }
    return out


def markdown(result: dict[str, Any]) -> str:
    """The per-seed table of docs/length_generalisation.md from a results file."""
    lines = [
        "| scheme | seed | train wall s | train CPU s | load start-end | ID (held-out) | 4 | 8 | 12 | 16 | 20 | 40 "
        "| breaks at | best relation there (coverage) | low m digits right there | place most wrong: right, = carry into it |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["models"]:
        if "pending" in r:
            lines.append(f"| {r['scheme']} | {r['seed']} | {r['pending']} |" + " |" * 13)
            continue
        t = r["training"]

        def cell(m: int, r: dict[str, Any] = r) -> str:
            x = exact_at(r, m)
            return "" if x is None else f"{x:.3f}"

        best = r["best_relation_at_break"]
        brk = r["answers_at_break"]
        lines.append(
            f"| {r['scheme']} | {r['seed']} | {t.get('wall_seconds', '')} | {t.get('cpu_seconds', '')} | "
            f"{t.get('load_at_start', '')}-{t.get('load_at_end', '')} | {r['held_out_exact']} | "
            + " | ".join(cell(m) for m in (4, 8, 12, 16, 20, 40))
            + f" | {r['breaking_length'] or 'none'} | "
            + (f"{best['name']} ({best['coverage']:.3f}{'' if best['fits'] else ', fits no relation'})" if best else "")
            + (
                f" | {brk['low_m_digits_right']:.3f} | {brk['worst_place']}: {brk['worst_place_right']:.3f}, "
                f"{brk['worst_place_is_carry_in']:.3f} |"
                if brk
                else " | |"
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--runs", type=Path, required=True, help="directory of the trained models (SCHEME_sSEED)")
    p.add_argument("--schemes", nargs="+", default=["coupling", "abacus", "learned"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--n", type=int, default=500, help="pairs per length (default 500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation sets")
    p.add_argument("--max-length", type=int, default=60)
    p.add_argument("--stop-below", type=float, default=0.5)
    p.add_argument(
        "--also", nargs="*", type=int, default=[4, 20, 40], help="lengths scored where the curve stopped short of them"
    )
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--keep", action="store_true", help="keep the models already in --results (score only new ones)")
    p.add_argument("--table", action="store_true", help="print the per-seed markdown table of --results and stop")
    args = p.parse_args(argv)
    if args.table:
        print(markdown(json.loads(args.results.read_text())))
        return 0
    set_threads(1)
    before = json.loads(args.results.read_text()) if args.keep and args.results.exists() else {"models": []}
    kept = {(r["scheme"], r["seed"]): r for r in before["models"] if r.get("curve")}
    models = []
    for scheme in args.schemes:
        for seed in args.seeds:
            path = args.runs / f"{scheme}_s{seed}"
            if (scheme, seed) in kept:
                models.append(kept[(scheme, seed)])
                continue
            record: dict[str, Any] = {"scheme": scheme, "seed": seed, "path": str(path)}
            if not (path / "model.safetensors").exists():
                record["pending"] = "not finished" if path.exists() else "not started"
                models.append(record)
                continue
            ckpt = load(path, device="cpu")
            last = ckpt.history[-1] if ckpt.history else {}
            record.update(
                command=ckpt.config.get("command"),
                steps=last.get("step"),
                held_out_exact=last.get("held_out_exact"),
                loop_seconds=last.get("elapsed_s"),
                model={k: getattr(ckpt.model_config, k) for k in ("n_layers", "n_heads", "d_model", "d_mlp", "n_ctx")},
                training=training_record(args.runs, scheme, seed),
            )
            wall, cpu = time.perf_counter(), time.process_time()
            record.update(curve(ckpt, args))
            record["eval_seconds"] = round(time.perf_counter() - wall, 1)
            record["eval_cpu_seconds"] = round(time.process_time() - cpu, 1)
            models.append(record)
            print(
                f"{scheme} s{seed}: exact at 20 {exact_at(record, 20)}, at 40 {exact_at(record, 40)}, breaks at "
                f"{record['breaking_length']} ({(record['best_relation_at_break'] or {}).get('name')}), "
                f"eval {record['eval_seconds']} s",
                flush=True,
            )
            write(args, models)
    write(args, models)
    return 0


def write(args: argparse.Namespace, models: list[dict[str, Any]]) -> None:
    result = {
        "description": "Issue 24 item 3: length curves of the bare command's models (analyses/length_5x.py; "
        "docs/length_generalisation.md, 'Five times the trained length').",
        "settings": {
            "n": args.n,
            "seed": args.seed,
            "max_length": args.max_length,
            "stop_below": args.stop_below,
            "also": args.also,
            "operands": "both of exactly m digits",
        },
        "targets": TARGETS,
        "summary": summary(models),
        "models": models,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
