"""Files: a network disk — list, stat, download, upload (resumable, verified), mkdir, delete.

The protocol is sans-IO (:mod:`.messages`, :mod:`.connection`, :mod:`.plain`,
:mod:`.paths`); :mod:`.store` is the shared directory on disk, :mod:`.session`
serves it over asyncio, and :mod:`.client` is the blocking client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...exports import lazy_exports
from .messages import Entry

if TYPE_CHECKING:
    from .session import FilesService

__getattr__ = lazy_exports(__name__, {"FilesService": ".session"})

__all__ = ["Entry", "FilesService"]
