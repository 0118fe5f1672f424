"""TFTP (RFC 1350; blksize, timeout, tsize, windowsize options) on the datagram core."""

from .server import TftpServer
from .transfer import Settings

__all__ = ["Settings", "TftpServer"]
