"""The services socketeer can serve, by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exports import lazy_exports
from ..service import Service, TextCodec
from .echo import EchoService
from .greet import GreetService

if TYPE_CHECKING:
    from .chat import ChatService

__getattr__ = lazy_exports(__name__, {"ChatService": ".chat"})

__all__ = ["SERVICES", "ChatService", "EchoService", "GreetService", "make_service"]

#: The services :func:`make_service` builds.
SERVICES = ("greet", "echo", "chat")


def make_service(name: str, encoding: str = "utf-8") -> Service:
    """Build the service called ``name``; ``encoding`` applies to text services."""
    TextCodec(encoding)  # LookupError for an unknown or unusable encoding
    if name == "greet":
        return GreetService(encoding)
    if name == "echo":
        return EchoService()
    if name == "chat":
        from .chat import ChatService

        return ChatService()
    raise ValueError(f"unknown service {name!r} (choose from {', '.join(SERVICES)})")
