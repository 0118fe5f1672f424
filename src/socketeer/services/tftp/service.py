"""The TFTP service: what the server runs on each UDP endpoint of ``serve tftp``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ...datagram import DatagramCore, DatagramLimits
from ...service import Service
from .server import TftpServer
from .transfer import Settings

__all__ = ["TftpService"]


class TftpService(Service):
    """Serves ``root`` over TFTP: one :class:`TftpServer` per bound UDP socket."""

    name = "tftp"
    peer_sockets = True

    def __init__(
        self, root: Path, *, allow_upload: bool = False, settings: Settings | None = None
    ) -> None:
        self.root = root
        self.allow_upload = allow_upload
        self.settings = settings or Settings()
        self._cores: list[TftpServer] = []

    def datagram_core(self, limits: DatagramLimits) -> DatagramCore[Any]:
        core = TftpServer(
            self.root, allow_upload=self.allow_upload, settings=self.settings, limits=limits
        )
        self._cores.append(core)
        return core

    def refusal(self, reason: str) -> bytes:
        return b""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Transfers still open when the server stops are closed (uploads keep their partial)."""
        try:
            yield
        finally:
            while self._cores:
                self._cores.pop().close()
