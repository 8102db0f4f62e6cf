"""The one home of helpers shared by test files (``tests/`` is on ``sys.path`` under pytest).

- ``support.models``: model weights compared bit for bit, a callback that interrupts training at a
  step, a shipped checkpoint or a skip;
- ``support.cli``: the command line in process (exit code and output, or its ``--json`` object)
  and as a console command in a fresh interpreter;
- ``support.faults``: simulated process death at the Nth filesystem call;
- ``support.report_page``: the quick add3 report, built once per session, and an HTML element index;
- ``support.sweeps``: the tiny sweep, run once per session.
"""

# how long a child process (a command, a notebook cell, the browser) may run before a test calls it
# hung: a guard against hangs on a machine loaded several times over, not a speed claim
HANG_TIMEOUT_S = 1800
