"""Options and output helpers shared by subcommands."""

from __future__ import annotations

import argparse
import json
import sys

from ..core.choices import FORMATS, OPERATIONS


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default, once: ``(default: 2,000)``, unless the help
    already says what the default is or there is none (None, a flag)."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default is None or default is False or default == argparse.SUPPRESS:
            return text
        if isinstance(default, int) and not isinstance(default, bool):
            shown = f"{default:,}"
        elif isinstance(default, (tuple, list)):
            shown = " ".join(str(x) for x in default)
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def starting(args) -> None:
    """One line on stderr saying what the command starts (its ``start`` default, formatted with
    its arguments), printed before torch and TransformerLens load (seconds): on a terminal only,
    and not with ``--quiet``."""
    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        return
    what = getattr(args, "start", None)
    what = what.format(**vars(args)) if what else "starting"
    print(f"mechinterp-arith {args.command}: {what} (loading PyTorch and TransformerLens) ...", file=sys.stderr)
    sys.stderr.flush()


def add_quiet_arg(parser: argparse.ArgumentParser) -> None:
    """``--quiet``: no start line and no progress bar on stderr (shown on a terminal otherwise)."""
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def add_stop_below_arg(parser: argparse.ArgumentParser) -> None:
    """``--stop-below X``: a length curve ends at the first length whose exact match is below X."""
    parser.add_argument(
        "--stop-below",
        type=float,
        default=None,
        metavar="X",
        help="score no longer length after the first whose exact match is below X (e.g. 0.5: a length curve "
        "to where the model breaks)",
    )


def add_checkpoint_arg(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    if default is None:
        parser.add_argument(
            "checkpoint", metavar="CKPT", help="a shipped checkpoint name (e.g. add3) or a checkpoint directory"
        )
    else:
        parser.add_argument(
            "checkpoint",
            metavar="CKPT",
            nargs="?",
            default=default,
            help=f"a shipped checkpoint name or a checkpoint directory (default: {default})",
        )


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    """``--threads N`` (every command has it; :func:`mechinterp_arith.core.threads.set_threads` applies it)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads (default: $MECHINTERP_ARITH_THREADS, else 1: the models are tiny, "
        "and extra threads on a busy machine slow them down several-fold); 0: torch's "
        "default, one per core; at most 4 per core",
    )


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")


def add_ood_sample_args(parser: argparse.ArgumentParser, n_help: str) -> None:
    """``--n`` (default 1,000), ``--ood-digits`` (default n+1) and ``--seed``: an ID/OOD sample."""
    parser.add_argument("--n", type=int, default=1000, help=n_help)
    parser.add_argument("--ood-digits", type=int, default=None, help="OOD operand length (default: n+1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled pairs")


def require_positive(args, *names: str) -> None:
    """ValueError naming the first option among ``names`` (attribute names) set below 1."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def print_json(obj) -> None:
    """Strict JSON on stdout (NaN written as null)."""
    from ..core.files import json_safe

    json.dump(json_safe(obj), sys.stdout, indent=2, default=_jsonable, allow_nan=False)
    sys.stdout.write("\n")


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def fmt(x: float) -> str:
    return "nan" if x != x else f"{x:.4f}"


def add_task_args(group, format_help: str | None = None) -> None:
    """The options that describe a Task (``--task --digits --format --width --modulus --no-pad --bos``).
    ``format_help``: the help of ``--format`` where its default is not ``paper``."""
    group.add_argument("--task", dest="op", choices=OPERATIONS, default="add", help="operation")
    group.add_argument("--digits", type=int, default=3, help="n: operand digits trained on")
    group.add_argument("--format", choices=FORMATS, default="paper", help=format_help or "token format")
    group.add_argument("--width", type=int, default=5, help="W: widest operand the format holds")
    group.add_argument("--modulus", type=int, default=None, help="p for addmod/mulmod (required by them)")
    group.add_argument("--no-pad", action="store_true", help="no zero padding (plain/reversed formats)")
    group.add_argument(
        "--bos",
        action="store_true",
        help="start every example with a BOS token (plain/reversed formats; with reversed: the follow-up's "
        "format, docs/follow_up.md)",
    )


def task_from_args(args):
    """The Task named by :func:`add_task_args` options."""
    from ..core.tasks import Task

    return Task(args.op, args.digits, args.format, args.width, args.modulus, pad=not args.no_pad, bos=args.bos)


def command_line(args) -> str:
    """The command as typed (recorded in what it writes)."""
    import shlex

    return "mechinterp-arith " + shlex.join(getattr(args, "argv", None) or sys.argv[1:])


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def add_html_arg(parser: argparse.ArgumentParser, what: str = "the figure") -> None:
    from pathlib import Path

    parser.add_argument("--html", type=Path, default=None, help=f"write {what} to this offline HTML file")


def write_figure_html(path, fig) -> None:
    """Write a plotly figure as a standalone HTML file with plotly.js embedded (works offline)."""
    from ..core.files import atomic_write_text

    atomic_write_text(path, fig.to_html(include_plotlyjs=True))
