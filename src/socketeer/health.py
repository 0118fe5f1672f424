"""``--health ENDPOINT``: ``GET /healthz`` and ``GET /metrics`` for load balancers and Prometheus.

``/healthz`` answers ``200 ok`` while the server accepts connections and
``503 draining`` once it stops (after SIGTERM, during the grace period), so
a balancer's health check takes it out of rotation before its sessions are
closed.  ``/metrics`` is the Prometheus text format, written by the
``prometheus-client`` library from the server's counts
(:class:`~socketeer.stats.ServerStats`) at the moment it is asked, each
labelled with the service's name:

========================================  ================================================
``socketeer_connections_open``            stream connections open now
``socketeer_connections_total``           stream connections admitted
``socketeer_connections_refused_total``   refused, by ``reason``: access, limit, proxy_header
``socketeer_datagrams_refused_total``     datagrams dropped by ``--allow``/``--deny``
``socketeer_messages_total``              whole messages received (datagrams included)
``socketeer_received_bytes_total``        bytes received (TCP as the kernel counts; UDP)
``socketeer_sent_bytes_total``            bytes sent and acknowledged (TCP); sent (UDP)
``socketeer_errors_total``                errors logged (failed sessions and handlers)
========================================  ================================================

Bytes over TCP are the kernel's counts of sequence space (an end of stream
adds one); bytes over Unix sockets are not counted.  The HTTP side is as small as a
health check needs: one request per connection, a head of at most 8 KiB
read within 5 seconds, ``GET`` and ``HEAD`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .binding import BoundSocket, bind_endpoint, remove_unix_socket
from .endpoint import Endpoint
from .stats import REFUSAL_KINDS

if TYPE_CHECKING:
    from .server import Server

__all__ = ["HealthServer", "ServerCollector"]

log = logging.getLogger("socketeer.server")

#: The longest request head read, and how long a client has to send it.
MAX_HEAD = 8192
HEAD_TIMEOUT = 5.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class ServerCollector(Collector):
    """The server's counts as Prometheus metric families, read when ``/metrics`` is asked for."""

    def __init__(self, server: Server) -> None:
        self._server = server

    def collect(self) -> Iterator[Metric]:
        server, stats = self._server, self._server.stats
        service = server.service.name
        messages, received, sent = server.open_counts()

        def counter(name: str, text: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(f"socketeer_{name}", text, labels=["service"])
            family.add_metric([service], value)
            return family

        gauge = GaugeMetricFamily(
            "socketeer_connections_open", "Stream connections open now.", labels=["service"]
        )
        gauge.add_metric([service], server.session_count)
        yield gauge
        yield counter("connections", "Stream connections admitted.", stats.accepted)
        refused = CounterMetricFamily(
            "socketeer_connections_refused",
            "Stream connections refused, by reason.",
            labels=["service", "reason"],
        )
        for kind in REFUSAL_KINDS:
            refused.add_metric([service, kind], stats.refused[kind])
        yield refused
        yield counter(
            "datagrams_refused", "Datagrams dropped by --allow/--deny.", stats.datagrams_refused
        )
        yield counter("messages", "Whole messages received.", stats.messages + messages)
        yield counter("received_bytes", "Bytes received.", stats.bytes_received + received)
        yield counter("sent_bytes", "Bytes sent.", stats.bytes_sent + sent)
        yield counter("errors", "Errors logged.", stats.errors)


class _ErrorCounter(logging.Handler):
    """Counts the error records of socketeer's loggers into the server's stats."""

    def __init__(self, server: Server) -> None:
        super().__init__(logging.ERROR)
        self._server = server

    def emit(self, record: logging.LogRecord) -> None:
        self._server.stats.errors += 1


class HealthServer:
    """Serves ``/healthz`` and ``/metrics`` for ``server`` on ``endpoint``."""

    def __init__(self, server: Server, endpoint: Endpoint) -> None:
        self._server = server
        self._endpoint = endpoint
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(ServerCollector(server))
        self._errors = _ErrorCounter(server)
        self._bound: list[BoundSocket] = []
        self._listeners: list[asyncio.Server] = []

    @property
    def endpoints(self) -> list[Endpoint]:
        """What it listens on (real ports)."""
        return [bound.actual for bound in self._bound]

    async def start(self) -> list[Endpoint]:
        """Bind and listen; return the bound endpoints."""
        self._bound = bind_endpoint(self._endpoint)
        for bound in self._bound:
            self._listeners.append(await asyncio.start_server(self._answer, sock=bound.sock))
        logging.getLogger("socketeer").addHandler(self._errors)
        return self.endpoints

    def close(self) -> None:
        """Stop listening (requests being answered finish)."""
        logging.getLogger("socketeer").removeHandler(self._errors)
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        for bound in self._bound:
            remove_unix_socket(bound)
            bound.sock.close()

    def response(self, method: str, path: str) -> tuple[int, str, bytes]:
        """The status, content type and body for a request (HEAD gets GET's, body dropped)."""
        path = path.partition("?")[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"method not allowed\n"
        if path == "/healthz":
            if self._server.accepting:
                return 200, "text/plain; charset=utf-8", b"ok\n"
            return 503, "text/plain; charset=utf-8", b"draining\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
        return 404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n"

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                head = await _read_head(reader)
            method, path = _request_line(head)
            status, kind, body = self.response(method, path)
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("ascii")
                + (b"" if method == "HEAD" else body)
            )
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a client that cannot ask costs nothing but its connection
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    head = bytearray()
    while b"\r\n\r\n" not in head and b"\n\n" not in head:
        piece = await reader.read(MAX_HEAD)
        if not piece:
            break
        head += piece
        if len(head) > MAX_HEAD:
            raise ValueError("request head too long")
    return bytes(head)


def _request_line(head: bytes) -> tuple[str, str]:
    """The method and target of an HTTP request head; ValueError if it is not one."""
    line = head.split(b"\n", 1)[0].rstrip(b"\r").decode("ascii", "replace")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"not an HTTP request line: {line[:80]!r}")
    return parts[0], parts[1]
