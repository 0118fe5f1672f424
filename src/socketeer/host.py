"""What a session sees of the server that owns it: limits, a clock, and its release.

A session never holds the :class:`~socketeer.server.Server` itself.  It gets
a :class:`Host`: the limits it must keep, a monotonic clock, a logger, a
way to start tasks the server owns, and a way to say it is gone.  The
server is one host; a test is another (``tests/hosts.py``), so every
session is driven in tests without a socket and with the clock in the
test's hand.  Sans-IO: nothing here touches a socket or an event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .framing import Framing

if TYPE_CHECKING:
    from .service import Service

__all__ = ["DEFAULT_MIN_RATE", "Host", "SessionLimits", "Task"]

#: Bytes a second a file transfer must keep up to count as activity.
DEFAULT_MIN_RATE = 1024


@dataclass(frozen=True)
class SessionLimits:
    """The limits each session keeps.

    ``framing`` None means the service's own; ``max_message_size`` None
    means the framing's or the service's default.  ``idle_timeout`` is how
    long a session may go without one whole message (None: forever);
    ``min_rate`` is how many bytes a second a transfer in progress must
    move to count as activity.
    """

    framing: Framing | None = None
    max_message_size: int | None = None
    idle_timeout: float | None = 300.0
    min_rate: int = DEFAULT_MIN_RATE


class Task(Protocol):
    """A running task, as a session sees it: it can be cancelled."""

    def cancel(self, msg: Any | None = None) -> bool:
        """Ask the task to stop; its ``finally`` blocks still run."""
        ...

    def done(self) -> bool:
        """Whether the task has finished."""
        ...


class Host(Protocol):
    """The server as its sessions see it."""

    limits: SessionLimits
    log: logging.Logger

    def now(self) -> float:
        """Monotonic seconds: for limits, deadlines and idleness (never shown to people)."""
        ...

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> Task:
        """Run ``coroutine`` as a task the server owns: cancelled and awaited when it stops."""
        ...

    def release(self, session: object) -> None:
        """``session``'s connection is gone: forget it."""
        ...

    def handler_session(self, service: Service) -> Any:
        """A session that runs one of ``service``'s handlers (see :class:`Service`)."""
        ...
