"""Greet: the classic thread-per-client session, as a sans-IO protocol.

On connect the server says ``welcome!``; each message NAME gets
``hello, NAME!``; the message ``exit`` (or the end of the stream) ends the
session.  Text is decoded with the service's encoding; bytes that do not
decode come back unchanged rather than breaking the session.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..service import Handler, Service, TextCodec

__all__ = ["GreetHandler", "GreetService"]

GREETING = "welcome!"
EXIT = "exit"


class GreetHandler(Handler):
    """One greet session."""

    def __init__(self, text: TextCodec) -> None:
        self._text = text

    def opened(self) -> Sequence[bytes]:
        return (self._text.encode(GREETING),)

    def received(self, message: bytes) -> Sequence[bytes]:
        name = self._text.decode(message).rstrip("\r\n")
        if name == EXIT:
            self.finished = True
            return ()
        return (self._text.encode(f"hello, {name}!"),)


class GreetService(Service):
    """``welcome!``, then ``hello, NAME!`` for each NAME, until ``exit``."""

    name = "greet"
    default_framing = "auto"

    def __init__(self, encoding: str = "utf-8") -> None:
        self._text = TextCodec(encoding)

    def new_handler(self) -> Handler:
        return GreetHandler(self._text)
