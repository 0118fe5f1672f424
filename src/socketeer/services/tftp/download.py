"""Run a :class:`~socketeer.services.tftp.client.TftpDownload` on a UDP socket."""

from __future__ import annotations

import asyncio
import socket
from typing import BinaryIO

from ...errors import SocketeerError
from ...udp import DatagramEndpoint
from .client import TftpDownload

__all__ = ["TftpError", "download"]

#: How often the runner looks whether the download has finished.
POLL = 0.02


class TftpError(SocketeerError):
    """A download the server refused, or that stopped: the message says why."""


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
) -> int:
    """Write ``filename`` from the TFTP server at ``host``:``port`` to ``dest``; return its size."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, *_, server = infos[0]
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
    anywhere = "::" if family == socket.AF_INET6 else "0.0.0.0"
    transport, _ = await loop.create_datagram_endpoint(
        lambda: DatagramEndpoint(core, clock=loop.time), local_addr=(anywhere, 0), family=family
    )
    try:
        while not core.finished:
            await asyncio.sleep(POLL)
    finally:
        transport.close()
    if core.outcome:
        raise TftpError(f"tftp://{host}:{port}/{filename}: {core.outcome}")
    return written
