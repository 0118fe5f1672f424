"""Run a TFTP download or upload (:mod:`~socketeer.services.tftp.client`) on a UDP socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import BinaryIO

from ...datagram import Address
from ...errors import SocketeerError
from ...udp import DatagramEndpoint
from .client import TftpDownload, TftpUpload

__all__ = ["TftpError", "download", "upload"]

#: How often the runner looks whether the transfer has finished (and reports progress).
POLL = 0.02

#: Told the bytes done so far, and the total when the server announced it (tsize).
Progress = Callable[[int, int | None], None]


class TftpError(SocketeerError):
    """A transfer the server refused, or that stopped: the message says why."""


async def _server_address(host: str, port: int) -> tuple[socket.AddressFamily, Address]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, *_, server = infos[0]
    return family, server


async def _run(
    core: TftpDownload | TftpUpload,
    family: socket.AddressFamily,
    done: Callable[[], int],
    progress: Progress | None,
    what: str,
) -> None:
    """Drive ``core`` on a fresh UDP socket until it finishes; TftpError if it failed."""
    loop = asyncio.get_running_loop()
    anywhere = "::" if family == socket.AF_INET6 else "0.0.0.0"
    transport, _ = await loop.create_datagram_endpoint(
        lambda: DatagramEndpoint(core, clock=loop.time), local_addr=(anywhere, 0), family=family
    )
    try:
        while not core.finished:
            await asyncio.sleep(POLL)
            if progress is not None:
                progress(done(), core.size)
    finally:
        transport.close()
    if core.outcome:
        raise TftpError(f"{what}: {core.outcome}")


async def download(
    host: str,
    port: int,
    filename: str,
    dest: BinaryIO,
    *,
    options: dict[str, str] | None = None,
    mode: str = "octet",
    timeout: float = 1.0,
    retries: int = 5,
    progress: Progress | None = None,
) -> int:
    """Write ``filename`` from the TFTP server at ``host``:``port`` to ``dest``; return its size."""
    loop = asyncio.get_running_loop()
    family, server = await _server_address(host, port)
    written = 0

    def sink(payload: bytes, last: bool) -> None:
        nonlocal written
        dest.write(payload)
        written += len(payload)

    core = TftpDownload(
        server,
        filename,
        sink,
        loop.time(),
        mode=mode,
        options=options,
        timeout=timeout,
        retries=retries,
    )
    await _run(core, family, lambda: written, progress, f"tftp://{host}:{port}/{filename}")
    return written


async def upload(
    host: str,
    port: int,
    filename: str,
    source: BinaryIO,
    *,
    options: dict[str, str] | None = None,
    timeout: float = 1.0,
    retries: int = 5,
    progress: Progress | None = None,
) -> int:
    """Write ``source`` to the TFTP server at ``host``:``port`` as ``filename``; return its size."""
    loop = asyncio.get_running_loop()
    family, server = await _server_address(host, port)
    core = TftpUpload(
        server, filename, source, loop.time(), options=options, timeout=timeout, retries=retries
    )
    await _run(core, family, lambda: core.sent, progress, f"tftp://{host}:{port}/{filename}")
    return core.sent
