"""Chat: many people in rooms, over a line protocol that nc and telnet can speak.

The sans-IO core (:mod:`.protocol`, with :mod:`.commands`, :mod:`.names`,
:mod:`.room`, :mod:`.incoming`, :mod:`.lines`, :mod:`socketeer.ratelimit`,
:mod:`socketeer.addresses`) decides who receives what, as events (:mod:`.events`);
:mod:`.rendering` turns them into text or JSON lines; :mod:`.session` runs
it on a server; :mod:`.client` is
the member's side for programs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...exports import lazy_exports
from .backoff import Backoff
from .lines import ChatLine, parse_line
from .protocol import ChatProtocol, ChatSettings

if TYPE_CHECKING:
    from .client import ChatClient, ChatEvent, Connected, Disconnected
    from .session import DEFAULT_MAX_QUEUE, DEFAULT_MAX_QUEUE_TOTAL, ChatService

__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(["ChatClient", "ChatEvent", "Connected", "Disconnected"], ".client"),
        **dict.fromkeys(
            ["DEFAULT_MAX_QUEUE", "DEFAULT_MAX_QUEUE_TOTAL", "ChatService"], ".session"
        ),
    },
)

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_QUEUE_TOTAL",
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
