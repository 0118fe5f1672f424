"""Files: a network disk — list, stat, download, upload (resumable, verified), mkdir, delete.

The protocol is sans-IO (:mod:`.messages`, :mod:`.connection`, :mod:`.plain`,
:mod:`.paths`); :mod:`.store` is the shared directory on disk, :mod:`.session`
serves it over asyncio, and :mod:`.client` is the blocking client library.
"""

from __future__ import annotations

from .messages import Entry
from .session import FilesService

__all__ = ["Entry", "FilesService"]
