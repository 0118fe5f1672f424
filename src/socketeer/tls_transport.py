"""The server's TLS transport: asyncio's, without a 256 KiB receive buffer per connection.

asyncio's :class:`asyncio.sslproto.SSLProtocol` gives every connection its
own 256 KiB buffer for what the socket receives, though it only holds bytes
between the transport's ``recv_into`` and the ``buffer_updated`` call that
copies them into the connection's TLS object, in one go.  With thousands of
idle TLS clients that is most of the server's memory.

:class:`SharedBufferSSLProtocol` receives into one buffer per thread instead,
and :func:`start_tls` (:meth:`asyncio.loop.start_tls`, which cannot choose
the protocol) runs the server's handshake with it, first giving it any bytes
that already arrived (after a PROXY header).  The shared buffer is only used
on the selector event loops, whose transports fill it and hand it over
without returning to the loop in between; elsewhere each connection keeps
its own buffer.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from asyncio import selector_events, sslproto
from typing import Any

from .proxy_doorway import feed

__all__ = ["RECEIVE_BUFFER", "SharedBufferSSLProtocol", "start_tls"]

#: Bytes one receive on a TLS connection may read (asyncio's own size).
RECEIVE_BUFFER = 256 * 1024
#: Bytes one decryption yields at most: a TLS record's plaintext.
_RECORD = 16 * 1024


class _ThreadBuffer(threading.local):
    view: memoryview | None = None


_buffer = _ThreadBuffer()


def _receive_buffer() -> memoryview:
    """This thread's receive buffer, made at first use."""
    view = _buffer.view
    if view is None:
        view = _buffer.view = memoryview(bytearray(RECEIVE_BUFFER))
    return view


class SharedBufferSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol receiving into its thread's buffer instead of its own."""

    # The base class allocates this much per connection, and reads at most
    # this much plaintext at once; one record's worth is all one read yields.
    max_size = _RECORD

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # buffer_updated() copies what arrived from here into the TLS object
        self._ssl_buffer = None
        self._ssl_buffer_view = _receive_buffer()

    def get_buffer(self, n: int) -> memoryview:
        """Where the transport receives: the thread's buffer, emptied by buffer_updated()."""
        return self._ssl_buffer_view


async def start_tls(
    transport: asyncio.Transport,
    protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    *,
    timeout: float,
    received: bytes = b"",
) -> asyncio.Transport | None:
    """The server's TLS handshake on ``transport``, as :meth:`asyncio.loop.start_tls` does.

    ``received``: bytes of the handshake read already (they come first).
    Returns the TLS transport, which delivers to ``protocol``, or None if the
    connection ended as the handshake did; raises what the handshake raised.
    """
    loop = asyncio.get_running_loop()
    shared = isinstance(loop, selector_events.BaseSelectorEventLoop)
    kind = SharedBufferSSLProtocol if shared else sslproto.SSLProtocol
    waiter = loop.create_future()
    tls = kind(
        loop,
        protocol,
        context,
        waiter,
        server_side=True,
        call_connection_made=False,
        ssl_handshake_timeout=timeout,  # type: ignore[arg-type]  # seconds, any number
    )
    transport.pause_reading()
    transport.set_protocol(tls)
    tls.connection_made(transport)
    if received:
        feed(tls, received)
    transport.resume_reading()
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return tls._app_transport
