"""The services socketeer can serve, by name."""

from __future__ import annotations

from ..service import Service, TextCodec
from .chat import ChatService
from .echo import EchoService
from .greet import GreetService

__all__ = ["SERVICES", "ChatService", "EchoService", "GreetService", "make_service"]

SERVICES: dict[str, type[Service]] = {
    "greet": GreetService,
    "echo": EchoService,
    "chat": ChatService,
}


def make_service(name: str, encoding: str = "utf-8") -> Service:
    """Build the service called ``name``; ``encoding`` applies to text services."""
    TextCodec(encoding)  # LookupError for an unknown or unusable encoding
    if name == "greet":
        return GreetService(encoding)
    if name == "echo":
        return EchoService()
    if name == "chat":
        return ChatService()
    raise ValueError(f"unknown service {name!r} (choose from {', '.join(SERVICES)})")
