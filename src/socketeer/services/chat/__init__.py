"""Chat: many people in rooms, over a line protocol that nc and telnet can speak.

The sans-IO core (:mod:`.protocol`, with :mod:`.commands`, :mod:`.names`,
:mod:`.room`, :mod:`.incoming`, :mod:`.lines`, :mod:`socketeer.ratelimit`) decides
who receives what; :mod:`.session` runs it on a server; :mod:`.client` is
the member's side for programs.
"""

from __future__ import annotations

from .backoff import Backoff
from .client import ChatClient, ChatEvent, Connected, Disconnected
from .lines import ChatLine, parse_line
from .protocol import ChatProtocol, ChatSettings
from .session import DEFAULT_MAX_QUEUE, ChatService

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "Backoff",
    "ChatClient",
    "ChatEvent",
    "ChatLine",
    "ChatProtocol",
    "ChatService",
    "ChatSettings",
    "Connected",
    "Disconnected",
    "parse_line",
]
