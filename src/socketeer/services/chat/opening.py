"""Who just connected to the chat, a line member or a browser?  Sans-IO.

A chat server greets a line member (nc, telnet) at once, but a browser
must not receive a greeting before its HTTP response.  So the greeting is
held until the connection's first bytes arrive or :data:`GREETING_HOLD`
seconds pass, whichever comes first:

- nothing arrived by then: a line member waiting for the prompt (nc);
- the first bytes cannot start an HTTP request line (``alice``): a line member;
- they may (``GET /ws``): wait for the whole first line; an HTTP/1.x request
  line (:func:`socketeer.http.detect.is_request_line`) is HTTP, anything
  else a line member (one that is called ``GET``).

Time is passed in (``now``, monotonic seconds).
"""

from __future__ import annotations

from enum import Enum

from ...http.detect import could_be_request_line, is_request_line

__all__ = ["GREETING_HOLD", "MAX_OPENING", "Kind", "Opening"]

#: Seconds the greeting waits for a first byte from the client.
GREETING_HOLD = 0.15
#: Bytes a first line may take while it may still be a request line.
MAX_OPENING = 16 * 1024


class Kind(Enum):
    """What a connection turned out to be."""

    LINES = "lines"
    HTTP = "http"


class Opening:
    """The first bytes of one connection, until they say what it is."""

    def __init__(self, now: float, hold: float = GREETING_HOLD) -> None:
        #: When a client that said nothing is taken for a line member.
        self.deadline = now + hold
        self._received = bytearray()
        self._searched = 0  # bytes already searched for a newline
        #: What the connection is, once known.
        self.kind: Kind | None = None

    @property
    def received(self) -> bytes:
        """The bytes received while deciding (to be handed to whoever serves the connection)."""
        return bytes(self._received)

    def feed(self, data: bytes) -> Kind | None:
        """Bytes arrived; what the connection is, or None while the first line is unfinished."""
        if self.kind is not None:
            return self.kind
        self._received += data
        received = self._received
        end = received.find(b"\n", self._searched)
        self._searched = len(received)
        if end >= 0:
            line = bytes(received[: end + 1])
            self.kind = Kind.HTTP if is_request_line(line) else Kind.LINES
        elif len(received) > MAX_OPENING or not could_be_request_line(bytes(received)):
            self.kind = Kind.LINES
        return self.kind

    def end(self) -> Kind:
        """The client will send nothing more: whatever came is a line member's."""
        if self.kind is None:
            self.kind = Kind.LINES
        return self.kind

    def waited(self, now: float) -> Kind | None:
        """The hold's timer fired: a client that said nothing by the deadline is a line member."""
        if self.kind is None and not self._received and now >= self.deadline:
            self.kind = Kind.LINES
        return self.kind
