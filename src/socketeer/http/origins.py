"""Origins as browsers define them (RFC 6454): a scheme, a host and a port, compared whole.

Sans-IO.  A request's ``Origin`` names the page that sent it; the server's
own origin is the scheme it was reached by (``http``, or ``https`` over
TLS) and its ``Host`` header.  Two origins are the same only if all three
parts are: ``https://host:8000`` is not ``http://host:8000``, and
``http://host`` is ``http://host:80``.  An ``Origin`` that is not one
(``null``, a path, user information, a scheme other than http and https,
a port that is no number) is never the server's.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

__all__ = ["DEFAULT_PORTS", "Origin", "parse_origin", "same_origin", "server_origin"]

#: The port an origin has when it names none.
DEFAULT_PORTS = {"http": 80, "https": 443}

#: A scheme, a lower-case host (an IPv6 address without brackets) and a port.
Origin = tuple[str, str, int]


def parse_origin(text: str) -> Origin | None:
    """The origin an ``Origin`` header names (``scheme://host[:port]``), or None."""
    text = text.strip()
    if "://" not in text:
        return None
    parts = _split(text)
    if parts is None or parts.path or parts.query or parts.fragment or text.endswith(("?", "#")):
        return None
    return _origin(parts.scheme.lower(), parts)


def server_origin(host: str, scheme: str) -> Origin | None:
    """The server's own origin: reached by ``scheme`` and named ``host`` (the ``Host`` header)."""
    if not host.strip() or any(c in host for c in "/?#@\\"):
        return None
    parts = _split(f"{scheme}://{host.strip()}")
    return None if parts is None else _origin(scheme.lower(), parts)


def same_origin(origin: str | None, host: str | None, scheme: str) -> bool:
    """Whether ``origin`` (a request's ``Origin``) is the server's own, ``scheme://host``."""
    if origin is None or host is None:
        return False
    theirs = parse_origin(origin)
    return theirs is not None and theirs == server_origin(host, scheme)


def _split(text: str) -> SplitResult | None:
    try:
        return urlsplit(text)
    except ValueError:  # an unclosed [ of an IPv6 address
        return None


def _origin(scheme: str, parts: SplitResult) -> Origin | None:
    default = DEFAULT_PORTS.get(scheme)
    netloc = parts.netloc
    if default is None or "@" in netloc:
        return None
    after_address = netloc.rpartition("]")[2] if netloc.startswith("[") else netloc
    _, colon, digits = after_address.rpartition(":")
    if colon and not (digits.isascii() and digits.isdigit()):  # "host:", "host:+80"
        return None
    try:
        port = parts.port
    except ValueError:  # out of range
        return None
    host = parts.hostname
    if not host:
        return None
    return scheme, host, default if port is None else port
