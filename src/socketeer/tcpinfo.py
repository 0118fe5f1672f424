"""How many bytes a TCP connection has moved, as the kernel counts them (Linux ``TCP_INFO``).

``tcpi_bytes_acked`` (sent and acknowledged) and ``tcpi_bytes_received``
have been in ``struct tcp_info`` since Linux 4.1 and 4.2, at fixed offsets.
They count sequence space, so an end of stream (FIN) adds one byte.
Reading them costs one system call per connection when it closes, instead of
an addition on every read and write.  Elsewhere (Unix sockets, other
systems, a closed socket) the count is (0, 0).
"""

from __future__ import annotations

import socket
import struct

__all__ = ["tcp_bytes"]

_BYTES = struct.Struct("=QQ")  # tcpi_bytes_acked, tcpi_bytes_received
_OFFSET = 120
_SIZE = _OFFSET + _BYTES.size


def tcp_bytes(sock: object) -> tuple[int, int]:
    """(bytes received, bytes sent) on the TCP socket ``sock``; (0, 0) where unknown."""
    getsockopt = getattr(sock, "getsockopt", None)
    family = getattr(sock, "family", None)
    if getsockopt is None or family not in (socket.AF_INET, socket.AF_INET6):
        return 0, 0
    try:
        info = getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)
    except (OSError, AttributeError, ValueError):
        return 0, 0
    if len(info) < _SIZE:
        return 0, 0
    acked, received = _BYTES.unpack_from(info, _OFFSET)
    return received, acked
