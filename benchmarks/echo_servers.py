"""Anchor echo servers for ``benchmarks/echo.py``, each speaking length-prefixed frames.

Every frame is a 4-byte big-endian length followed by that many bytes; each
frame received is sent back as it came.  Run one per process::

    python benchmarks/echo_servers.py threading        # (a) socketserver.ThreadingTCPServer
    python benchmarks/echo_servers.py uvloop-protocol  # (b) asyncio.Protocol on uvloop
    python benchmarks/echo_servers.py asyncio-streams  # (c) asyncio streams, default loop
    python benchmarks/echo_servers.py asyncio-protocol-tls --tls-cert C --tls-key K
                       # (b)'s Protocol over TLS on asyncio's loop, socketeer's SSLContext

Each binds 127.0.0.1 (port 0 unless ``--port``), prints ``listening on
127.0.0.1:PORT`` (flushed) once it accepts, and exits 0 on SIGTERM or SIGINT.
A frame announcing more than 16 MiB closes its connection, as socketeer does.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socketserver
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

HEADER = 4
MAX_FRAME = 16 * 1024 * 1024
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def announce(host: str, port: int) -> None:
    print(f"listening on {host}:{port}", flush=True)


# (a) socketserver.ThreadingTCPServer: one thread per connection, blocking I/O -----------


class LengthEchoHandler(socketserver.StreamRequestHandler):
    """Read a 4-byte header through rfile, then the body; write header+body back."""

    disable_nagle_algorithm = True

    def handle(self) -> None:
        rfile, wfile = self.rfile, self.wfile
        try:
            while True:
                header = rfile.read(HEADER)
                if len(header) < HEADER:
                    return
                size = int.from_bytes(header, "big")
                if size > MAX_FRAME:
                    return
                body = rfile.read(size)
                if len(body) < size:
                    return
                wfile.write(header + body)
        except OSError:
            return


class ThreadingEchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # the stdlib default of 5 drops SYNs when 100 clients connect


def run_threading(host: str, port: int) -> None:
    # Block the stop signals in every thread and wait for them in the main one.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    server = ThreadingEchoServer((host, port), LengthEchoHandler)
    serving = threading.Thread(target=server.serve_forever, name="serve_forever", daemon=True)
    serving.start()
    announce(host, server.server_address[1])
    signal.sigwait(STOP_SIGNALS)
    server.shutdown()
    server.server_close()


# (b) a hand-written asyncio.Protocol, run on uvloop ----------------------------------


class FrameEchoProtocol(asyncio.Protocol):
    """A minimal, correct length-prefix parser in data_received.

    Whole frames are parsed straight out of ``data``; an unfinished frame is
    kept in a bytearray and parsed only once all of it is there, so a large
    frame arriving in many pieces costs linear time.
    """

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._need = HEADER  # bytes the buffer must hold before it is worth parsing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return
            data = bytes(buffer)
            buffer.clear()
        pos, end = 0, len(data)
        while end - pos >= HEADER:
            header = data[pos : pos + HEADER]
            size = int.from_bytes(header, "big")
            if size > MAX_FRAME:
                transport.close()
                return
            stop = pos + HEADER + size
            if stop > end:
                self._need = HEADER + size
                break
            transport.write(header + data[pos + HEADER : stop])
            pos = stop
        else:
            self._need = HEADER
        if pos < end:
            buffer += data[pos:]


async def serve_protocol(host: str, port: int, context: ssl.SSLContext | None = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FrameEchoProtocol, host, port, backlog=1024, ssl=context)
    await _serve_until_signal(server, port_of(server), host)


def run_uvloop_protocol(host: str, port: int) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_protocol(host, port))


def run_asyncio_protocol_tls(host: str, port: int, cert: Path, key: Path) -> None:
    """(b)'s Protocol over TLS, with the SSLContext ``socketeer serve echo`` makes.

    asyncio's loop, as socketeer's TLS servers use (uvloop 0.23 stalls TLS
    handshakes that negotiate ALPN).
    """
    from socketeer.tls import ServerTLS, alpn

    context = ServerTLS(cert, key).context([alpn("echo")])
    asyncio.run(serve_protocol(host, port, context))


# (c) asyncio streams (StreamReader.readexactly) on asyncio's default loop ------------


class StreamsEcho:
    """The handler for asyncio.start_server, and the connections it has open."""

    def __init__(self) -> None:
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(cast("asyncio.Task[None]", task))
        self.writers.add(writer)
        try:
            while True:
                header = await reader.readexactly(HEADER)
                size = int.from_bytes(header, "big")
                if size > MAX_FRAME:
                    return
                body = await reader.readexactly(size)
                writer.write(header + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.writers.discard(writer)
            self.tasks.discard(cast("asyncio.Task[None]", task))
            writer.close()

    async def close_all(self) -> None:
        """Close open connections so their handlers end normally, not by cancellation."""
        for writer in list(self.writers):
            writer.close()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=2.0)


async def serve_streams(host: str, port: int) -> None:
    echo = StreamsEcho()
    server = await asyncio.start_server(echo.handle, host, port, backlog=1024)
    await _serve_until_signal(server, port_of(server), host)
    await echo.close_all()


def run_asyncio_streams(host: str, port: int) -> None:
    asyncio.run(serve_streams(host, port))  # the default loop, never uvloop


# shared ---------------------------------------------------------------------------------


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def _serve_until_signal(server: asyncio.Server, port: int, host: str) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    announce(host, port)
    await stop.wait()
    server.close()
    await server.wait_closed()


SERVERS: dict[str, Callable[[str, int], None]] = {
    "threading": run_threading,
    "uvloop-protocol": run_uvloop_protocol,
    "asyncio-streams": run_asyncio_streams,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=sorted([*SERVERS, "asyncio-protocol-tls"]))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate (asyncio-protocol-tls)")
    parser.add_argument("--tls-key", type=Path, help="PEM key (asyncio-protocol-tls)")
    args = parser.parse_args()
    if args.kind == "asyncio-protocol-tls":
        if args.tls_cert is None or args.tls_key is None:
            parser.error("asyncio-protocol-tls needs --tls-cert and --tls-key")
        run_asyncio_protocol_tls("127.0.0.1", args.port, args.tls_cert, args.tls_key)
        return
    SERVERS[args.kind]("127.0.0.1", args.port)


if __name__ == "__main__":
    main()
