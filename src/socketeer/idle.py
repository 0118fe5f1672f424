"""Which sessions are idle: sans-IO, with the time passed in.

Idle means *no whole message*, not *no byte*: a client that sends one byte
every two seconds and never finishes a line is idle, however busy it
looks (the "slowloris" attack).  A file transfer in progress is activity
only while it keeps up a minimum rate.  Each session keeps two counters,
bumped by the session itself at no cost beyond an addition:

``messages``     whole messages received (requests, lines, frames)
``transferred``  bytes of a transfer in progress moved either way

An :class:`IdleSweep` looks at every session once per ``interval`` and
returns those that have done neither for ``timeout`` seconds.  One sweep
per server instead of one timer per session: nothing is armed or reset per
message.  A session is closed between ``timeout`` and ``timeout +
interval`` after its last activity.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

__all__ = ["Activity", "IdleSweep"]


class Activity:
    """A session's counters, and what the sweep last saw of them."""

    __slots__ = ("_quiet_since", "_seen_messages", "_seen_transferred", "messages", "transferred")

    def __init__(self, now: float) -> None:
        #: Whole messages received so far.
        self.messages = 0
        #: Bytes of transfers moved so far.
        self.transferred = 0
        self._seen_messages = 0
        self._seen_transferred = 0
        self._quiet_since = now

    def quiet_for(self, now: float) -> float:
        """Seconds since the last activity a sweep saw."""
        return now - self._quiet_since


A = TypeVar("A", bound=Activity)


class IdleSweep:
    """Finds sessions quiet for ``timeout`` seconds; run :meth:`sweep` every :attr:`interval`."""

    def __init__(self, timeout: float, min_rate: int = 1024) -> None:
        if timeout <= 0:
            raise ValueError("the idle timeout must be positive")
        self.timeout = timeout
        self.min_rate = min_rate
        #: Seconds between sweeps.
        self.interval = max(timeout / 4, 0.01)
        self._last: float | None = None

    def sweep(self, sessions: Iterable[A], now: float) -> list[A]:
        """Note what each session did since the last sweep; return those now idle."""
        elapsed = now - self._last if self._last is not None else self.interval
        self._last = now
        enough = self.min_rate * elapsed
        idle: list[A] = []
        for activity in sessions:
            moved = activity.transferred - activity._seen_transferred
            if activity.messages != activity._seen_messages or (moved and moved >= enough):
                activity._seen_messages = activity.messages
                activity._quiet_since = now
            activity._seen_transferred = activity.transferred
            if now - activity._quiet_since >= self.timeout:
                idle.append(activity)
        return idle
