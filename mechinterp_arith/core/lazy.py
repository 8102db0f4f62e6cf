"""Names a package loads on first use (PEP 562), so importing it stays cheap.

``mechinterp_arith`` and ``mechinterp_arith.report`` list their public names with the module that
defines each; :func:`lazy_names` gives the package's ``__getattr__`` and ``__dir__``: a name is
imported when first read, then kept in the package's namespace.

>>> __getattr__, __dir__ = lazy_names("json", {"dumps": "encoder"})   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any


def lazy_names(
    package: str, homes: Mapping[str, str], modules: Collection[str] = ()
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``homes`` maps each public name to its module,
    relative to the package (``"core.checkpoint"``); a name in ``modules`` is that module itself."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f".{homes[name]}", package)
        value = module if name in modules else getattr(module, name)
        setattr(sys.modules[package], name, value)  # read once: later reads skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(homes))

    return __getattr__, __dir__
