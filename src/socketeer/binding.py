"""Creating listening sockets for endpoints, with the options servers need.

SO_REUSEADDR is always set, so a server restarted right after a stop binds
again (the classic ``Address already in use`` fix).  ``reuse_port`` adds
SO_REUSEPORT so several worker processes can share one port.  ``:PORT``
binds one dual-stack socket that accepts IPv4 and IPv6.  A host name that
resolves to several addresses gets one socket per address, all on the same
port even when port 0 was asked for.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from dataclasses import dataclass, replace

from .endpoint import Endpoint
from .errors import BindError, translate_os_error

__all__ = ["BoundSocket", "bind_endpoint", "remove_unix_socket", "system_backlog"]


def system_backlog() -> int:
    """The longest listen backlog the system allows (``net.core.somaxconn``)."""
    try:
        with open("/proc/sys/net/core/somaxconn", encoding="ascii") as file:
            return max(int(file.read().strip()), 1)
    except (OSError, ValueError):
        return socket.SOMAXCONN


@dataclass
class BoundSocket:
    """A socket bound for ``requested``; ``actual`` is what it really listens on."""

    sock: socket.socket
    requested: Endpoint
    actual: Endpoint
    #: For a Unix socket, the inode of the file we created, so only ours is removed.
    inode: int | None = None


def bind_endpoint(
    endpoint: Endpoint, *, reuse_port: bool = False, listen: bool = True
) -> list[BoundSocket]:
    """Bind (and by default listen on) every socket ``endpoint`` needs.

    Raises :class:`~socketeer.errors.BindError` naming the endpoint and the reason.
    """
    try:
        if endpoint.transport == "unix":
            return [_bind_unix(endpoint, listen)]
        return _bind_inet(endpoint, reuse_port, listen)
    except BindError:
        raise
    except OSError as exc:
        raise translate_os_error(exc, "listen on", endpoint, BindError) from None


def _bind_inet(endpoint: Endpoint, reuse_port: bool, listen: bool) -> list[BoundSocket]:
    kind = socket.SOCK_STREAM if endpoint.is_stream else socket.SOCK_DGRAM
    if endpoint.host is None:
        addresses = _wildcard_addresses(kind)
    else:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=kind, flags=socket.AI_PASSIVE)
        addresses = list(
            dict.fromkeys((int(family), (str(addr[0]), int(addr[1]))) for family, *_, addr in infos)
        )
    bound: list[BoundSocket] = []
    port = endpoint.port
    try:
        for family, (host, _) in addresses:
            sock = socket.socket(family, kind)
            bound.append(BoundSocket(sock, endpoint, endpoint))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, endpoint.host is not None)
            sock.bind((host, port))
            if listen and endpoint.is_stream:
                sock.listen(system_backlog())
            sock.setblocking(False)
            port = sock.getsockname()[1]
            actual_host = None if endpoint.host is None else host
            bound[-1].actual = replace(endpoint, host=actual_host, port=port)
    except OSError:
        for item in bound:
            item.sock.close()
        raise
    return bound


def _wildcard_addresses(kind: socket.SocketKind) -> list[tuple[int, tuple[str, int]]]:
    """``:PORT`` means every interface: one dual-stack IPv6 socket, or IPv4 without IPv6."""
    if socket.has_ipv6:
        try:
            probe = socket.socket(socket.AF_INET6, kind)
        except OSError:
            pass
        else:
            probe.close()
            return [(socket.AF_INET6, ("::", 0))]
    return [(socket.AF_INET, ("0.0.0.0", 0))]


def _bind_unix(endpoint: Endpoint, listen: bool) -> BoundSocket:
    path = endpoint.path
    assert path is not None
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise BindError(f"cannot listen on {endpoint}: directory {directory} does not exist")
    _remove_stale(endpoint, path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if listen:
            sock.listen(system_backlog())
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return BoundSocket(sock, endpoint, endpoint, os.stat(path).st_ino)


def _remove_stale(endpoint: Endpoint, path: str) -> None:
    """Replace a socket file left by a server that is gone; refuse to touch anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise BindError(f"cannot listen on {endpoint}: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
    else:
        raise BindError(f"cannot listen on {endpoint}: address already in use")
    finally:
        probe.close()


def remove_unix_socket(bound: BoundSocket) -> None:
    """Remove the socket file of a Unix listener, if it is still the one we created."""
    path = bound.requested.path
    if path is None or bound.inode is None:
        return
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == bound.inode:
            os.unlink(path)
