"""netcat modes: ``connect`` and ``listen`` move bytes between stdin/stdout and a socket;
``send`` is the classic one-shot client (greeting, then a reply per message).

These are the I/O edge of the command line; they take file descriptors and
callables so tests can drive them without a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import BinaryIO

from .binding import BoundSocket, bind_endpoint, remove_unix_socket
from .client import AsyncConnection, Connection
from .endpoint import Endpoint, describe_peer
from .errors import ConnectError, ConnectionClosed, NetworkError, Timeout, translate_os_error
from .framing import Framing, make_codec

__all__ = ["connect", "listen", "send_messages"]

_CHUNK = 64 * 1024


async def _stdin_chunks(fd: int) -> AsyncIterator[bytes]:
    """Chunks read from ``fd`` (a tty, pipe or file) until end of file, with bounded buffering.

    A plain thread does the blocking reads, because asyncio cannot watch
    regular files and a terminal must not be switched to non-blocking mode.
    """
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=8)

    def reader() -> None:
        try:
            while True:
                try:
                    chunk = os.read(fd, _CHUNK)
                except OSError:
                    chunk = b""
                asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()
                if not chunk:
                    return
        except Exception:  # the loop is gone: the command is over
            return

    threading.Thread(target=reader, name="stdin", daemon=True).start()
    while chunk := await chunks.get():
        yield chunk


def _write_all(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


async def connect(
    endpoint: Endpoint,
    *,
    timeout: float,
    idle_timeout: float | None,
    udp_wait: float,
    stdin_fd: int,
    out: BinaryIO,
) -> None:
    """Copy stdin to ``endpoint`` and what it sends to ``out``.

    Over a stream, the end of stdin half-closes the connection and the
    command ends when the peer closes.  Over UDP, each chunk of stdin is a
    datagram, and after the end of stdin replies are awaited for ``udp_wait``
    seconds of quiet.
    """
    if endpoint.transport == "udp":
        await _connect_udp(endpoint, idle_timeout, udp_wait, stdin_fd, out)
        return
    conn = await AsyncConnection.connect(endpoint, timeout=timeout)
    conn.timeout = idle_timeout

    async def pump() -> None:
        with contextlib.suppress(NetworkError):
            async for chunk in _stdin_chunks(stdin_fd):
                await conn.send(chunk)
            conn.shutdown_write()

    async with conn:
        sender = asyncio.create_task(pump())
        try:
            while data := await conn.recv():
                _write_all(out, data)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender


class _Datagrams(asyncio.DatagramProtocol):
    """Queues what arrives on a UDP socket: (data, address) pairs or an error."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[tuple[bytes, object] | Exception | None] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.incoming.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.incoming.put_nowait(exc)


async def _connect_udp(
    endpoint: Endpoint, idle_timeout: float | None, udp_wait: float, stdin_fd: int, out: BinaryIO
) -> None:
    loop = asyncio.get_running_loop()
    protocol = _Datagrams()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: protocol, remote_addr=(endpoint.connect_host, endpoint.port)
        )
    except OSError as exc:
        raise translate_os_error(exc, "connect to", endpoint, ConnectError) from None
    stdin_done = asyncio.Event()

    async def pump() -> None:
        async for chunk in _stdin_chunks(stdin_fd):
            transport.sendto(chunk)
        stdin_done.set()
        protocol.incoming.put_nowait(None)  # wake the receiver to start the final wait

    sender = asyncio.create_task(pump())
    try:
        while True:
            try:
                async with asyncio.timeout(udp_wait if stdin_done.is_set() else idle_timeout):
                    item = await protocol.incoming.get()
            except TimeoutError:
                if stdin_done.is_set():
                    return
                raise Timeout(f"nothing from {endpoint} for {idle_timeout:g} seconds") from None
            if isinstance(item, OSError):
                raise translate_os_error(item, "send to", endpoint, ConnectError)
            if isinstance(item, tuple):
                _write_all(out, item[0])
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        transport.close()


async def listen(
    endpoint: Endpoint,
    *,
    keep_open: bool,
    stdin_fd: int,
    out: BinaryIO,
    on_ready: Callable[[list[Endpoint]], None],
    on_event: Callable[[str], None],
) -> None:
    """Accept connections on ``endpoint``: print what arrives, send stdin.

    Without ``keep_open`` one connection is served and the command ends when
    it closes; the end of stdin half-closes it.  With ``keep_open`` every
    client is served at once, stdin goes to all of them, and the command runs
    until SIGINT/SIGTERM.  Over UDP, stdin goes to whoever sent last.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bound = bind_endpoint(endpoint)
    try:
        if endpoint.transport == "udp":
            await _listen_udp(bound[0].sock, stop, stdin_fd, out, on_ready, bound[0].actual)
        else:
            await _listen_stream(bound, keep_open, stop, stdin_fd, out, on_ready, on_event)
    finally:
        for item in bound:
            remove_unix_socket(item)
            item.sock.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _listen_stream(
    sockets: Sequence[BoundSocket],
    keep_open: bool,
    stop: asyncio.Event,
    stdin_fd: int,
    out: BinaryIO,
    on_ready: Callable[[list[Endpoint]], None],
    on_event: Callable[[str], None],
) -> None:
    clients: set[asyncio.StreamWriter] = set()
    listeners: list[asyncio.Server] = []
    pump: asyncio.Task[None] | None = None

    async def broadcast_stdin() -> None:
        async for chunk in _stdin_chunks(stdin_fd):
            for writer in list(clients):
                writer.write(chunk)
                with contextlib.suppress(OSError):
                    await writer.drain()
        if not keep_open:
            for writer in list(clients):
                if writer.can_write_eof():
                    writer.write_eof()

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal pump
        peer = describe_peer(writer.get_extra_info("peername"))
        if not keep_open:
            if clients:  # a second client raced in before the listener closed
                writer.close()
                return
            for listener in listeners:
                listener.close()
        clients.add(writer)
        on_event(f"connection from {peer}")
        if pump is None:
            pump = asyncio.create_task(broadcast_stdin())
        try:
            while data := await reader.read(_CHUNK):
                _write_all(out, data)
        except OSError:
            pass
        finally:
            clients.discard(writer)
            writer.close()
            on_event(f"closed {peer}")
            if not keep_open:
                stop.set()

    for item in sockets:
        if item.requested.transport == "unix":
            listeners.append(await asyncio.start_unix_server(session, sock=item.sock))
        else:
            listeners.append(await asyncio.start_server(session, sock=item.sock))
    on_ready([item.actual for item in sockets])
    try:
        await stop.wait()
    finally:
        for listener in listeners:
            listener.close()
        for writer in list(clients):
            writer.close()
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump


async def _listen_udp(
    sock: socket.socket,
    stop: asyncio.Event,
    stdin_fd: int,
    out: BinaryIO,
    on_ready: Callable[[list[Endpoint]], None],
    actual: Endpoint,
) -> None:
    loop = asyncio.get_running_loop()
    protocol = _Datagrams()
    transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
    last_peer: list[object] = []

    async def receive() -> None:
        while True:
            item = await protocol.incoming.get()
            if isinstance(item, tuple):
                last_peer[:] = [item[1]]
                _write_all(out, item[0])

    async def send() -> None:
        async for chunk in _stdin_chunks(stdin_fd):
            if last_peer:
                transport.sendto(chunk, last_peer[0])  # type: ignore[arg-type]

    on_ready([actual])
    tasks = [asyncio.create_task(receive()), asyncio.create_task(send())]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        transport.close()


def send_messages(
    endpoint: Endpoint,
    messages: Sequence[str],
    *,
    framing: Framing,
    encoding: str,
    timeout: float,
    greeting_wait: float,
    show: Callable[[str], None],
) -> None:
    """Connect, show the greeting if one comes within ``greeting_wait``, then send
    each message and show its reply.  A server that closes after the last
    message (``exit``) is a normal end; one that closes earlier is an error.
    """
    codec = make_codec(framing)
    with Connection.connect(endpoint, timeout=timeout, codec=codec, encoding=encoding) as conn:
        if endpoint.is_stream and greeting_wait > 0:
            conn.sock.settimeout(greeting_wait)
            with contextlib.suppress(Timeout, ConnectionClosed):
                greeting = conn.recv_message() if framing == "length" else conn.recv()
                show(_display(greeting, encoding))
            conn.sock.settimeout(timeout)
        for number, message in enumerate(messages, 1):
            payload = message.encode(encoding, "surrogateescape")
            if framing == "line":
                conn.sendline(payload)
            elif framing == "length":
                conn.send_message(payload)
            else:
                conn.send(payload)
            reply = _reply(conn, framing)
            if reply is None:
                if number < len(messages):
                    raise ConnectionClosed(
                        f"{endpoint} closed the connection after {number} "
                        f"of {len(messages)} messages"
                    )
                return
            show(_display(reply, encoding))


def _reply(conn: Connection, framing: Framing) -> bytes | None:
    """The reply to one message, or None if the server closed instead of replying."""
    try:
        if framing == "line":
            return conn.recvline()
        if framing == "length":
            return conn.recv_message()
    except ConnectionClosed as exc:
        return exc.partial or None
    reply = conn.recv()
    if not reply and conn.endpoint.is_stream:
        return None
    return reply


def _display(data: bytes, encoding: str) -> str:
    return data.decode(encoding, "replace").rstrip("\r\n")
