"""How long to wait before trying to reconnect: exponential backoff with jitter."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays that start at ``initial`` seconds and double up to ``maximum``.

    Each delay is spread by up to ``jitter`` (a fraction) either way, so many
    clients cut off at once do not all come back at the same moment.
    ``uniform`` is where the spread comes from (``random.uniform`` by default;
    tests pass their own).  :meth:`reset` after a connection succeeds.
    """

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.1,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if not 0 < initial <= maximum or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("need 0 < initial <= maximum, factor >= 1 and 0 <= jitter < 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._uniform = uniform
        self._next = initial

    def next(self) -> float:
        """The delay before the next attempt; each call backs off further."""
        base = self._next
        self._next = min(self.maximum, base * self.factor)
        return base * self._uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        """A connection succeeded: start again from ``initial``."""
        self._next = self.initial
