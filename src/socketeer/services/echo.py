"""Echo: every message goes back to its sender unchanged (RFC 862, framed or not)."""

from __future__ import annotations

from collections.abc import Sequence

from ..service import Handler, Service

__all__ = ["EchoHandler", "EchoService"]


class EchoHandler(Handler):
    """Returns each message as it came."""

    def received(self, message: bytes) -> Sequence[bytes]:
        return (message,)


class EchoService(Service):
    """Echo over TCP, Unix sockets and UDP.  Raw framing by default: bytes in, same bytes out."""

    name = "echo"
    default_framing = "raw"

    def new_handler(self) -> Handler:
        return EchoHandler()
