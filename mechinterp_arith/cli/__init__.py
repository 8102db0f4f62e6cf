"""The ``mechinterp-arith`` command line: one module per subcommand, registered below.

Every module ``mechinterp_arith/cli/*_cmd.py`` defines ``register(subparsers)``, which adds its
parser and sets ``func(args) -> int``; adding a command is adding such a file. Every command gets
``--threads N`` here and runs under the thread policy of :mod:`mechinterp_arith.core.threads`
(one torch thread unless asked). Shared options are checked before any command runs, and errors
are one line on stderr with exit status 2, never a traceback (``cli/checks.py``).

Building the parser imports nothing heavy (``--help``, ``--version`` and argument errors answer in
a fraction of a second; ``benchmarks/cli_startup.py``): a command module's top level and
``register`` use torch-free names only (``core/choices.py``, ``analysis/choices.py``), and ``run``
imports what it needs. On a terminal a command first says on stderr what it is starting, then
shows progress there (never on stdout, so ``--json`` output stays clean).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .checks import CliError as CliError  # CliError: re-exported for commands
from .checks import check_args, check_device, one_line
from .common import DefaultsFormatter, add_threads_arg, starting

# train, evaluate, info first; the rest alphabetically
_FIRST = ["train_cmd", "evaluate_cmd", "info_cmd"]
COMMAND_MODULES = [f"{__name__}.{m}" for m in _FIRST] + sorted(
    f"{__name__}.{p.stem}" for p in Path(__file__).parent.glob("*_cmd.py") if p.stem not in _FIRST
)


def build_parser() -> argparse.ArgumentParser:
    from ..core.version import __version__

    parser = argparse.ArgumentParser(
        prog="mechinterp-arith",
        description="Train, evaluate and dissect transformers on n-digit arithmetic (TransformerLens 4).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for command_parser in sub.choices.values():
        add_threads_arg(command_parser)
        command_parser.formatter_class = DefaultsFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        check_args(args)
        starting(args)  # within a second, before torch and TransformerLens load
        from ..core.threads import set_threads

        set_threads(args.threads)
        check_device(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("mechinterp-arith: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = one_line(e)
        if message is None:
            raise
        print(f"mechinterp-arith {args.command}: error: {message}", file=sys.stderr)
        return 2
