"""Clients: a blocking :class:`Connection` and an asyncio :class:`AsyncConnection`.

Both speak to any endpoint (TCP, IPv6, Unix; the blocking one also UDP),
both are context managers, and every operation has a timeout.  Reads come in
the shapes network code needs::

    with Connection.connect("127.0.0.1:1234", timeout=5) as conn:
        print(conn.recv())             # whatever arrives next (the greeting)
        conn.sendline("rose")
        print(conn.recvline())         # one line, without its line ending
        conn.recvexactly(4)            # exactly four bytes, or ConnectionClosed
        conn.recvuntil(b"> ")          # up to and including a prompt
        conn.send_message(b"frame")    # through the connection's codec
        conn.recv_message()

A ``tls://`` endpoint is TCP with TLS; ``tls=`` (a :class:`~socketeer.tls.ClientTLS`)
says how the server is trusted: by default, by the system's certificate
authorities.

Failures raise the package's own errors: :class:`~socketeer.errors.ConnectError`
(naming the endpoint), :class:`~socketeer.errors.Timeout`,
:class:`~socketeer.errors.ConnectionClosed` (with the bytes that did arrive).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Self

from .endpoint import Endpoint, parse_endpoint
from .errors import (
    ConnectError,
    ConnectionClosed,
    LocalProtocolError,
    NetworkError,
    Timeout,
    translate_os_error,
)
from .framing import DEFAULT_MAX_LINE_LENGTH, Codec, LengthPrefixCodec, ReceiveBuffer
from .quantity import quantity
from .tcp_options import set_nodelay
from .tls import ClientTLS, client_handshake, wrap_blocking
from .visible import visible

__all__ = ["DEFAULT_TIMEOUT", "AsyncConnection", "Connection"]

DEFAULT_TIMEOUT = 10.0
_READ_SIZE = 256 * 1024


def _endpoint(target: str | Endpoint) -> Endpoint:
    return target if isinstance(target, Endpoint) else parse_endpoint(target)


def _delimiter_name(delimiter: bytes) -> str:
    """How an error names what it waited for: ``a line ending``, ``the delimiter "> "``."""
    if delimiter in (b"\n", b"\r\n"):
        return "a line ending"
    return f'the delimiter "{visible(delimiter.decode("utf-8", "surrogateescape"))}"'


def _as_bytes(data: bytes | str, encoding: str) -> bytes:
    return data.encode(encoding) if isinstance(data, str) else data


class _Reading:
    """What both connections share: the endpoint, the buffers and the read shapes.

    ``_next`` on each subclass reads from the network; everything here works
    on what has already arrived.
    """

    def __init__(
        self, endpoint: Endpoint, timeout: float | None, codec: Codec | None, encoding: str
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.codec: Codec = codec or LengthPrefixCodec()
        self.encoding = encoding
        self._buffer = ReceiveBuffer()
        self._messages: deque[bytes] = deque()
        self._eof = False

    def _closed_error(self, want: str) -> ConnectionClosed:
        partial = self._buffer.take()
        return ConnectionClosed(
            f"{self.endpoint} closed the connection before {want} arrived "
            f"({quantity(len(partial), 'byte')} received)",
            partial,
        )

    def _timeout_error(self, want: str) -> Timeout:
        what = want.removeprefix("a ").removeprefix("the ")  # "no line ending", "no message"
        return Timeout(
            f"no {what} from {self.endpoint} within {quantity(self.timeout or 0, 'second')}"
        )

    def _take_message(self) -> bytes | None:
        """A message already complete, after feeding what is buffered to the codec."""
        if not self._messages and self._buffer:
            self._messages.extend(self.codec.feed(self._buffer.take()))
        if not self._messages and self._eof:
            self._messages.extend(self.codec.end())
            if not self._messages:
                raise self._closed_error("a message")
        return self._messages.popleft() if self._messages else None

    def _line_ending(self, delimiter: bytes, line: bytes) -> bytes:
        line = line[: -len(delimiter)]
        return line[:-1] if delimiter == b"\n" and line.endswith(b"\r") else line


class Connection(_Reading):
    """A blocking connection.  Create it with :meth:`connect`."""

    def __init__(
        self,
        sock: socket.socket,
        endpoint: Endpoint,
        timeout: float | None = DEFAULT_TIMEOUT,
        codec: Codec | None = None,
        encoding: str = "utf-8",
    ) -> None:
        super().__init__(endpoint, timeout, codec, encoding)
        self.sock = sock
        sock.settimeout(timeout)
        set_nodelay(sock)  # a request must not wait for the ACK of the one before

    @classmethod
    def connect(
        cls,
        target: str | Endpoint,
        timeout: float | None = DEFAULT_TIMEOUT,
        codec: Codec | None = None,
        encoding: str = "utf-8",
        *,
        tls: ClientTLS | None = None,
    ) -> Self:
        """Connect to ``target`` (an endpoint string or :class:`Endpoint`).

        ``tls`` applies to ``tls://`` endpoints (default: :class:`~socketeer.tls.ClientTLS`,
        the system's authorities).
        """
        endpoint = _endpoint(target)
        sock: socket.socket
        if endpoint.tls:
            sock = wrap_blocking(
                lambda: _tcp_socket(endpoint, timeout), endpoint, tls or ClientTLS()
            )
            return cls(sock, endpoint, timeout, codec, encoding)
        try:
            if endpoint.transport == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                try:
                    sock.connect(endpoint.path or "")
                except OSError:
                    sock.close()
                    raise
            elif endpoint.transport == "udp":
                sock = _udp_socket(endpoint)
            else:
                sock = _tcp_socket(endpoint, timeout)
        except OSError as exc:
            raise translate_os_error(exc, "connect to", endpoint, ConnectError) from None
        return cls(sock, endpoint, timeout, codec, encoding)

    # sending ------------------------------------------------------------------------

    def send(self, data: bytes | str) -> None:
        """Send all of ``data`` (text is encoded with the connection's encoding)."""
        self._io("send", self.sock.sendall, _as_bytes(data, self.encoding))

    def sendline(self, line: bytes | str, ending: bytes = b"\n") -> None:
        """Send ``line`` followed by ``ending``."""
        self.send(_as_bytes(line, self.encoding) + ending)

    def send_message(self, message: bytes | str) -> None:
        """Send one message framed by the connection's codec."""
        self.send(self.codec.encode(_as_bytes(message, self.encoding)))

    def shutdown_write(self) -> None:
        """Half-close: tell the peer we will send nothing more, keep receiving.

        Over TLS there is no half-close (see docs/tls.md): this does nothing.
        """
        if not self.endpoint.tls:
            self._io("shut down", self.sock.shutdown, socket.SHUT_WR)

    # receiving ----------------------------------------------------------------------

    def recv(self, size: int = _READ_SIZE) -> bytes:
        """Return what has arrived (at most ``size`` bytes), waiting for something.

        Returns ``b""`` once the peer has closed.  Over UDP, one datagram.
        """
        if self._buffer:
            return self._buffer.take(size)
        if self._eof:
            return b""
        return self._read("data", size)

    def recvuntil(self, delimiter: bytes | str, limit: int = DEFAULT_MAX_LINE_LENGTH) -> bytes:
        """Return everything up to and including ``delimiter``."""
        delim = _as_bytes(delimiter, self.encoding)
        while (found := self._buffer.take_until(delim, limit, "data before the delimiter")) is None:
            self._fill(_delimiter_name(delim))
        return found

    def recvline(self, delimiter: bytes = b"\n", limit: int = DEFAULT_MAX_LINE_LENGTH) -> bytes:
        """Return the next line without its ending (``\\r\\n`` or ``\\n``)."""
        return self._line_ending(delimiter, self.recvuntil(delimiter, limit))

    def recvexactly(self, size: int) -> bytes:
        """Return exactly ``size`` bytes, or raise ConnectionClosed with what arrived."""
        while (found := self._buffer.take_exactly(size)) is None:
            self._fill(quantity(size, "byte"))
        return found

    def recv_message(self) -> bytes:
        """Return the next whole message of the connection's codec."""
        while (message := self._take_message()) is None:
            self._buffer.feed(self._read("a message"))
        return message

    def _fill(self, want: str) -> None:
        data = b"" if self._eof else self._read(want)
        if not data:
            raise self._closed_error(want)
        self._buffer.feed(data)

    def _read(self, want: str, size: int = _READ_SIZE) -> bytes:
        try:
            data = self.sock.recv(size)
        except TimeoutError:
            raise self._timeout_error(want) from None
        except OSError as exc:
            raise translate_os_error(exc, "receive from", self.endpoint) from None
        if not data and self.endpoint.is_stream:
            self._eof = True
        return data

    def _io(self, action: str, call: Callable[..., object], *args: object) -> None:
        try:
            call(*args)
        except TimeoutError:
            raise Timeout(f"cannot {action} to {self.endpoint}: timed out") from None
        except OSError as exc:
            raise translate_os_error(exc, f"{action} to", self.endpoint) from None

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _tcp_socket(endpoint: Endpoint, timeout: float | None) -> socket.socket:
    try:
        return socket.create_connection((endpoint.connect_host, endpoint.port), timeout)
    except OSError as exc:
        raise translate_os_error(exc, "connect to", endpoint, ConnectError) from None


def _udp_socket(endpoint: Endpoint) -> socket.socket:
    infos = socket.getaddrinfo(endpoint.connect_host, endpoint.port, type=socket.SOCK_DGRAM)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock


class AsyncConnection(_Reading):
    """An asyncio connection over TCP or a Unix socket.  Create it with :meth:`connect`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        endpoint: Endpoint,
        timeout: float | None = DEFAULT_TIMEOUT,
        codec: Codec | None = None,
        encoding: str = "utf-8",
    ) -> None:
        super().__init__(endpoint, timeout, codec, encoding)
        self.reader = reader
        self.writer = writer
        set_nodelay(writer.get_extra_info("socket"))

    @classmethod
    async def connect(
        cls,
        target: str | Endpoint,
        timeout: float | None = DEFAULT_TIMEOUT,
        codec: Codec | None = None,
        encoding: str = "utf-8",
        *,
        tls: ClientTLS | None = None,
    ) -> Self:
        """Connect to ``target`` (TCP, TLS or Unix); ``tls`` as for :meth:`Connection.connect`."""
        endpoint = _endpoint(target)
        if endpoint.transport == "udp":
            raise LocalProtocolError(
                f"AsyncConnection speaks streams; use Connection for {endpoint}"
            )
        try:
            async with asyncio.timeout(timeout):
                if endpoint.transport == "unix":
                    reader, writer = await asyncio.open_unix_connection(endpoint.path)
                elif endpoint.tls:
                    reader, writer = await client_handshake(
                        lambda context: asyncio.open_connection(
                            endpoint.connect_host,
                            endpoint.port,
                            ssl=context,
                            server_hostname=endpoint.connect_host,
                        ),
                        endpoint,
                        tls or ClientTLS(),
                    )
                else:
                    reader, writer = await asyncio.open_connection(
                        endpoint.connect_host, endpoint.port
                    )
        except OSError as exc:
            raise translate_os_error(exc, "connect to", endpoint, ConnectError) from None
        return cls(reader, writer, endpoint, timeout, codec, encoding)

    async def send(self, data: bytes | str) -> None:
        """Send all of ``data`` and wait until the transport accepted it."""
        self.writer.write(_as_bytes(data, self.encoding))
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
        except TimeoutError:
            raise Timeout(f"cannot send to {self.endpoint}: timed out") from None
        except OSError as exc:
            raise translate_os_error(exc, "send to", self.endpoint) from None

    async def sendline(self, line: bytes | str, ending: bytes = b"\n") -> None:
        """Send ``line`` followed by ``ending``."""
        await self.send(_as_bytes(line, self.encoding) + ending)

    async def send_message(self, message: bytes | str) -> None:
        """Send one message framed by the connection's codec."""
        await self.send(self.codec.encode(_as_bytes(message, self.encoding)))

    def shutdown_write(self) -> None:
        """Half-close: tell the peer we will send nothing more, keep receiving."""
        if self.writer.can_write_eof():
            self.writer.write_eof()

    async def recv(self, size: int = _READ_SIZE) -> bytes:
        """Return what has arrived (at most ``size`` bytes); ``b""`` once the peer closed."""
        if self._buffer:
            return self._buffer.take(size)
        if self._eof:
            return b""
        return await self._read("data", size)

    async def recvuntil(
        self, delimiter: bytes | str, limit: int = DEFAULT_MAX_LINE_LENGTH
    ) -> bytes:
        """Return everything up to and including ``delimiter``."""
        delim = _as_bytes(delimiter, self.encoding)
        while (found := self._buffer.take_until(delim, limit, "data before the delimiter")) is None:
            await self._fill(_delimiter_name(delim))
        return found

    async def recvline(
        self, delimiter: bytes = b"\n", limit: int = DEFAULT_MAX_LINE_LENGTH
    ) -> bytes:
        """Return the next line without its ending (``\\r\\n`` or ``\\n``)."""
        return self._line_ending(delimiter, await self.recvuntil(delimiter, limit))

    async def recvexactly(self, size: int) -> bytes:
        """Return exactly ``size`` bytes, or raise ConnectionClosed with what arrived."""
        while (found := self._buffer.take_exactly(size)) is None:
            await self._fill(quantity(size, "byte"))
        return found

    async def recv_message(self) -> bytes:
        """Return the next whole message of the connection's codec."""
        while (message := self._take_message()) is None:
            self._buffer.feed(await self._read("a message"))
        return message

    async def _fill(self, want: str) -> None:
        data = b"" if self._eof else await self._read(want)
        if not data:
            raise self._closed_error(want)
        self._buffer.feed(data)

    async def _read(self, want: str, size: int = _READ_SIZE) -> bytes:
        try:
            async with asyncio.timeout(self.timeout):
                data = await self.reader.read(size)
        except TimeoutError:
            raise self._timeout_error(want) from None
        except OSError as exc:
            raise translate_os_error(exc, "receive from", self.endpoint) from None
        if not data:
            self._eof = True
        return data

    async def close(self) -> None:
        """Close the connection and wait until it is closed."""
        self.writer.close()
        with contextlib.suppress(OSError, NetworkError):
            await self.writer.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
