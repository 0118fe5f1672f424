"""netcat modes: ``connect`` and ``listen`` move bytes between stdin/stdout and a socket.

These are the I/O edge of the command line; they take file descriptors and
callables so tests can drive them without a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from .binding import BoundSocket, bind_endpoint, remove_unix_socket
from .client import AsyncConnection
from .endpoint import Endpoint, describe_peer
from .errors import (
    ConnectError,
    ConnectionClosed,
    Timeout,
    describe_os_error,
    translate_os_error,
)
from .quantity import quantity
from .tls import ClientTLS
from .transcode import Transcoder

__all__ = ["Encodings", "connect", "listen"]

_CHUNK = 64 * 1024


async def _stdin_chunks(fd: int) -> AsyncIterator[bytes]:
    """Chunks read from ``fd`` (a tty, pipe or file) until end of file, with bounded buffering.

    A plain thread does the blocking reads, because asyncio cannot watch
    regular files and a terminal must not be switched to non-blocking mode.
    It stops once the loop is gone.
    """
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()
    room = threading.Semaphore(8)

    def reader() -> None:
        while True:
            room.acquire()
            try:
                chunk = os.read(fd, _CHUNK)
            except OSError:
                chunk = b""
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)
            except RuntimeError:  # the loop is closed: the command is over
                return
            if not chunk:
                return

    threading.Thread(target=reader, name="stdin", daemon=True).start()
    while chunk := await chunks.get():
        room.release()
        yield chunk


def _write_all(out: BinaryIO, data: bytes) -> None:
    if data:
        out.write(data)
        out.flush()


@dataclass(frozen=True)
class Encodings:
    """Text re-encoding between the peer and the terminal (``--encoding``).

    What arrives is decoded from ``peer`` and written in ``stdout``'s
    encoding; stdin is decoded from ``stdin``'s and sent in ``peer``.
    Without a ``peer`` encoding, bytes pass through unchanged.
    """

    peer: str | None = None
    stdin: str = "utf-8"
    stdout: str = "utf-8"

    def incoming(self) -> Transcoder | None:
        """A re-encoder for one stream (or the datagrams) from the peer; None: none needed."""
        return Transcoder(self.peer, self.stdout) if self.peer else None

    def outgoing(self) -> Transcoder | None:
        """A re-encoder for stdin; None: none needed."""
        return Transcoder(self.stdin, self.peer) if self.peer else None


_UNCHANGED = Encodings()


async def connect(
    endpoint: Endpoint,
    *,
    timeout: float,
    idle_timeout: float | None,
    udp_wait: float,
    stdin_fd: int,
    out: BinaryIO,
    encodings: Encodings = _UNCHANGED,
    tls: ClientTLS | None = None,
) -> None:
    """Copy stdin to ``endpoint`` and what it sends to ``out``, like ``nc -N``.

    Over a stream, all of stdin is sent even after the peer has half-closed;
    the end of stdin half-closes the connection, and the command ends when
    both directions are done (or, when stdin is a terminal, as soon as the
    peer closes).  A peer that closes or resets before all of stdin was sent
    raises :class:`~socketeer.errors.ConnectionClosed`.  Over UDP, each chunk
    of stdin is a datagram, and after the end of stdin replies are awaited
    for ``udp_wait`` seconds of quiet.
    """
    if endpoint.transport == "udp":
        await _connect_udp(endpoint, idle_timeout, udp_wait, stdin_fd, out, encodings)
        return
    conn = await AsyncConnection.connect(endpoint, timeout=timeout, tls=tls)
    async with conn:
        await _exchange(
            conn.reader, conn.writer, str(endpoint), stdin_fd, out, idle_timeout, encodings
        )


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    peer: str,
    stdin_fd: int,
    out: BinaryIO,
    idle_timeout: float | None,
    encodings: Encodings,
) -> None:
    """Both directions of one stream connection until both are done.

    stdin goes to the peer until it ends, then the connection is half-closed;
    what the peer sends goes to ``out`` until it closes.  When stdin is a
    terminal, the peer closing ends it all: nobody is typing for a closed peer.
    """
    sending = asyncio.create_task(
        _send_stdin(writer, peer, stdin_fd, idle_timeout, encodings.outgoing())
    )
    receiving = asyncio.create_task(_receive(reader, peer, out, idle_timeout, encodings.incoming()))
    pending = {sending, receiving}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in (receiving, sending):  # a reset shows on both: name the first
                if task in done:
                    task.result()
            if receiving in done and os.isatty(stdin_fd):
                return
    finally:
        for task in (sending, receiving):
            task.cancel()
        await asyncio.gather(sending, receiving, return_exceptions=True)


async def _send_stdin(
    writer: asyncio.StreamWriter,
    peer: str,
    stdin_fd: int,
    idle_timeout: float | None,
    recoder: Transcoder | None,
) -> None:
    """Send stdin to the peer, then half-close; say how much went if the peer broke off."""
    sent = 0

    async def send(data: bytes) -> None:
        if writer.transport.is_closing():  # uvloop raises RuntimeError on a write then
            raise ConnectionResetError(errno.ECONNRESET, "connection lost")
        writer.write(data)
        async with asyncio.timeout(idle_timeout):
            await writer.drain()

    try:
        async for chunk in _stdin_chunks(stdin_fd):
            await send(recoder.feed(chunk) if recoder else chunk)
            sent += len(chunk)
        if recoder:
            await send(recoder.end())
        if writer.can_write_eof():
            writer.write_eof()
    except TimeoutError:
        raise Timeout(
            f"cannot send to {peer}: nothing accepted for {quantity(idle_timeout or 0, 'second')}"
        ) from None
    except OSError as exc:
        raise ConnectionClosed(
            f"cannot send to {peer}: {describe_os_error(exc)} before all of stdin was sent "
            f"({quantity(sent, 'byte')} sent)"
        ) from None


async def _receive(
    reader: asyncio.StreamReader,
    peer: str,
    out: BinaryIO,
    idle_timeout: float | None,
    recoder: Transcoder | None,
) -> None:
    """Copy what the peer sends to ``out`` until it closes."""
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
                data = await reader.read(_CHUNK)
        except TimeoutError:
            raise Timeout(
                f"no data from {peer} within {quantity(idle_timeout or 0, 'second')}"
            ) from None
        except OSError as exc:
            raise translate_os_error(exc, "receive from", peer) from None
        if not data:
            break
        _write_all(out, recoder.feed(data) if recoder else data)
    if recoder:
        _write_all(out, recoder.end())


class _Datagrams(asyncio.DatagramProtocol):
    """Queues what arrives on a UDP socket: (data, address) pairs or an error."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[tuple[bytes, object] | Exception | None] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.incoming.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.incoming.put_nowait(exc)


async def _connect_udp(
    endpoint: Endpoint,
    idle_timeout: float | None,
    udp_wait: float,
    stdin_fd: int,
    out: BinaryIO,
    encodings: Encodings,
) -> None:
    loop = asyncio.get_running_loop()
    protocol = _Datagrams()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: protocol, remote_addr=(endpoint.connect_host, endpoint.port)
        )
    except OSError as exc:
        raise translate_os_error(exc, "connect to", endpoint, ConnectError) from None
    incoming = encodings.incoming()
    stdin_done = asyncio.Event()

    async def pump() -> None:
        async for datagram in _stdin_datagrams(stdin_fd, encodings):
            transport.sendto(datagram)
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
                raise Timeout(
                    f"nothing from {endpoint} for {quantity(idle_timeout or 0, 'second')}"
                ) from None
            if isinstance(item, OSError):
                raise translate_os_error(item, "send to", endpoint, ConnectError)
            if isinstance(item, tuple):
                _write_all(out, incoming.feed(item[0], final=True) if incoming else item[0])
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        transport.close()


async def _stdin_datagrams(stdin_fd: int, encodings: Encodings) -> AsyncIterator[bytes]:
    """The datagrams to send for stdin: one per chunk read, re-encoded if asked."""
    recoder = encodings.outgoing()
    async for chunk in _stdin_chunks(stdin_fd):
        if datagram := recoder.feed(chunk) if recoder else chunk:
            yield datagram
    if recoder and (rest := recoder.end()):
        yield rest


async def listen(
    endpoint: Endpoint,
    *,
    keep_open: bool,
    stdin_fd: int,
    out: BinaryIO,
    on_ready: Callable[[list[Endpoint]], None],
    on_event: Callable[[str], None],
    encodings: Encodings = _UNCHANGED,
) -> None:
    """Accept connections on ``endpoint``: print what arrives, send stdin.

    Without ``keep_open`` one connection is served like :func:`connect`
    serves its own: all of stdin is sent, then the connection is half-closed,
    and the command ends when both directions are done.  With ``keep_open``
    every client is served at once, stdin goes to all of them, each client is
    closed once it has finished sending, and the command runs until
    SIGINT/SIGTERM.  Over UDP, stdin goes to whoever sent last.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bound = bind_endpoint(endpoint)
    relay = _Relay(stdin_fd, out, on_event, encodings)
    try:
        if endpoint.transport == "udp":
            await _listen_udp(bound[0].sock, stop, relay, on_ready, bound[0].actual)
        elif keep_open:
            await _listen_many(bound, stop, relay, on_ready)
        else:
            await _listen_once(bound, stop, relay, on_ready)
    finally:
        for item in bound:
            remove_unix_socket(item)
            item.sock.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


@dataclass(frozen=True)
class _Relay:
    """Where ``listen`` moves bytes: stdin, stdout, the event log and the encodings."""

    stdin_fd: int
    out: BinaryIO
    on_event: Callable[[str], None]
    encodings: Encodings


async def _start_servers(
    sockets: Sequence[BoundSocket],
    session: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None],
) -> list[asyncio.Server]:
    servers = []
    for item in sockets:
        if item.requested.transport == "unix":
            servers.append(await asyncio.start_unix_server(session, sock=item.sock))
        else:
            servers.append(await asyncio.start_server(session, sock=item.sock))
    return servers


async def _unless_stopped(work: asyncio.Future[Any], stop: asyncio.Event) -> bool:
    """Wait until ``work`` is done or ``stop`` is set; True if ``work`` is done."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([work, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    return work.done()


async def _listen_once(
    sockets: Sequence[BoundSocket],
    stop: asyncio.Event,
    relay: _Relay,
    on_ready: Callable[[list[Endpoint]], None],
) -> None:
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    accepted = asyncio.get_running_loop().create_future()

    def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if accepted.done():  # a second client raced in before the listener closed
            writer.close()
        else:
            accepted.set_result((reader, writer))

    listeners = await _start_servers(sockets, session)
    on_ready([item.actual for item in sockets])
    try:
        connected = await _unless_stopped(accepted, stop)
        for listener in listeners:
            listener.close()
        if not connected:
            return
        reader, writer = accepted.result()
        peer = describe_peer(writer.get_extra_info("peername"))
        relay.on_event(f"connection from {peer}")
        exchange = asyncio.create_task(
            _exchange(reader, writer, peer, relay.stdin_fd, relay.out, None, relay.encodings)
        )
        try:
            if await _unless_stopped(exchange, stop):
                exchange.result()
        finally:
            exchange.cancel()
            await asyncio.gather(exchange, return_exceptions=True)
            writer.close()
            relay.on_event(f"closed {peer}")
    finally:
        accepted.cancel()
        for listener in listeners:
            listener.close()


async def _listen_many(
    sockets: Sequence[BoundSocket],
    stop: asyncio.Event,
    relay: _Relay,
    on_ready: Callable[[list[Endpoint]], None],
) -> None:
    clients: set[asyncio.StreamWriter] = set()
    pump: asyncio.Task[None] | None = None

    def drop(writer: asyncio.StreamWriter) -> None:
        clients.discard(writer)
        writer.close()

    async def broadcast_stdin() -> None:
        recoder = relay.encodings.outgoing()
        async for chunk in _stdin_chunks(relay.stdin_fd):
            data = recoder.feed(chunk) if recoder else chunk
            for writer in list(clients):
                if writer.transport.is_closing():  # uvloop raises RuntimeError on a write then
                    drop(writer)
                    continue
                writer.write(data)
                try:
                    await writer.drain()
                except OSError:
                    drop(writer)

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal pump
        peer = describe_peer(writer.get_extra_info("peername"))
        clients.add(writer)
        relay.on_event(f"connection from {peer}")
        if pump is None:
            pump = asyncio.create_task(broadcast_stdin())
        recoder = relay.encodings.incoming()
        try:
            while data := await reader.read(_CHUNK):
                _write_all(relay.out, recoder.feed(data) if recoder else data)
            if recoder:
                _write_all(relay.out, recoder.end())
        except OSError:
            pass
        finally:
            drop(writer)
            relay.on_event(f"closed {peer}")

    listeners = await _start_servers(sockets, session)
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
    relay: _Relay,
    on_ready: Callable[[list[Endpoint]], None],
    actual: Endpoint,
) -> None:
    loop = asyncio.get_running_loop()
    protocol = _Datagrams()
    transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
    last_peer: list[object] = []
    incoming = relay.encodings.incoming()

    async def receive() -> None:
        while True:
            item = await protocol.incoming.get()
            if isinstance(item, tuple):
                last_peer[:] = [item[1]]
                _write_all(relay.out, incoming.feed(item[0], final=True) if incoming else item[0])

    async def send() -> None:
        async for datagram in _stdin_datagrams(relay.stdin_fd, relay.encodings):
            if last_peer:
                transport.sendto(datagram, last_peer[0])  # type: ignore[arg-type]

    on_ready([actual])
    tasks = [asyncio.create_task(receive()), asyncio.create_task(send())]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        transport.close()
