"""Choosing the event loop: uvloop when it is installed (``socketeer[fast]``), else asyncio's."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["loop_name", "run"]

T = TypeVar("T")


def _uvloop_factory() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool = True) -> T:
    """Run ``main`` to completion on uvloop if available (and wanted), else on asyncio's loop."""
    factory = _uvloop_factory() if use_uvloop else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name(use_uvloop: bool = True) -> str:
    """``uvloop`` or ``asyncio``: which loop :func:`run` would use."""
    return "uvloop" if use_uvloop and _uvloop_factory() is not None else "asyncio"
