"""Package exports loaded on first use, so importing a sans-IO module stays sans-IO.

``import socketeer.framing`` runs ``socketeer/__init__.py`` first; if that
imported the server, every sans-IO module would drag asyncio in with it.
A package lists its exports as ``{name: module}`` and gets a module
``__getattr__`` that imports each one when it is first asked for (PEP 562).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``exports[name]`` on demand.

    ``exports`` maps each exported name to the module (relative to
    ``package``, e.g. ``".server"``) that defines it.
    """

    def __getattr__(name: str) -> Any:
        where = exports.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where, package), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # later lookups skip __getattr__
        return value

    return __getattr__
