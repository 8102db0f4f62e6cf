"""Where the torch thread count comes from, and that every command takes --threads."""

import pytest

from mechinterp_arith.cli import build_parser
from mechinterp_arith.core.threads import ENV_VAR, resolve_threads


def test_threads_come_from_the_argument_then_the_environment_then_one(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_threads() == 1 and resolve_threads(3) == 3 and resolve_threads(0) == 0
    monkeypatch.setenv(ENV_VAR, "2")
    assert resolve_threads() == 2 and resolve_threads(1) == 1
    monkeypatch.setenv(ENV_VAR, "two")
    with pytest.raises(ValueError, match=f"{ENV_VAR} must be an integer >= 0"):
        resolve_threads()
    with pytest.raises(ValueError, match="threads must be an integer >= 0"):
        resolve_threads(-1)


def test_every_command_takes_threads():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert all("--threads" in p._option_string_actions for p in commands.values()), list(commands)
