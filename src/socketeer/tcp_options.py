"""TCP socket options for request/response traffic: no Nagle delay, and corking.

Nagle's algorithm holds a small segment back while an earlier one is not
yet acknowledged, and the peer delays its acknowledgement by up to 40 ms
hoping to piggyback it on an answer: a request or a header followed by a
second write then waits 40 ms for nothing.  Every socketeer socket that
carries requests and replies turns it off (``TCP_NODELAY``).  asyncio does so
only for sockets whose ``proto`` is set, which a server's own listening
sockets are not.  Where a header and a body are written by two calls (a
header, then ``sendfile``), ``TCP_CORK`` holds both until the cork is
removed, so they leave in full segments together.
"""

from __future__ import annotations

import contextlib
import socket

__all__ = ["is_tcp", "set_cork", "set_nodelay"]


def is_tcp(sock: socket.socket | None) -> bool:
    """Whether ``sock`` is a TCP socket (IPv4 or IPv6), not Unix or UDP."""
    return (
        sock is not None
        and sock.family in (socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
    )


def set_nodelay(sock: socket.socket | None) -> None:
    """Turn Nagle's algorithm off on a TCP socket; anything else is left alone."""
    if is_tcp(sock):
        assert sock is not None
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def set_cork(sock: socket.socket | None, on: bool) -> None:
    """Hold (``on``) or release what is written to a TCP socket, where Linux allows it."""
    cork = getattr(socket, "TCP_CORK", None)
    if cork is not None and is_tcp(sock):
        assert sock is not None
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, cork, int(on))
