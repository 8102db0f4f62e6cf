"""Repair without retraining: every intervention of ``mechinterp_arith.analysis.repair`` on every model
and seed, at operand lengths past what each model generalises to (docs/length_generalisation.md,
"Repair without retraining"). Inference only; nothing is trained here.

    python analyses/repair.py --lab /work/runs/lab --study-model /work/shared/reference/exploregpt/model_s2.pt \
        [--big /work/runs/24b] [--seeds 0 1 2 3 4] [--n 300]

Models: the shipped ``add3`` (``--no-add3`` leaves it out); the study's ``model_s2`` imported from
``--study-model`` (when the file exists); ``--lab``'s ``learned_sS`` (trained on <= 3 digits, width 6:
tested at 4-6 digits) and ``coupling_sS`` (past their breaking length: see ``--coupled-lengths``);
``--big``'s ``coupling_sS`` (the issue-24 bare command, trained on <= 4 digits) likewise. A model
that is not a finished checkpoint is listed in ``models_missing``. Every intervention of a model is
scored on the same ``--n`` pairs per length (both operands exactly m digits, seed 0).

Coupled models: the breaking length is the first length whose plain exact match falls below 0.5,
searched from the trained width + 1 up over what the widened format holds; the lengths scored are the
breaking length and the two after it (``breaking_lengths``). Writes ``--results`` (default
analyses/results/repair.json); ``mechinterp_arith.report.repair_page.build_repair_page`` draws it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from mechinterp_arith import load
from mechinterp_arith.analysis import repair
from mechinterp_arith.analysis.relation_by_length import relation_by_length
from mechinterp_arith.core.checkpoint import CheckpointError
from mechinterp_arith.core.data import ood_digits_range
from mechinterp_arith.core.files import atomic_write_text
from mechinterp_arith.core.importer import import_checkpoint
from mechinterp_arith.core.position_schemes import largest_id
from mechinterp_arith.core.threads import set_threads
from mechinterp_arith.core.widening import widening_limit

RESULTS = Path(__file__).resolve().parent / "results" / "repair.json"
FACTORS = [0.5, 1.5, 2.0, 3.0, 4.0]
LAYER_FACTORS = [0.5, 2.0, 4.0]  # per layer, for models with more than one layer
BIASES = [2.0, 5.0, 10.0]
KEEP = [
    "m",
    "n",
    "exact",
    "exact_lo",
    "exact_hi",
    "truncated",
    "best",
    "best_coverage",
    "first_extra_digit",
    "extra_digits",
    "gain",
]


def interventions(scheme: str, n_layers: int, trained_digits: int, trained_id_limit: int) -> list[repair.Intervention]:
    """The sweep for one model: none; attention scaling (all layers; per layer when deeper than one);
    the scheme's position remaps; the readout's attention to the extra digit."""
    out = [repair.NO_INTERVENTION] + [repair.attention_scaling(f) for f in FACTORS]
    if n_layers > 1:
        out += [repair.attention_scaling(f, [layer]) for layer in range(n_layers) for f in LAYER_FACTORS]
    if scheme in ("abacus", "coupling"):
        out += [repair.clamp_ids(trained_id_limit), repair.interpolate_ids(trained_id_limit)]
    else:
        out.append(repair.clamp_places(trained_digits))
    out += [repair.readout_attention(trained_digits, bias) for bias in BIASES]
    out += [repair.readout_attention(trained_digits, 5.0, parts=[part]) for part in repair.READOUT_PARTS]
    return out


def widened(ckpt: Any, width: int) -> tuple[Any, Any]:
    """``(model, task)`` of the checkpoint's weights at a wider format (``Checkpoint.widened``)."""
    view = ckpt.widened(width)
    return view.model, view.task


def breaking_lengths(ckpt: Any, n: int, limit: int, log: list[str], step: int = 1) -> list[int]:
    """The coupled model's breaking length (the first scanned length, width + 1, width + 1 + step, ...,
    whose exact match is below 0.5) and the two scanned lengths after it: :func:`relation_by_length`'s
    curve with ``stop_below=0.5``, each length m read at width m (a wider format asks for more answer
    digits, zeros past the sum, which the coupled models get wrong more often: coupling_s2 of the lab at
    7 digits is exact 0.042 at width 7, 0.004 at width 9)."""
    scanned = range(ckpt.task.width + 1, limit + 1, step)
    if not scanned:
        log.append(f"no widened evaluation past {ckpt.task.width} digits: the position table holds {limit}")
        return []
    curve = relation_by_length(ckpt, scanned, n, stop_below=0.5)
    log.extend(f"{m} digits: exact {exact:.3f}" for m, exact in curve["exact"].items())
    m = int(curve.index[-1])
    return [x for x in (m, m + step, m + 2 * step) if x <= limit] if curve["exact"].iloc[-1] < 0.5 else []


def measure(
    group: str,
    seed: int | None,
    model: Any,
    task: Any,
    scheme: str,
    lengths: list[int],
    trained: int,
    id_limit: int,
    n: int,
) -> list[dict[str, Any]]:
    t0 = time.process_time()
    ivs = interventions(scheme, model.cfg.n_layers, trained, id_limit)
    table = repair.repair_table(model, task, ivs, lengths, n=n, trained_digits=trained)
    rows = []
    for r in table.to_dict("records"):
        row = {
            "group": group,
            "seed": seed,
            "scheme": scheme,
            "intervention": r["intervention"],
            "kind": r["kind"],
            "params": r["params"],
        }
        row.update({k: _clean(r[k]) for k in KEEP})
        row["per_digit"] = [round(x, 4) for x in r["per_digit"]]
        rows.append(row)
    cpu = time.process_time() - t0
    best = max(rows, key=lambda r: r["exact"])
    print(
        f"{group} s{seed}: {len(ivs)} interventions x {lengths}: best {best['intervention']} at m={best['m']} "
        f"exact {best['exact']:.3f} (gain {best['gain']:+.3f}); {cpu:.0f} CPU s",
        flush=True,
    )
    return rows


def _clean(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) else round(x, 4)
    return x.item() if hasattr(x, "item") else x


def _mean_of(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r[key] is not None]
    return round(sum(vals) / len(vals), 4) if vals else None


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per group x intervention x length: seeds, exact mean / min / max, the largest gain and how many
    seeds gained >= 0.05 exact over no intervention."""
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["group"], r["intervention"], r["m"]), []).append(r)
    out = []
    for (group, name, m), rs in cells.items():
        ex = [r["exact"] for r in rs]
        gains = [r["gain"] for r in rs if r["gain"] is not None]
        out.append(
            {
                "group": group,
                "intervention": name,
                "kind": rs[0]["kind"],
                "m": m,
                "seeds": len(rs),
                "exact_mean": round(sum(ex) / len(ex), 4),
                "exact_min": min(ex),
                "exact_max": max(ex),
                "max_gain": max(gains) if gains else None,
                "seeds_gaining": sum(g >= 0.05 for g in gains),
                "truncated_mean": _mean_of(rs, "truncated"),
                "first_extra_digit_mean": _mean_of(rs, "first_extra_digit"),
                "extra_digits_mean": _mean_of(rs, "extra_digits"),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lab", type=Path, default=None, help="the lab's models (learned_sS, coupling_sS)")
    p.add_argument("--big", type=Path, default=None, help="issue 24's coupled models (coupling_sS, <= 4 digits)")
    p.add_argument("--study-model", type=Path, default=None, help="the study's model_s2.pt (minGPT)")
    p.add_argument("--no-add3", action="store_true", help="leave the shipped add3 out")
    p.add_argument("--schemes", nargs="+", default=["learned", "coupling"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--n", type=int, default=500, help="pairs per length (default 500)")
    p.add_argument(
        "--big-step", type=int, default=5, help="--big's breaking-length scan: every STEP digits (default 5)"
    )
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument(
        "--update",
        action="store_true",
        help="keep the rows of --results for models (group and seed) this run does not measure (one file, several runs)",
    )
    args = p.parse_args(argv)
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    set_threads(1)
    t0, cpu0 = time.perf_counter(), time.process_time()
    rows: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    breaking: dict[str, Any] = {}

    def study(group: str, ckpt: Any) -> None:
        task = ckpt.task
        lengths = ood_digits_range(task)
        rows.extend(measure(group, 0, ckpt.model, task, "learned", lengths, task.digits, 0, args.n))

    if not args.no_add3:
        study("add3", load("add3", device="cpu"))
    if args.study_model is not None and args.study_model.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            out = import_checkpoint(args.study_model, "mingpt", n_heads=3, out=Path(tmp) / "s2")
            study("model_s2", load(out, device="cpu"))
    elif args.study_model is not None:
        missing.append({"group": "model_s2", "why": f"{args.study_model} is not a file"})
    for root, group_prefix in ((args.lab, "lab"), (args.big, "24b")):
        if root is None:
            continue
        for scheme in args.schemes:
            if root is args.big and scheme != "coupling":
                continue
            for seed in args.seeds:
                group = f"{group_prefix} {scheme}"
                try:
                    ckpt = load(root / f"{scheme}_s{seed}", device="cpu")
                except CheckpointError as e:
                    missing.append({"group": group, "seed": seed, "why": str(e)})
                    print(f"{group} s{seed}: skipped ({e})", flush=True)
                    continue
                task, trained = ckpt.task, ckpt.task.digits
                limit = largest_id(scheme, task) if scheme in ("abacus", "coupling") else 0
                if scheme in ("abacus", "coupling"):
                    log: list[str] = []
                    step = args.big_step if root is args.big else 1
                    lengths = breaking_lengths(ckpt, args.n, max_length(ckpt, scheme), log, step)
                    breaking[f"{group} s{seed}"] = {"lengths": lengths, "log": log}
                    print(f"{group} s{seed}: {'; '.join(log)}", flush=True)
                    if not lengths:
                        missing.append({"group": group, "seed": seed, "why": "no breaking length found: " + log[-1]})
                        continue
                    for m in lengths:  # each length read at its own width (see breaking_lengths)
                        model, wide = widened(ckpt, m)
                        rows.extend(measure(group, seed, model, wide, scheme, [m], trained, limit, args.n))
                else:
                    lengths = ood_digits_range(task)
                    rows.extend(measure(group, seed, ckpt.model, task, scheme, lengths, trained, limit, args.n))
    command = (
        "python analyses/repair.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in (("lab", args.lab), ("big", args.big), ("study_model", args.study_model))
            if v is not None
        )
        + (" --no-add3" if args.no_add3 else "")
        + f" --schemes {' '.join(args.schemes)} --seeds {' '.join(map(str, args.seeds))} --n {args.n}"
        + (f" --big-step {args.big_step}" if args.big is not None else "")
    )
    runs = [
        {
            "command": command,
            "n": args.n,
            "seconds": round(time.perf_counter() - t0, 1),
            "load_average": os.getloadavg(),
        }
    ]
    runs[0]["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    if args.update and args.results.is_file():
        earlier = json.loads(args.results.read_text())
        done = {(r["group"], r["seed"]) for r in rows} | {(m["group"], m.get("seed")) for m in missing}
        rows = [r for r in earlier["rows"] if (r["group"], r["seed"]) not in done] + rows
        missing = [m for m in earlier["models_missing"] if (m["group"], m.get("seed")) not in done] + missing
        breaking = earlier["breaking"] | breaking
        first = {k: earlier.get(k) for k in ("command", "seconds", "load_average", "cpu_seconds", "n")}
        runs = earlier.get("runs", [first]) + runs
    out = {
        "command": command,
        "runs": runs,
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "load_average": os.getloadavg(),
        "n": args.n,
        "breaking": breaking,
        "models_missing": missing,
        "summary": summary(rows),
        "rows": rows,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results, json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.results}: {len(rows)} rows, {out['cpu_seconds']} CPU s")
    return 0


def max_length(ckpt: Any, scheme: str) -> int:
    """The longest operands the model's position table holds (:func:`widening_limit`)."""
    return widening_limit(scheme, ckpt.task, int(ckpt.model.cfg.n_ctx)) or ckpt.task.width


if __name__ == "__main__":
    raise SystemExit(main())
