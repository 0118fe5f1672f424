"""One exception hierarchy for socketeer, each error saying whose fault it is.

Every error raised by socketeer derives from :class:`SocketeerError` and its
message is one line a user can act on.  Operating-system errors are translated
into this hierarchy in one place: :func:`translate_os_error`.
"""

from __future__ import annotations

import errno

__all__ = [
    "BindError",
    "ConnectError",
    "ConnectionClosed",
    "EndpointError",
    "FrameTooLarge",
    "LocalProtocolError",
    "NetworkError",
    "ProtocolError",
    "RemoteProtocolError",
    "SocketeerError",
    "TLSError",
    "Timeout",
    "translate_os_error",
]


class SocketeerError(Exception):
    """Base class of every error socketeer raises."""


class EndpointError(SocketeerError, ValueError):
    """An address the user typed cannot be understood (the user's fault)."""


class ProtocolError(SocketeerError):
    """Bytes on the wire broke the framing or the service's protocol."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow (the peer's fault)."""


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol does not allow (our caller's fault)."""


class FrameTooLarge(RemoteProtocolError):
    """A message announced or accumulated past the configured limit.

    ``size`` is the size seen so far (or announced); ``limit`` the maximum.
    """

    def __init__(self, size: int, limit: int, what: str = "message") -> None:
        super().__init__(f"{what} of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit
        #: Messages completed in the same feed before the limit was passed;
        #: they are valid and should still be handled.
        self.messages: list[bytes] = []


class NetworkError(SocketeerError, OSError):
    """Talking to the network failed (nobody's fault in particular)."""


class ConnectError(NetworkError):
    """A connection could not be made; the message names the endpoint."""


class BindError(NetworkError):
    """A server could not listen on an endpoint; the message names it."""


class ConnectionClosed(NetworkError):
    """The peer closed the connection before what was asked for arrived.

    ``partial`` holds the bytes that did arrive, like
    :class:`asyncio.IncompleteReadError` does.
    """

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


class Timeout(NetworkError, TimeoutError):
    """An operation did not finish within its timeout."""


class TLSError(ConnectError):
    """A TLS connection could not be made or trusted; the message says why and what to do."""


# OpenSSL's reasons (``SSLError.reason``) for what people most often run into.
_NOT_TLS = "the peer does not speak TLS"
_TLS_REASONS = {
    "WRONG_VERSION_NUMBER": _NOT_TLS,
    "RECORD_LAYER_FAILURE": _NOT_TLS,
    "PACKET_LENGTH_TOO_LONG": _NOT_TLS,
    "HTTP_REQUEST": _NOT_TLS + " (it sent HTTP)",
    "UNEXPECTED_RECORD": _NOT_TLS,
    "UNEXPECTED_MESSAGE": _NOT_TLS,
    "UNSUPPORTED_PROTOCOL": "no TLS version in common (TLS 1.2 or newer is needed)",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common (TLS 1.2 or newer is needed)",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common (TLS 1.2 or newer is needed)",
    "NO_SHARED_CIPHER": "no cipher in common",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the TLS handshake was refused (no cipher in common?)",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "a client certificate is required (--tls-cert, --tls-key)",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no client certificate was presented",
    "TLSV1_ALERT_UNKNOWN_CA": "the certificate was not accepted (unknown authority)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the certificate was not accepted",
    "CERTIFICATE_VERIFY_FAILED": "the certificate could not be verified",
    "UNEXPECTED_EOF_WHILE_READING": "the connection closed during the TLS handshake",
}


def describe_tls_reason(reason: str | None, message: str) -> str:
    """One lower-case phrase for an OpenSSL error: its ``reason`` code, else its message."""
    if reason in _TLS_REASONS:
        return _TLS_REASONS[reason]
    if reason:
        return reason.lower().replace("_", " ")
    return message.split("(_ssl.c")[0].strip() or "TLS failed"


_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.EADDRINUSE: "address already in use",
    errno.EADDRNOTAVAIL: "address not available on this machine",
    errno.ENOENT: "no such file or directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ECONNRESET: "connection reset by peer",
    errno.EPIPE: "connection closed by peer",
    errno.ETIMEDOUT: "timed out",
    errno.ENOTDIR: "a path component is not a directory",
    errno.ENAMETOOLONG: "path too long",
}


def describe_os_error(exc: OSError) -> str:
    """Return a short lower-case reason for ``exc`` without file names or errno noise."""
    if hasattr(exc, "library"):  # ssl.SSLError (this module does not import ssl)
        return describe_tls_reason(getattr(exc, "reason", None), str(exc))
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    if exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def translate_os_error(
    exc: OSError, action: str, target: object, kind: type[NetworkError] = NetworkError
) -> NetworkError:
    """Turn an :class:`OSError` into a socketeer error naming what we tried and where.

    ``action`` is a verb phrase ("connect to", "listen on"), ``target`` usually an
    :class:`~socketeer.endpoint.Endpoint`.  Errors already in the hierarchy pass through.
    """
    if isinstance(exc, NetworkError):
        return exc
    if isinstance(exc, TimeoutError):
        return Timeout(f"cannot {action} {target}: timed out")
    err = kind(f"cannot {action} {target}: {describe_os_error(exc)}")
    err.errno = exc.errno
    return err
