"""``mechinterp-arith sweep``: run a sweep spec (a grid of training runs and their analyses) into a directory."""

from __future__ import annotations

import signal
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a grid of training runs and their analyses (resumable)",
        description="Train every run of a TOML sweep spec into DIR/runs/<run id>, analyse each "
        "finished model and write DIR/results.csv. Running it again resumes: finished "
        "runs are skipped, an interrupted run continues, failed runs are retried.",
    )
    p.add_argument("spec", metavar="SPEC", help="sweep spec (TOML; see docs/sweeps.md)")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep directory (created, or resumed)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local worker processes, one torch thread each (default: the cores); with --ray auto: "
        "CPUs of a local instance it starts",
    )
    p.add_argument(
        "--ray",
        default=None,
        metavar="auto|ADDRESS",
        help="run on Ray: auto joins a running cluster or starts a local instance; ADDRESS joins that "
        "cluster (e.g. 10.0.0.5:6379 or ray://head:10001)",
    )
    p.add_argument("--gpus-per-unit", type=float, default=0.0, help="GPUs each Ray task requests (e.g. 1 or 0.25)")
    p.add_argument("--device", default="auto", help="auto (CUDA when a worker sees one), cpu, cuda")
    p.add_argument("--dry-run", action="store_true", help="check the spec and list its runs; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, start="sweep {spec} into {out}")


def run(args) -> int:
    from ..sweep import load_spec, run_sweep
    from ..sweep.spec import ANALYSES
    from .common import command_line, require_positive

    require_positive(args, "workers")
    if args.gpus_per_unit < 0:
        raise ValueError(f"--gpus-per-unit must be >= 0, got {args.gpus_per_unit}")
    spec = load_spec(args.spec)
    if args.dry_run:
        for run_settings in spec.runs:
            print(f"{run_settings.run_id}  group {run_settings.group_id}")
        print(
            f"{len(spec.runs)} runs in {len({r.group_id for r in spec.runs})} groups; analyses: "
            f"{', '.join(k for k in ANALYSES if getattr(spec.analyses, k)) or 'none'}"
        )
        return 0
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the workers too, like Ctrl-C
    command = command_line(args)
    result = run_sweep(
        spec,
        args.out,
        ray=args.ray,
        workers=args.workers,
        gpus_per_unit=args.gpus_per_unit,
        device=args.device,
        progress=not args.quiet,
        command=command,
        threads=args.threads,
    )
    print(
        f"{args.out}: {len(result.frame)} runs ({result.skipped} already finished, {result.ran} run now, "
        f"{result.failed} failed) in {result.seconds:.1f} s; results in {args.out}/results.csv"
    )
    for _, row in result.frame[result.frame["status"] == "failed"].iterrows():
        print(f"  failed: {row['run_id']}: {row['error']}", file=sys.stderr)
    return 1 if result.failed else 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt
