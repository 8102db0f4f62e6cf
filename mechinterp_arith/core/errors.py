"""Errors shared by every layer.

:class:`NotApplicable` marks a question the task or format cannot pose (an answer digit a product
cannot change alone, a label that takes one value on every input, an OOD set the format cannot
hold, ...). Front ends show its message as the stated reason a part is skipped; any other
exception is a failure and is reported as one.

>>> try:
...     raise NotApplicable("answer digit 2 of sub2 is always 0")
... except ValueError as e:            # a ValueError too: the CLI prints it as one line
...     print(e)
answer digit 2 of sub2 is always 0
"""

from __future__ import annotations


class NotApplicable(ValueError):
    """This analysis (or part of it) does not apply to this task, format or checkpoint; the message says why."""
