"""Addresses users type, parsed once into :class:`Endpoint`.

Accepted forms::

    HOST:PORT            tcp on HOST (a name, an IPv4 address, or [IPv6])
    :PORT                tcp on every interface (listening) or localhost (connecting)
    tcp://HOST:PORT      the same, spelled out
    [::1]:PORT           IPv6 needs brackets, as in URLs
    udp://HOST:PORT      UDP
    tls://HOST:PORT      TCP with TLS (tls://[::1]:PORT for IPv6)
    unix:///path/to.sock a Unix stream socket (unix://relative.sock works too)

Port 0 means "let the system pick one".  Anything else raises
:class:`~socketeer.errors.EndpointError` with a one-line reason.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, replace
from typing import Literal

from .errors import EndpointError
from .visible import visible

__all__ = ["Endpoint", "Transport", "describe_peer", "parse_endpoint"]

Transport = Literal["tcp", "udp", "unix"]

_SCHEMES: dict[str, Transport] = {"tcp": "tcp", "udp": "udp", "unix": "unix", "tls": "tcp"}
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$"
)
_ZONE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# sun_path holds 108 bytes on Linux, one of which is the terminating NUL.
MAX_UNIX_PATH = 107


@dataclass(frozen=True)
class Endpoint:
    """Where to listen or connect.

    ``host`` is ``None`` for ``:PORT`` (every interface when listening,
    ``localhost`` when connecting).  ``path`` is set only for Unix sockets.
    ``tls`` is True for ``tls://`` (TCP carrying TLS).
    """

    transport: Transport
    host: str | None = None
    port: int = 0
    path: str | None = None
    tls: bool = False

    @property
    def is_stream(self) -> bool:
        """True for TCP and Unix stream sockets, False for UDP."""
        return self.transport != "udp"

    @property
    def connect_host(self) -> str:
        """The host to connect to: ``localhost`` when none was given."""
        return self.host or "localhost"

    def with_port(self, port: int) -> Endpoint:
        """Return a copy with ``port`` (used to report the port chosen for port 0)."""
        return replace(self, port=port)

    def __str__(self) -> str:
        if self.transport == "unix":
            return f"unix://{self.path}"
        host = self.host or ""
        if ":" in host:
            host = f"[{host}]"
        where = f"{host}:{self.port}"
        if self.tls:
            return f"tls://{where}"
        return where if self.transport == "tcp" else f"{self.transport}://{where}"


def parse_endpoint(text: str, default_transport: Transport = "tcp") -> Endpoint:
    """Parse what a user typed into an :class:`Endpoint`.

    ``default_transport`` applies when no scheme is given (``tcp`` unless a
    command only makes sense over UDP).
    """
    if not text or text != text.strip():
        raise EndpointError(f"invalid endpoint {text!r}: empty or surrounded by spaces")
    if "\x00" in text:
        raise EndpointError(f"invalid endpoint {text!r}: contains a NUL byte")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return _parse_host_port(text, text, default_transport)
    transport = _SCHEMES.get(scheme.lower())
    if transport is None:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise EndpointError(f"invalid endpoint {text!r}: unknown scheme {scheme!r} (use {known})")
    if transport == "unix":
        return _parse_unix(text, rest)
    endpoint = _parse_host_port(text, rest, transport)
    return replace(endpoint, tls=True) if scheme.lower() == "tls" else endpoint


def _parse_unix(text: str, path: str) -> Endpoint:
    if not path:
        raise EndpointError(f"invalid endpoint {text!r}: a Unix socket needs a path")
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise EndpointError(
            f"invalid endpoint {text!r}: Unix socket path longer than {MAX_UNIX_PATH} bytes"
        )
    return Endpoint("unix", path=path)


def _parse_host_port(text: str, rest: str, transport: Transport) -> Endpoint:
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket:
            raise EndpointError(f"invalid endpoint {text!r}: missing ']' after IPv6 address")
        if not after.startswith(":"):
            raise EndpointError(f"invalid endpoint {text!r}: expected ':PORT' after ']'")
        port_text = after[1:]
        address, _, zone = host.partition("%")
        try:
            ipaddress.IPv6Address(address)
            if "%" in host and not _ZONE.match(zone):
                raise ValueError(zone)
        except ValueError:
            raise EndpointError(
                f"invalid endpoint {text!r}: {host!r} is not an IPv6 address"
            ) from None
    else:
        if rest.count(":") > 1:
            raise EndpointError(
                f"invalid endpoint {text!r}: write IPv6 addresses in brackets, like [::1]:PORT"
            )
        host, colon, port_text = rest.rpartition(":")
        if not colon:
            raise EndpointError(f"invalid endpoint {text!r}: expected HOST:PORT or :PORT")
        if host and not _is_host(host):
            raise EndpointError(f"invalid endpoint {text!r}: {host!r} is not a valid host name")
    return Endpoint(transport, host or None, _parse_port(text, port_text))


def _is_host(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return bool(_HOSTNAME.match(host)) and not host.replace(".", "").isdigit()
    return True


def _parse_port(text: str, port_text: str) -> int:
    if not port_text:
        raise EndpointError(f"invalid endpoint {text!r}: missing port")
    if not port_text.isascii() or not port_text.isdigit():
        raise EndpointError(f"invalid endpoint {text!r}: port {port_text!r} is not a number")
    # Checked by length first: int() refuses numbers of thousands of digits.
    if len(port_text) > 5 or int(port_text) > 65535:
        shown = port_text if len(port_text) <= 12 else port_text[:12] + "..."
        raise EndpointError(f"invalid endpoint {text!r}: port {shown} is out of range 0-65535")
    return int(port_text)


def describe_peer(address: object) -> str:
    """Show a socket address the way users read it: ``1.2.3.4:5``, ``[::1]:5``, ``unix``."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, str | bytes) and address:  # a path the client chose: escaped
        path = address if isinstance(address, str) else address.decode(errors="surrogateescape")
        return f"unix://{visible(path)}"
    return "unix client"
