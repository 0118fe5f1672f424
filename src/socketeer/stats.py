"""What a server counts for ``/metrics``: connections, refusals, messages, bytes, errors.

Counting costs the hot path nothing: sessions already count their whole
messages (:class:`~socketeer.idle.Activity`), and a connection's bytes are
read from the kernel (``TCP_INFO``) when it closes and when metrics are
asked for, so only the ends of connections and refusals add anything here.
Sans-IO: plain counters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["REFUSAL_KINDS", "ServerStats"]

#: Why a connection (or a datagram) was refused, as ``/metrics`` labels it.
REFUSAL_KINDS = ("access", "limit", "proxy_header")


@dataclass
class ServerStats:
    """Counts since the server started; those of open connections are added when asked."""

    #: Stream connections admitted.
    accepted: int = 0
    #: Stream connections refused, by kind (see :data:`REFUSAL_KINDS`).
    refused: Counter[str] = field(default_factory=Counter)
    #: Datagrams dropped because their source is denied.
    datagrams_refused: int = 0
    #: Whole messages (and datagrams) received by connections that have closed.
    messages: int = 0
    #: Bytes received and sent by closed connections and by datagram endpoints.
    bytes_received: int = 0
    bytes_sent: int = 0
    #: Errors logged (a session that failed, a datagram that could not be handled).
    errors: int = 0

    def closed(self, messages: int, received: int, sent: int) -> None:
        """A connection ended having received ``messages`` and moved these bytes."""
        self.messages += messages
        self.bytes_received += received
        self.bytes_sent += sent
