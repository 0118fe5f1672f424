"""What a service is: sans-IO protocol logic the server runs, one handler per session.

A :class:`Handler` sees whole messages (the framing is done before it) and
returns the messages to send back.  It never touches a socket or a clock, so
a service's behaviour is tested by calling it with byte strings.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from .framing import Framing
from .visible import visible

if TYPE_CHECKING:
    from .datagram import DatagramCore, DatagramLimits
    from .host import Host

__all__ = ["Handler", "Service", "TextCodec"]


class TextCodec:
    """Bytes <-> text in a chosen encoding that never fails on bad input.

    Undecodable bytes survive the round trip where the encoding allows it
    (``surrogateescape``), so a name sent in the wrong encoding comes back as
    the same bytes instead of crashing the session; where it does not, they
    become U+FFFD.  Only encodings that write ASCII as ASCII are accepted
    (utf-8, gbk, latin-1, ...; not utf-16), since commands such as ``exit``
    and line endings must read the same in every one of them.
    """

    def __init__(self, encoding: str = "utf-8") -> None:
        probe = "welcome! exit\r\n"
        try:
            encoded = probe.encode(encoding)
        except LookupError:
            raise LookupError(f"unknown encoding {encoding!r}") from None
        if encoded != probe.encode("ascii"):
            raise LookupError(f"encoding {encoding!r} does not write ASCII as ASCII")
        self.encoding = encoding

    def decode(self, data: bytes) -> str:
        """Decode ``data``; invalid bytes are kept as escapes, or replaced if they cannot be."""
        try:
            return data.decode(self.encoding, "surrogateescape")
        except UnicodeDecodeError:
            return data.decode(self.encoding, "replace")

    def encode(self, text: str) -> bytes:
        """Encode ``text``; escaped bytes are restored, unencodable characters become ``?``."""
        try:
            return text.encode(self.encoding, "surrogateescape")
        except UnicodeEncodeError:
            return text.encode(self.encoding, "replace")


class Handler(ABC):
    """The protocol logic of one session.

    ``finished`` turns true when the session should end once the replies
    already returned have been sent.
    """

    finished: bool = False

    def opened(self) -> Sequence[bytes]:
        """Messages to send as soon as the session starts (a greeting); none by default."""
        return ()

    @abstractmethod
    def received(self, message: bytes) -> Sequence[bytes]:
        """Handle one whole message; return the messages to send back."""

    def failed(self, reason: str) -> Sequence[bytes]:
        """The session is being closed because of ``reason``; return a last notice to send."""
        return (f"error: {reason}".encode(),)


class Service(ABC):
    r"""A kind of server: a name, a default framing, and a session per connection.

    A service made of :class:`Handler`\ s only says :meth:`new_handler`; the
    host runs each handler in a session of its own.  A service whose
    sessions do their own I/O (files, chat) overrides :meth:`new_session`.
    """

    name: str
    default_framing: Framing = "auto"
    #: Whether the service also makes sense over UDP (one datagram = one message).
    datagrams: bool = True
    #: Whether each UDP peer is answered from a socket of its own (TFTP's transfer IDs).
    peer_sockets: bool = False

    def datagram_core(self, limits: DatagramLimits) -> DatagramCore[Any] | None:
        """The core serving this service on a UDP endpoint; None: one handler per datagram."""
        return None

    def new_handler(self) -> Handler:
        """Return the protocol logic for a new session (or for one datagram over UDP)."""
        raise TypeError(f"the {self.name} service runs its own sessions, not handlers")

    def new_session(self, host: Host) -> Any:
        """Return the session (an asyncio protocol) for one new connection."""
        return host.handler_session(self)

    def refusal(self, reason: str) -> bytes:
        """What a client the server will not take is told, in this service's protocol."""
        return f"error: {visible(reason)}\n".encode()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The service's life on a server: work that outlives sessions starts and stops here."""
        yield
