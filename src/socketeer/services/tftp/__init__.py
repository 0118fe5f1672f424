"""TFTP (RFC 1350; blksize, timeout, tsize, windowsize options) on the datagram core.

The protocol is sans-IO (:mod:`.packets`, :mod:`.transfer`, :mod:`.client`);
:mod:`.server` serves a directory, with :mod:`.lockstep` running lock-step
downloads on threads, so it is imported only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...exports import lazy_exports
from .transfer import Settings

if TYPE_CHECKING:
    from .server import TftpServer

__getattr__ = lazy_exports(__name__, {"TftpServer": ".server"})

__all__ = ["Settings", "TftpServer"]
