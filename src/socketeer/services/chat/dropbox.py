"""The drop box: a files share the chat server runs beside the chat, for offered files.

Members' files go through it instead of through the chat's lines (see
:mod:`.offers` for the steps and the rights).  A :class:`DropBox` owns a
directory, the :class:`~.offers.OfferDesk` that decides what is pending, and
a :class:`~socketeer.server.Server` of the files service on its own
endpoint, with the desk's :class:`~.offers.OfferAccounts` as its accounts.
It does the desk's disk jobs (making an offer's directory, checking and
hashing its file, deleting it) and expires offers past their time.

Offers live in memory: when the chat server starts, what a previous run
left in the directory is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import socket
import stat
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from ...endpoint import Endpoint
from ...server import Server, ServerConfig
from ..files import FilesService
from .offers import Job, Note, Offer, OfferDesk, OfferLimits

__all__ = ["DropBox"]

log = logging.getLogger("socketeer.server")

#: Seconds between two looks for expired offers, at most.
SWEEP = 30.0
_SECRET = re.compile("[0-9a-f]{32}")
_WILDCARDS = ("", "0.0.0.0", "::")

#: Where the drop box sends the notices it causes: nickname keys and their notices.
Tell = Callable[[list[Note]], None]


class DropBox:
    """Offered files in ``root``, served as a files share on ``endpoint``.

    ``shown_host`` is the host name members are told to fetch from when
    ``endpoint`` listens on every address (default: this machine's name).
    ``root`` is made if it is missing (OSError if it cannot be).
    """

    def __init__(
        self,
        root: Path,
        endpoint: Endpoint,
        limits: OfferLimits | None = None,
        *,
        config: ServerConfig | None = None,
        shown_host: str | None = None,
    ) -> None:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root = root
        self.desk = OfferDesk(limits)
        ttl = self.desk.limits.ttl
        #: The files service members upload to and download from.
        self.service = FilesService(root, accounts=self.desk.accounts, partial_ttl=ttl)
        self.server = Server(self.service, [endpoint], config)
        self.shown_host = shown_host
        self._tell: Tell = lambda notes: None
        self._working: asyncio.Lock | None = None

    @property
    def endpoints(self) -> list[Endpoint]:
        """What the drop box listens on."""
        return self.server.endpoints

    @contextlib.asynccontextmanager
    async def running(self, tell: Tell) -> AsyncIterator[None]:
        """Empty the directory, serve the share, expire offers; stop it all at the end.

        ``tell`` delivers the notices that expiry and the disk's answers cause.
        """
        self._tell = tell
        self._working = asyncio.Lock()
        await asyncio.to_thread(self._clear)
        await self.server.start()
        self.desk.files = self._shown(self.server.endpoints[0])
        log.info("drop box for files on %s", ", ".join(map(str, self.server.endpoints)))
        sweeper = asyncio.get_running_loop().create_task(self._sweep())
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await self.server.stop(0)

    def start_jobs(self, spawn: Callable[[Coroutine[Any, Any, None], str], object]) -> None:
        """Do the desk's pending jobs: directories now, the rest in a task ``spawn`` starts."""
        jobs = self.desk.take_jobs()
        later: list[Job] = []
        for kind, offer in jobs:
            if kind == "prepare":  # before the sender hears where to upload
                self._prepare(offer)
            else:
                later.append((kind, offer))
        if later:
            spawn(self.work(later), "drop box")

    async def work(self, jobs: list[Job]) -> None:
        """Check and delete offers' files, in order, off the event loop."""
        assert self._working is not None
        async with self._working:
            for kind, offer in jobs:
                if kind == "prepare":
                    self._prepare(offer)
                elif kind == "check":
                    sha256, have = await asyncio.to_thread(self._check, offer)
                    now, wall = time.monotonic(), time.time()
                    self._tell(self.desk.checked(offer, sha256, have, now, wall))
                else:
                    await asyncio.to_thread(self._remove, offer)

    # the disk ---------------------------------------------------------------------------

    def _prepare(self, offer: Offer) -> None:
        try:
            (self.root / offer.secret).mkdir(mode=0o700)
        except OSError as exc:
            log.warning("drop box: cannot make the directory of offer %s: %s", offer.id, exc)

    def _check(self, offer: Offer) -> tuple[str | None, int]:
        """The SHA-256 of the offer's file if it is there whole, and how many bytes are."""
        path = self.root / offer.secret / offer.name
        try:
            with open(path, "rb", opener=_no_follow) as file:
                st = os.fstat(file.fileno())
                if not stat.S_ISREG(st.st_mode) or st.st_size != offer.size:
                    return None, st.st_size
                return self.service.store.sha256(file, st), st.st_size
        except OSError:
            return None, 0

    def _remove(self, offer: Offer) -> None:
        shutil.rmtree(self.root / offer.secret, ignore_errors=True)

    def _clear(self) -> None:
        """Delete what a previous run left (offers' directories only)."""
        for entry in self.root.iterdir():
            if _SECRET.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)

    async def _sweep(self) -> None:
        period = min(self.desk.limits.ttl / 4, SWEEP)
        while True:
            await asyncio.sleep(period)
            self._tell(self.desk.expire(time.monotonic(), time.time()))
            jobs = self.desk.take_jobs()
            if jobs:
                await self.work(jobs)

    def _shown(self, endpoint: Endpoint) -> str:
        """How members are to write the drop box's address."""
        if endpoint.transport == "tcp" and (endpoint.host or "") in _WILDCARDS:
            host = self.shown_host or socket.gethostname()
            return str(Endpoint("tcp", host, endpoint.port, tls=endpoint.tls))
        return str(endpoint)


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)
