"""``mechinterp-arith report``: the self-contained HTML report of a checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

from ..report.section_keys import SECTION_KEYS
from .checks import CliError
from .common import add_checkpoint_arg, add_device_arg, command_line, print_json


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained, offline HTML report (DIR/index.html)",
        description="Model card, training curves, accuracy by operand length, the analyses "
        "this build provides, and attention views of ID inputs beside their OOD "
        "class members, on one page that needs no network.",
    )
    add_checkpoint_arg(p, default="add3")
    p.epilog = (
        "CKPT may also be a sweep directory (mechinterp-arith sweep --out DIR): one page comparing its runs; "
        "or the results file of the length-generalisation lab (analyses/length_generalisation.py, "
        "a .json): one page comparing the position schemes; or the results of analyses/repair.py: the page of "
        "repair without retraining."
    )
    p.add_argument("--out", default="report", metavar="DIR", help="output directory (default: ./report)")
    p.add_argument(
        "--n", type=int, default=None, help="operand pairs per evaluation set (default 500; 100 with --quick)"
    )
    p.add_argument("--quick", action="store_true", help="small sample sizes (a fast preview)")
    p.add_argument("--seed", type=int, default=0, help="seed of every sampled set")
    p.add_argument(
        "--sections",
        nargs="+",
        default=None,
        metavar="KEY",
        help=f"only these sections, from: {' '.join(SECTION_KEYS)}",
    )
    p.add_argument(
        "--circuits",
        default=None,
        metavar="FILE",
        help="with a lab results file: the circuits of analyses/circuits_by_length.py "
        "(default: circuits_by_length.json next to the results file, if any)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary (path, size, per-section timing)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_arg(p)
    p.set_defaults(func=run, start="building the report of {checkpoint} into {out}")


def run(args) -> int:
    from ..core.checkpoint import load
    from ..report.build import build_report
    from ..report.context import ReportSettings
    from ..sweep.results import is_sweep_dir

    if is_sweep_dir(args.checkpoint):
        return run_sweep_report(args)
    if str(args.checkpoint).endswith(".json"):
        return run_lab_report(args)
    settings = ReportSettings(
        n=args.n, quick=args.quick, seed=args.seed, sections=tuple(args.sections) if args.sections else None
    )
    settings.n_samples  # noqa: B018 - reject a bad --n before loading anything
    ckpt = load(args.checkpoint, device=args.device)
    check_not_a_checkpoint(Path(args.out), ckpt.path)
    command = command_line(args)
    result = build_report(ckpt, args.out, settings, progress=not (args.quiet or args.json), command=command)
    print_result(result, args.json)
    if result.errors:
        print(
            f"mechinterp-arith report: error: {len(result.errors)} section(s) failed: "
            f"{', '.join(s.key for s in result.errors)}",
            file=sys.stderr,
        )
        return 1
    return 0


def check_not_a_checkpoint(out: Path, checkpoint: Path | None) -> None:
    """CliError when ``--out`` is the checkpoint reported on, or another checkpoint directory: the
    report writes index.html there, and a checkpoint directory holds the model's files only."""
    if checkpoint is not None and out.resolve() == checkpoint.resolve():
        raise CliError(f"--out {out} is the checkpoint itself; write the report elsewhere, e.g. --out {out}-report")
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        raise CliError(f"--out {out} is a checkpoint directory; write the report elsewhere, e.g. --out {out}-report")


def run_sweep_report(args) -> int:
    """The page comparing the runs of a sweep directory."""
    from ..report.sweep_page import build_sweep_report

    command = command_line(args)
    result = build_sweep_report(args.checkpoint, args.out, command=command)
    print_result(result, args.json)
    return 1 if result.errors else 0


def run_lab_report(args) -> int:
    """The page comparing position schemes, from the length-generalisation lab's results file."""
    from pathlib import Path

    from ..report.length_lab import build_length_lab_page
    from ..report.repair_page import build_repair_page, is_repair_results

    if not Path(args.checkpoint).is_file():
        raise ValueError(f"{args.checkpoint}: no such results file")
    if is_repair_results(args.checkpoint):
        path = build_repair_page(args.checkpoint, args.out)
    else:
        path = build_length_lab_page(args.checkpoint, args.out, circuits=args.circuits)
    if args.json:
        print_json({"path": str(path), "size_bytes": path.stat().st_size})
    else:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser (file://{path.resolve()})")
    return 0


def print_result(result, as_json: bool) -> None:
    """Per-section status and timing, then where the page is (or the JSON summary)."""
    if as_json:
        print_json(result.summary())
        return
    width = max((len(s.title) for s in result.sections), default=0) + 2  # the longest title, then a gap
    for s in result.sections:
        print(f"  {s.title:<{width}}{s.status:<9}{s.seconds:6.1f} s" + (f"  {s.error}" if s.error else ""))
    print(
        f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB) in {result.seconds:.1f} s; "
        f"open it in a browser (file://{result.path.resolve()})"
    )
