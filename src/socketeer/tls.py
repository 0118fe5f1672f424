"""TLS for every stream endpoint: server and client contexts, the handshake, and trust.

A ``tls://`` endpoint is TCP with TLS underneath the session layer: the
server accepts the TCP connection, admits it (``--max-conns`` counts it from
then on, handshake included), then runs the handshake with a deadline
(:func:`accept_tls`); the session gets asyncio's TLS transport through the
same :class:`~socketeer.stream.TransportStream` as any other.  A handshake
that fails or does not finish costs one log line.

Contexts: TLS 1.2 at least, Python's and OpenSSL's default ciphers,
compression and renegotiation off, and ALPN naming the protocol
(``socketeer-files/1``, ``socketeer-chat/1``, ...: :func:`alpn`).

Clients trust a server like ssh does (:class:`ClientTLS`): by a certificate
authority (the system's, or ``ca``), or by a pinned fingerprint, or by the
fingerprint remembered in ``known_hosts`` when the user first accepted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .endpoint import Endpoint, describe_peer
from .errors import TLSError, describe_os_error
from .known_hosts import KnownHosts, fingerprint, parse_fingerprint
from .proxy_doorway import feed
from .session import Session
from .tls_transport import start_tls

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "ClientTLS",
    "ServerTLS",
    "accept_tls",
    "alpn",
    "certificate_fingerprint",
    "client_handshake",
    "wrap_blocking",
]

log = logging.getLogger("socketeer.server")

#: Seconds a client has to finish its TLS handshake.
HANDSHAKE_TIMEOUT = 10.0
_NOT_TLS = {
    "WRONG_VERSION_NUMBER",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "HTTP_REQUEST",
    "UNEXPECTED_RECORD",
    "UNEXPECTED_MESSAGE",
}


def alpn(service: str) -> str:
    """The ALPN protocol name of a service: ``socketeer-files/1``."""
    return f"socketeer-{service}/1"


def _secure(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def certificate_fingerprint(cert_file: Path) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM file (the server's own)."""
    pem = cert_file.read_text(encoding="ascii", errors="replace")
    begin = pem.index("-----BEGIN CERTIFICATE-----")
    end = pem.index("-----END CERTIFICATE-----", begin) + len("-----END CERTIFICATE-----")
    return fingerprint(ssl.PEM_cert_to_DER_cert(pem[begin:end]))


@dataclass(frozen=True)
class ServerTLS:
    """A server's certificate (PEM, full chain) and key, and who it accepts.

    ``client_ca`` set: clients must present a certificate signed by it
    (mutual TLS).  ``handshake_timeout``: seconds a client has to finish the
    handshake.
    """

    cert: Path
    key: Path
    client_ca: Path | None = None
    handshake_timeout: float = HANDSHAKE_TIMEOUT

    def context(self, protocols: list[str] | None = None) -> ssl.SSLContext:
        """A server context offering ALPN ``protocols``; OSError/SSLError if a file is bad."""
        context = _secure(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=self.client_ca)
        if protocols:
            context.set_alpn_protocols(protocols)
        return context

    @property
    def fingerprint(self) -> str:
        """The SHA-256 fingerprint of the server's certificate."""
        return certificate_fingerprint(self.cert)


class _Handshaking(asyncio.Protocol):
    """The application side during the handshake: keeps what arrives before the session."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.eof = False
        self.lost: list[Exception | None] = []

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


async def accept_tls(
    transport: asyncio.BaseTransport,
    session: Session,
    context: ssl.SSLContext,
    timeout: float,
    on_failure: Callable[[], None],
    on_success: Callable[[], None],
    received: bytes = b"",
    peername: object = None,
) -> None:
    """Run the server's handshake on an admitted connection, then start ``session`` on it.

    The caller pauses reading on ``transport`` when it admits the connection,
    so that nothing the client sends is lost before this runs; ``received``
    is the start of the handshake if some was read already (after a PROXY
    header).  ``peername`` (None: the transport's) is who the client is: the
    address a PROXY header carried, in log lines and for the session.

    A handshake that fails or takes longer than ``timeout`` seconds is
    logged in one line and the connection closed; ``on_failure`` then
    releases what admission took.
    """
    transport = cast(asyncio.Transport, transport)
    if peername is None:
        peername = transport.get_extra_info("peername")
    peer = describe_peer(peername)
    waiting = _Handshaking()
    transport.set_protocol(waiting)
    try:
        tls_transport = await start_tls(
            transport, waiting, context, timeout=timeout, received=received
        )
    except (OSError, TimeoutError, ConnectionError) as exc:
        log.warning("TLS handshake with %s failed: %s", peer, _handshake_problem(exc, timeout))
        transport.abort()
        on_failure()
        return
    except BaseException:
        transport.abort()
        on_failure()
        raise
    if tls_transport is None:  # the connection went while the handshake ended
        on_failure()
        return
    on_success()
    tls_transport.set_protocol(session)
    session.connection_made(tls_transport, peername)
    for data in waiting.data:
        feed(session, data)
    if waiting.eof:
        session.eof_received()
    if waiting.lost:
        session.connection_lost(waiting.lost[0])


def _handshake_problem(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, ssl.SSLError):
        reason = describe_os_error(exc)
        return "the client does not speak TLS" if exc.reason in _NOT_TLS else reason
    if isinstance(exc, TimeoutError | ConnectionAbortedError):
        return f"not finished within {timeout:g} seconds"
    if isinstance(exc, ConnectionResetError | ssl.SSLEOFError):
        return "the client closed the connection during the handshake"
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    return str(exc) or type(exc).__name__


# clients ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientTLS:
    """How a client trusts a TLS server, and the certificate it presents.

    ``ca``: trust this PEM file of authorities instead of the system's.
    ``fingerprint``: trust only a certificate with this SHA-256 fingerprint
    (colons optional, any case).  ``known_hosts``: a file of fingerprints
    the user accepted (see :mod:`socketeer.known_hosts`): a server listed
    there must present the same certificate, and one that is neither signed
    by a trusted authority nor listed is offered to ``ask`` (shown a
    question, returns whether the user trusts it; then it is remembered).
    Without ``ask`` such a server is refused with its fingerprint.
    ``cert``/``key``: a client certificate (mutual TLS).  ``alpn``: the
    protocols offered.
    """

    ca: Path | None = None
    fingerprint: str | None = None
    known_hosts: Path | None = None
    ask: Callable[[str], bool] | None = None
    cert: Path | None = None
    key: Path | None = None
    alpn: tuple[str, ...] = ()

    def context(self, *, verify: bool) -> ssl.SSLContext:
        """A client context that checks the certificate chain and name, or checks nothing."""
        if verify:
            context = _secure(ssl.create_default_context(cafile=self.ca))
        else:
            context = _secure(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert is not None:
            context.load_cert_chain(self.cert, self.key)
        if self.alpn:
            context.set_alpn_protocols(list(self.alpn))
        return context


def _where(endpoint: Endpoint) -> str:
    host = endpoint.connect_host
    return f"[{host}]:{endpoint.port}" if ":" in host else f"{host}:{endpoint.port}"


class _Trust:
    """One connection's trust decision: what to expect, and what to do with what came."""

    def __init__(self, tls: ClientTLS, endpoint: Endpoint) -> None:
        self.tls = tls
        self.endpoint = endpoint
        self.where = _where(endpoint)
        self.known = KnownHosts(tls.known_hosts) if tls.known_hosts is not None else None
        self.pinned = parse_fingerprint(tls.fingerprint) if tls.fingerprint else None
        self.remembered = self.known.get(self.where) if self.known and not self.pinned else None

    @property
    def expected(self) -> str | None:
        return self.pinned or self.remembered

    def context(self) -> ssl.SSLContext:
        """The context of the first attempt: checking nothing when a fingerprint decides."""
        return self.tls.context(verify=self.expected is None)

    def check(self, der: bytes | None) -> None:
        """Raise TLSError unless the certificate presented is the one expected."""
        if self.expected is None:
            return
        presented = fingerprint(der or b"")
        if presented == self.expected:
            return
        if self.pinned:
            raise TLSError(
                f"cannot trust {self.endpoint}: its certificate's sha256 fingerprint is "
                f"{presented}, not the pinned {self.pinned}"
            )
        raise TLSError(
            f"REFUSED: the certificate of {self.where} has CHANGED since it was remembered in "
            f"{self.tls.known_hosts} (was {self.remembered}, now {presented}); someone may be "
            "intercepting the connection, or the server got a new certificate: if you know "
            f"it did, remove the line of {self.where} from that file"
        )

    def unknown(self, der: bytes | None, problem: ssl.SSLCertVerificationError) -> None:
        """A certificate no authority vouches for: ask (and remember), or raise TLSError."""
        presented = fingerprint(der or b"")
        why = problem.verify_message or describe_os_error(problem)
        if self.tls.ask is not None and self.known is not None and self.tls.ca is None:
            question = (
                f"The certificate of {self.where} is not signed by a trusted authority ({why}).\n"
                f"Its sha256 fingerprint is {presented}\n"
                f"Trust it and remember it in {self.tls.known_hosts}?"
            )
            if self.tls.ask(question):
                self.known.remember(self.where, presented)
                return
            raise TLSError(f"{self.endpoint}: certificate not trusted")
        raise TLSError(
            f"cannot trust {self.endpoint}: {why}; its sha256 fingerprint is {presented}: "
            f"if that is the server's, pin it with --tls-fingerprint {presented}"
        )

    def failed(self, exc: OSError) -> TLSError:
        """The handshake failed for another reason than trust."""
        if isinstance(exc, ssl.SSLError) and exc.reason in _NOT_TLS:
            return TLSError(
                f"cannot connect to {self.endpoint}: the server does not speak TLS "
                f"(drop tls:// to talk to it in plain text)"
            )
        if isinstance(exc, ssl.SSLEOFError | ConnectionResetError) or (
            isinstance(exc, ssl.SSLError) and exc.reason == "UNEXPECTED_EOF_WHILE_READING"
        ):
            return TLSError(
                f"cannot connect to {self.endpoint}: the server closed the connection during "
                "the TLS handshake (busy, refusing this client, or not speaking TLS)"
            )
        return TLSError(f"cannot connect to {self.endpoint}: {describe_os_error(exc)}")


# blocking -------------------------------------------------------------------------------


def wrap_blocking(
    connect: Callable[[], socket.socket], endpoint: Endpoint, tls: ClientTLS
) -> ssl.SSLSocket:
    """Connect (``connect`` opens the TCP socket) and handshake, trusting as ``tls`` says.

    A certificate no authority vouches for costs a second connection, made
    without checking, to learn its fingerprint.
    """
    trust = _Trust(tls, endpoint)
    try:
        sock = _handshake(connect(), trust.context(), endpoint)
    except ssl.SSLCertVerificationError as problem:
        sock = _handshake(connect(), tls.context(verify=False), endpoint)
        try:
            trust.unknown(sock.getpeercert(binary_form=True), problem)
        except BaseException:
            sock.close()
            raise
        return sock
    except ssl.SSLError as exc:
        raise trust.failed(exc) from None
    except (ConnectionError, EOFError) as exc:
        raise trust.failed(exc if isinstance(exc, OSError) else ConnectionResetError()) from None
    try:
        trust.check(sock.getpeercert(binary_form=True))
    except BaseException:
        sock.close()
        raise
    return sock


def _handshake(sock: socket.socket, context: ssl.SSLContext, endpoint: Endpoint) -> ssl.SSLSocket:
    try:
        return context.wrap_socket(sock, server_hostname=endpoint.connect_host)
    except BaseException:
        sock.close()
        raise


# asyncio --------------------------------------------------------------------------------


async def client_handshake(
    connect: Callable[[ssl.SSLContext], Any], endpoint: Endpoint, tls: ClientTLS
) -> Any:
    """Like :func:`wrap_blocking` for asyncio: ``connect(context)`` opens the TLS connection
    and returns ``(reader, writer)``.
    """
    trust = _Trust(tls, endpoint)
    try:
        reader, writer = await connect(trust.context())
    except ssl.SSLCertVerificationError as problem:
        reader, writer = await connect(tls.context(verify=False))
        try:
            trust.unknown(_peer_der(writer), problem)
        except BaseException:
            writer.close()
            raise
        return reader, writer
    except ssl.SSLError as exc:
        raise trust.failed(exc) from None
    except ConnectionError as exc:
        raise trust.failed(exc) from None
    try:
        trust.check(_peer_der(writer))
    except BaseException:
        writer.close()
        raise
    return reader, writer


def _peer_der(writer: asyncio.StreamWriter) -> bytes | None:
    ssl_object = writer.get_extra_info("ssl_object")
    with contextlib.suppress(AttributeError, ValueError):
        return ssl_object.getpeercert(binary_form=True)  # type: ignore[no-any-return]
    return None
