"""A chat member's side of files between members: ``/send`` uploads, ``/accept`` downloads.

``/send NICK PATH`` is the client's own command: it asks the server for an
offer (``/offer NICK SIZE NAME``), uploads the file to the drop box the
server names (``offer-upload``), resumable and verified, and then says
``/offered ID``.  When the member accepts an offer (``/accept``), the server
answers ``offer-accepted`` with where the file is; it is downloaded into
``downloads`` (resumable, verified against the drop box's SHA-256 and the
one the offer announced), and the client says ``/received ID`` so that the
drop box deletes it.  The files client is blocking: transfers run in
threads, so the chat goes on meanwhile.  See :mod:`.offers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...endpoint import parse_endpoint
from ...errors import NetworkError, SocketeerError
from ...visible import visible
from ..files.client import FilesClient
from .events import Notice
from .lines import ChatLine
from .names import name_key, nick_problem
from .offers import name_problem, size_text

__all__ = ["SEND_USAGE", "Transfers"]

SEND_USAGE = "usage: /send NICK PATH"
#: The errors that refuse an ``/offer``.
_REFUSALS = frozenset(
    {
        "not-online",
        "offer-too-large",
        "too-many-offers",
        "drop-box-full",
        "offer-invalid",
        "no-files",
    }
)
#: The ``/ping`` token of :meth:`Transfers.settle`.
_SYNC = "transfers"
#: Seconds to connect to the drop box, and to wait for it at any point.
TIMEOUT = 30.0


@dataclass(frozen=True)
class _Sending:
    """A file the member asked to send, waiting for the server's offer."""

    path: Path
    to: str
    name: str
    size: int


class Transfers:
    """Sends and fetches the files of one chat client's offers.

    ``send`` sends a line to the chat; ``status`` shows the member a line of
    the client's own.
    """

    def __init__(
        self,
        send: Callable[[str], object],
        status: Callable[[str], None],
        downloads: Path = Path(),
    ) -> None:
        self._send = send
        self._status = status
        self.downloads = downloads
        self._waiting: list[_Sending] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._synced: asyncio.Event | None = None
        #: Whether the member sent or accepted a file.
        self.used = False

    async def command(self, text: str) -> bool:
        """Act on a typed line if it is ``/send``; False: it is for the server."""
        word, _, rest = text.partition(" ")
        if word.casefold() == "/accept":
            self.used = True
        if word.casefold() != "/send":
            return False
        self.used = True
        try:
            parts = shlex.split(rest)
        except ValueError:
            parts = []
        if len(parts) != 2:
            self._status(f"-- {SEND_USAGE}")
            return True
        nick, where = parts
        path = Path(where).expanduser()
        problem = nick_problem(nick) or _file_problem(path)
        if problem:
            self._status(f"-- cannot send {visible(where)}: {problem}")
            return True
        size = path.stat().st_size
        self._waiting.append(_Sending(path, nick, path.name, size))
        await self._say(f"/offer {nick} {size} {path.name}")
        return True

    def follow(self, line: ChatLine) -> bool:
        """Start the transfer a line from the server asks for, if it asks for one.

        False for a line that is the client's own business, not to be shown.
        """
        event = line.event
        if not isinstance(event, Notice):
            return True
        data = event.data
        if event.code == "pong" and data.get("token") == _SYNC and self._synced is not None:
            self._synced.set()
            return False
        if event.code == "offer-upload":
            sending = self._sending(data)
            if sending is not None:
                self._start(self._upload(sending, data))
        elif event.code == "offer-accepted":
            self._start(self._download(data))
        elif event.error and event.code in _REFUSALS:
            self._waiting[:1] = []  # the server answers offers in order: that one was refused
        return True

    async def settle(self, timeout: float) -> None:
        """Wait until the server has answered every line sent so far, and the transfers
        those answers started have ended (each phase at most ``timeout`` seconds)."""
        while True:
            self._synced = synced = asyncio.Event()
            await self._say(f"/ping {_SYNC}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await synced.wait()
            if not self._tasks:
                return
            await self.wait()

    async def close(self) -> None:
        """Stop the transfers under way (a resumed one continues where they stopped)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def busy(self) -> bool:
        """Whether a transfer is under way."""
        return bool(self._tasks)

    async def wait(self) -> None:
        """Wait until the transfers under way have ended."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # inside -----------------------------------------------------------------------------

    def _sending(self, data: Mapping[str, object]) -> _Sending | None:
        to, name, size = data.get("to"), data.get("name"), data.get("size")
        for sending in self._waiting:
            if (
                name == sending.name
                and size == sending.size
                and isinstance(to, str)
                and name_key(to) == name_key(sending.to)
            ):
                self._waiting.remove(sending)
                return sending
        return None

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _say(self, line: str) -> None:
        try:
            result = self._send(line)
            if asyncio.iscoroutine(result):
                await result
        except NetworkError:
            self._status("-- not connected; not sent")

    async def _upload(self, sending: _Sending, data: Mapping[str, object]) -> None:
        facts = _Facts.of(data)
        if facts is None:
            return
        what = f"{visible(sending.name)} to {visible(sending.to)}"
        self._status(f"-- offer {facts.id}: sending {what}")
        try:
            await asyncio.to_thread(self._put, sending.path, facts)
        except (SocketeerError, OSError) as exc:
            self._status(f"-- offer {facts.id}: sending {visible(sending.name)} failed: {exc}")
            return
        await self._say(f"/offered {facts.id}")

    @staticmethod
    def _put(path: Path, facts: _Facts) -> None:
        endpoint = parse_endpoint(facts.files)
        with FilesClient.connect(
            endpoint, timeout=TIMEOUT, user=facts.user, password=facts.token, hash="sha256"
        ) as client:
            client.upload(path, facts.path)

    async def _download(self, data: Mapping[str, object]) -> None:
        facts = _Facts.of(data)
        if facts is None:
            return
        problem = name_problem(facts.name)
        if problem:
            self._status(f"-- offer {facts.id}: not saved: {problem}")
            return
        target = _free_name(self.downloads / facts.name)
        shown = visible(str(target))
        self._status(f"-- offer {facts.id}: fetching {size_text(facts.size)} into {shown}")
        try:
            sha256 = await asyncio.to_thread(self._get, target, facts)
        except (SocketeerError, OSError) as exc:
            again = f"/accept {facts.id} resumes"
            self._status(f"-- offer {facts.id}: fetching failed: {exc} ({again})")
            return
        if facts.sha256 and sha256 != facts.sha256:
            with contextlib.suppress(OSError):
                target.unlink()
            self._status(f"-- offer {facts.id}: the file is not the one offered; deleted")
            return
        self._status(f"-- offer {facts.id}: saved {shown} (SHA-256 verified)")
        await self._say(f"/received {facts.id}")

    @staticmethod
    def _get(target: Path, facts: _Facts) -> str | None:
        target.parent.mkdir(parents=True, exist_ok=True)
        # The offer names the file by its SHA-256: verify the download with the same hash.
        endpoint = parse_endpoint(facts.files)
        with FilesClient.connect(endpoint, timeout=TIMEOUT, hash="sha256") as client:
            return client.download(facts.path, target, force=True).sha256


@dataclass(frozen=True)
class _Facts:
    """What a notice says about an offer's file."""

    id: str
    files: str
    path: str
    name: str
    size: int
    sha256: str
    user: str
    token: str

    @classmethod
    def of(cls, data: Mapping[str, object]) -> _Facts | None:
        """The facts in ``data``, or None if they are not all there."""
        keys = ("id", "files", "path", "name", "sha256", "user", "token")
        texts = {key: data.get(key, "") for key in keys}
        size = data.get("size")
        if not all(isinstance(value, str) for value in texts.values()) or not isinstance(size, int):
            return None
        return cls(size=size, **texts)  # type: ignore[arg-type]


def _file_problem(path: Path) -> str | None:
    try:
        if not path.is_file():
            return "not a regular file"
        with open(path, "rb"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return name_problem(path.name)


def _free_name(path: Path) -> Path:
    """``path``, or ``NAME.1``, ``NAME.2``... if it exists."""
    candidate = path
    number = 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}.{number}")
    return candidate
