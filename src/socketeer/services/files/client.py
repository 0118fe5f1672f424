"""The files client library: blocking, one connection, requests pipelined where they can be.

>>> with FilesClient.connect("127.0.0.1:9000") as files:    # doctest: +SKIP
...     files.list("")
...     files.download("notes.txt", Path("notes.txt"))

Downloads and uploads resume by default: a download continues from the
partial file (``.NAME.socketeer-part``) beside its target, an upload from
the server's partial.  Every transfer is verified unless ``verify=False``,
with BLAKE3 (or SHA-256: ``connect(hash="sha256")``, and with any server
that predates the choice; :attr:`FilesClient.hash` says which); a resumed
transfer whose result does not verify is done once more from the start
(``TransferProgress.restart`` says so).  A file is only ever renamed into
place complete and verified.

Trees go fast: :meth:`FilesClient.tree` lists one in a single request, and
:meth:`FilesClient.download_many` / :meth:`FilesClient.upload_many` keep a
window of requests in flight on the connection instead of waiting for each
reply, when the server offers it (its ``welcome`` has a ``pipeline``).

:meth:`FilesClient.download_to` writes a download to a stream (stdout)
instead; :meth:`FilesClient.upload` also sends an open file, such as stdin
spooled to a temporary file (the protocol announces an upload's size first).
"""

from __future__ import annotations

import contextlib
import os
import queue
import stat as stat_module
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import BinaryIO, NamedTuple, Self, TypeVar

from ... import __version__
from ...client import Connection
from ...endpoint import Endpoint
from ...errors import ConnectionClosed, FrameTooLarge, ProtocolError, SocketeerError, Timeout
from ...framing import LengthPrefixCodec
from ...tls import ClientTLS, alpn
from ...visible import visible
from .connection import CLIENT, CLOSED, NEED_DATA, ClosedMidMessage, Data, FilesConnection
from .hashes import DEFAULT, HASHES, Hasher, label, new_hasher
from .landing import Landing, Landings
from .messages import (
    MAX_CONTROL_SIZE,
    VERSION,
    Delete,
    Done,
    Entry,
    Error,
    FileHeader,
    Get,
    Hello,
    List,
    Listing,
    Message,
    Mkdir,
    Ok,
    Put,
    Ready,
    Stat,
    StatReply,
    Welcome,
    decode,
)
from .paths import join_remote, partial_name
from .store import fsync_directory, hash_file, write_whole

__all__ = ["FilesClient", "FilesError", "TransferProgress", "TransferResult"]

SLOT = 2 * 1024 * 1024  # four of them stay in cache; 4 MiB ones made receiving cost twice as much
SLOTS = 4
SEND_SLICE = 8 * 1024 * 1024
#: A verified upload is read, hashed and sent this much at a time (SLOTS pieces in flight).
SEND_PIECE = 1024 * 1024
DEFAULT_TIMEOUT = 30.0
#: Requests in flight at most when pipelining (a window of replies on their way).
WINDOW = 64
#: A download this small is received in the calling thread (no writer and hasher threads).
SMALL = 1024 * 1024
#: An upload this small is sent ahead with its request (``put`` with ``follows``).
FOLLOWS = 256 * 1024
#: Requests sent ahead are written together once they are this many bytes (or a reply is due).
OUTBOX = 64 * 1024
_Reply = TypeVar("_Reply", bound=Message)


class FilesError(SocketeerError):
    """A files request failed; ``code`` is the protocol's error code (see the protocol doc)."""

    def __init__(self, message: str, code: str = "io") -> None:
        super().__init__(message)
        self.code = code


class TransferProgress:
    """Told how a transfer goes; the default tells nobody."""

    def begin(self, name: str, total: int, done: int) -> None:
        """A transfer of ``total`` bytes starts, ``done`` of them already in place."""

    def advance(self, count: int) -> None:
        """``count`` more bytes moved."""

    def end(self) -> None:
        """The transfer is over, one way or another."""

    def restart(self, name: str) -> None:
        """A resumed transfer of ``name`` did not verify: it is done again from the start."""

    def tree(self, files: int, total: int) -> None:
        """A tree of ``files`` files and ``total`` bytes is about to be transferred."""

    def skip(self, name: str, size: int) -> None:
        """``name`` (``size`` bytes) is up to date already: none of it moves."""


@dataclass(frozen=True)
class TransferResult:
    """What a download or upload did."""

    remote: str
    local: Path | None  # None: a stream or an open file (download_to, upload)
    size: int
    sent: int  # bytes moved by this call
    resumed_from: int
    skipped: bool = False
    digest: str | None = None  # the whole file's hash, when it was verified
    hash: str | None = None  # which hash that is: "blake3" or "sha256"

    @property
    def sha256(self) -> str | None:
        """The whole file's SHA-256, when it was verified with SHA-256."""
        return self.digest if self.hash == "sha256" else None


class _Incoming(NamedTuple):
    """A download in flight: from where, to where, through which landing (if any) and as
    which partial file there."""

    remote: str
    local: Path
    landing: tuple[Landing, str] | None


@dataclass(frozen=True)
class _Outgoing:
    """A file being uploaded: from where, to where, stamped how, hashed or not."""

    file: BinaryIO
    local: Path | None
    remote: str
    mtime: float | None
    verify: bool


def _closed_without_answering(endpoint: Endpoint) -> str:
    """Why a server that hung up at once is not a files server (a TLS port, perhaps)."""
    if endpoint.tls or endpoint.transport != "tcp":
        return "it closed the connection without answering"
    return "it closed the connection without answering; if it speaks TLS, use tls://"


class FilesClient:
    """A connection to a files server.  Create it with :meth:`connect`."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._sock = connection.sock
        self._conn = FilesConnection(CLIENT, max_control=MAX_CONTROL_SIZE)
        self.endpoint: Endpoint = connection.endpoint
        #: Whether this connection may write (the server allows it and the token matched).
        self.writable = False
        #: The server's name and version, from its welcome.
        self.server = ""
        #: What transfers are verified with: "blake3" or "sha256" (the server's choice).
        self.hash = "sha256"
        self._outbox: list[bytes] = []  # requests sent ahead, written together
        self._outbox_size = 0
        #: The account this connection is logged in as (None: none).
        self.user: str | None = None

    @classmethod
    def connect(
        cls,
        target: str | Endpoint,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        tls: ClientTLS | None = None,
        user: str | None = None,
        password: str | None = None,
        hash: str = DEFAULT,
    ) -> Self:
        """Connect and say hello; ``token`` is needed for writes.

        ``tls`` says how a ``tls://`` server is trusted (see :class:`~socketeer.tls.ClientTLS`).
        On a server with accounts, ``user`` and ``password`` log in; a
        server that does not log the connection in as ``user`` is refused
        (``unauthorized``).  ``hash``: verify with this hash ("blake3" or
        "sha256"); BLAKE3 falls back to SHA-256 with a server that predates
        the choice.
        """
        if hash not in HASHES:
            raise ValueError(f"unknown hash {hash!r}; known: {', '.join(HASHES)}")
        tls = tls or ClientTLS(alpn=(alpn("files"),))
        client = cls(Connection.connect(target, timeout, tls=tls))
        try:
            client._hello(token, user, password, hash)
        except BaseException:
            client.close()
            raise
        return client

    @property
    def pipelining(self) -> bool:
        """Whether requests may be sent ahead of replies (and trees listed in one request)."""
        return self._conn.window > 0

    def _hello(
        self,
        token: str | None,
        user: str | None = None,
        password: str | None = None,
        hash: str = DEFAULT,
    ) -> None:
        offered = (hash,) if hash == "sha256" else (hash, "sha256")
        hello = Hello(
            token=token,
            client=f"socketeer {__version__}",
            user=user,
            password=password,
            hashes=offered,
        )
        self._send(hello)
        try:
            first = self._recv()
        except ConnectionClosed:
            first = b""
        if not first:  # the classic downloader takes the hello for a file name and hangs up
            raise self._not_files_server(_closed_without_answering(self.endpoint))
        if first.startswith(b"error: "):  # refused before the protocol began (server busy)
            line = first.split(b"\n", 1)[0][len(b"error: ") :]
            raise FilesError(f"{self.endpoint} refused: {line.decode(errors='replace')}", "busy")
        if first[:1] != b"\x00":  # every frame the protocol allows starts so
            said = first.split(b"\n", 1)[0][:40].decode(errors="replace")
            raise self._not_files_server(f"it said {said!r}")
        self._conn.receive_data(first)
        try:
            reply = self._next()
        except ConnectionClosed:
            raise self._not_files_server("it hung up in the middle of its answer") from None
        except FilesError:  # a frame that is not the protocol's
            raise self._not_files_server("its answer is not the files protocol's") from None
        if isinstance(reply, Error):
            raise FilesError(f"{self.endpoint} refused: {reply.message}", reply.code)
        if not isinstance(reply, Welcome):
            op = reply.op if isinstance(reply, Message) else "file bytes"
            raise self._not_files_server(f"it answered {op!r}")
        if reply.version != VERSION:
            raise FilesError(
                f"{self.endpoint} speaks files protocol version {reply.version}, not {VERSION}",
                "version",
            )
        if reply.hash not in HASHES:
            raise FilesError(f"{self.endpoint} chose an unknown hash {reply.hash!r}", "version")
        self.writable, self.server, self.user = reply.writable, reply.server, reply.user
        self.hash = reply.hash
        if user is not None and reply.user is None:
            raise FilesError(
                f"{self.endpoint} did not log in {user} (a server without accounts)",
                "unauthorized",
            )

    def _not_files_server(self, why: str) -> FilesError:
        return FilesError(f"{self.endpoint} is not a files server ({why})", "version")

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # talking ------------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        self._flush()
        self._sendall(self._conn.send(message))

    def _send_soon(self, data: bytes) -> None:
        """Send ``data`` (requests sent ahead) with the next ones: one write for several."""
        self._outbox.append(data)
        self._outbox_size += len(data)
        if self._outbox_size >= OUTBOX:
            self._flush()

    def _flush(self) -> None:
        """Write what :meth:`_send_soon` kept, before waiting for any reply."""
        if self._outbox:
            data = b"".join(self._outbox)
            self._outbox.clear()
            self._outbox_size = 0
            self._sendall(data)

    def _sendall(self, data: bytes | memoryview) -> None:
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise Timeout(f"timed out sending to {self.endpoint}") from None
        except OSError as exc:
            raise self._lost(exc) from None

    def _recv(self) -> bytes:
        try:
            return self._sock.recv(256 * 1024)
        except TimeoutError:
            raise Timeout(f"timed out waiting for {self.endpoint}") from None
        except OSError as exc:
            raise self._lost(exc) from None

    def _lost(self, exc: OSError | None = None) -> SocketeerError:
        reason = f": {exc.strerror or exc}" if exc is not None else ""
        return ConnectionClosed(f"connection to {self.endpoint} lost{reason}")

    def _lost_during(self, remaining: int, still: str) -> SocketeerError:
        """The connection broke off in the middle of a file: say how much was ``still`` due."""
        return ConnectionClosed(
            f"connection to {self.endpoint} lost with {remaining:,} bytes still {still}"
        )

    def _next(self) -> Message | Data:
        """The server's next message (or raw bytes, during a download)."""
        conn = self._conn
        self._flush()
        while True:
            try:
                event = conn.next_event()
            except ClosedMidMessage:
                raise self._lost() from None
            except ProtocolError as exc:
                raise FilesError(f"{self.endpoint}: {exc}", "bad-request") from None
            if event is NEED_DATA:
                conn.receive_data(self._recv())
            elif event is CLOSED:
                raise self._lost()
            elif isinstance(event, Message | Data):
                return event

    def _request(self, message: Message) -> Message:
        self._send(message)
        reply = self._next()
        if isinstance(reply, Error):
            raise FilesError(reply.message, reply.code)
        if isinstance(reply, Data):
            raise FilesError("server sent file bytes out of turn", "bad-request")
        return reply

    # simple requests ----------------------------------------------------------------

    def list(self, path: str = "", *, partials: bool = False) -> list[Entry]:
        """The entries of the remote directory ``path``; ``partials``: partial files too."""
        reply = self._request(List(path))
        if not isinstance(reply, Listing):
            raise FilesError(f"unexpected reply {reply.op!r} to list", "bad-request")
        if not partials:
            return list(reply.entries)
        return sorted((*reply.entries, *reply.partials), key=lambda entry: entry.name)

    def stat(self, path: str) -> Entry:
        """Name, type, size and mtime of the remote ``path``."""
        reply = self._request(Stat(path))
        if not isinstance(reply, StatReply):
            raise FilesError(f"unexpected reply {reply.op!r} to stat", "bad-request")
        return reply.entry

    def mkdir(self, path: str, parents: bool = False) -> None:
        """Make the remote directory ``path`` (needs the token)."""
        self._request(Mkdir(path, parents))

    def delete(self, path: str, recursive: bool = False) -> None:
        """Delete the remote file or directory ``path`` (needs the token)."""
        self._request(Delete(path, recursive))

    def walk(self, path: str = "") -> Iterator[tuple[str, Entry]]:
        """Every file and directory under ``path``: (remote path, entry), parents first.

        One recursive listing, streamed, where the server offers it; else one
        ``list`` per directory.
        """
        if self.pipelining:
            yield from self.tree(path)
            return
        todo = [(path, iter(self.list(path)))]
        while todo:
            directory, entries = todo[-1]
            entry = next(entries, None)
            if entry is None:
                todo.pop()
                continue
            child = join_remote(directory, self._listed(entry.name))
            yield child, entry
            if entry.type == "dir":
                todo.append((child, iter(self.list(child))))

    def tree(self, path: str = "") -> Iterator[tuple[str, Entry]]:
        """:meth:`walk` in one request: the server lists the whole tree, streamed.

        Only where the server offers it (:attr:`pipelining`).  Read the
        iterator to its end before the next request.
        """
        self._send(List(path, recursive=True))
        top: str | None = None
        while True:
            listing = self._reply(Listing, "reply to a recursive list")
            if top is None:
                top = listing.path
            here = join_remote(path, *self._below(top, listing.path))
            for entry in listing.entries:
                name = self._listed(entry.name)
                yield f"{here}/{name}" if here else name, entry
            if not listing.more:
                return

    def _below(self, top: str, path: str) -> tuple[str, ...]:
        """The names that lead from a recursive listing's ``top`` to its ``path``, checked."""
        if path == top:
            return ()
        if top and not path.startswith(f"{top}/"):
            self._listed("..")  # not below the top: refused as a way out
        return tuple(self._listed(name) for name in path[len(top) :].lstrip("/").split("/"))

    def _listed(self, name: str) -> str:
        """A name a server listed, if it is one name: never a way up, across or out.

        The caller makes files of what a listing names; a server that names
        ``../x`` or ``a/b`` must not choose where they go.
        """
        if name in ("", ".", "..") or "/" in name or "\x00" in name:
            self.close()  # the rest of the answer is not read
            raise FilesError(
                f"{self.endpoint} listed {visible(name)!r}, which is not a name", "bad-request"
            )
        return name

    # downloads ----------------------------------------------------------------------

    def download(
        self,
        remote: str,
        local: Path,
        *,
        verify: bool = True,
        resume: bool = True,
        force: bool = False,
        progress: TransferProgress | None = None,
    ) -> TransferResult:
        """Fetch ``remote`` into ``local`` (a file path), resuming and verifying.

        Skipped when ``local`` already has the remote size and modification
        time (unless ``force``): the ``get`` itself tells the server what
        ``local`` holds, and the server sends nothing if that is its file.
        """
        progress = progress or TransferProgress()
        have = None if force else _status(local)
        if not self.pipelining:  # a server that cannot compare: ask it first
            entry = self.stat(remote)
            if entry.type != "file":
                raise FilesError(f"{remote}: not a regular file", "not-a-file")
            if have is not None and _same(have, entry):
                return TransferResult(remote, local, entry.size, 0, entry.size, skipped=True)
            have = None
        partial = local.with_name(partial_name(local.name))
        offset = _size(partial) if resume else 0
        self._send(self._get_request(remote, offset, verify, have))
        return self._finish_download(remote, local, verify, resume, progress)

    def download_many(
        self,
        files: Iterable[tuple[str, Path, Entry | None]],
        *,
        verify: bool = True,
        resume: bool = True,
        force: bool = False,
        progress: TransferProgress | None = None,
    ) -> Iterator[TransferResult]:
        """Fetch each (remote, local, entry) like :meth:`download`, with requests pipelined.

        ``entry``: what a listing said of the remote file (its size and
        mtime decide whether ``local`` is up to date), or None.  Results come
        in order, as each file is in place.  Where the server does not
        pipeline, the files are fetched one by one.
        """
        progress = progress or TransferProgress()
        if not self.pipelining:
            for remote, local, entry in files:
                have = None if force else _status(local)
                if have is not None and entry is not None and _same(have, entry):
                    progress.skip(remote, entry.size)
                    yield TransferResult(remote, local, entry.size, 0, entry.size, skipped=True)
                    continue
                yield self.download(
                    remote, local, verify=verify, resume=resume, force=force, progress=progress
                )
            return
        landings = Landings()
        try:
            yield from self._download_pipelined(files, landings, verify, resume, force, progress)
        except BaseException:
            with contextlib.suppress(OSError):
                landings.close()
            raise
        try:
            landings.close()
        except OSError as exc:
            raise FilesError(f"making the downloads durable failed: {exc}", "io") from None

    def _download_pipelined(
        self,
        files: Iterable[tuple[str, Path, Entry | None]],
        landings: Landings,
        verify: bool,
        resume: bool,
        force: bool,
        progress: TransferProgress,
    ) -> Iterator[TransferResult]:
        """:meth:`download_many` with a window of requests in flight; files land through
        ``landings`` (see :mod:`.landing`)."""
        retries: deque[tuple[str, Path]] = deque()
        waiting: deque[_Incoming] = deque()
        for remote, local, entry in files:
            directory, name = os.path.split(local)
            landing = landings.at(directory)
            if landing is None:
                have = None if force else _status(local)
            else:
                have = None if force else landing.status(name)
            if have is not None and entry is not None and _same(have, entry):
                progress.skip(remote, entry.size)
                yield TransferResult(remote, local, entry.size, 0, entry.size, skipped=True)
                continue
            partial = partial_name(name)
            offset = 0
            if resume:
                offset = (
                    _size(local.with_name(partial)) if landing is None else landing.size(partial)
                )
            self._send_soon(self._conn.send(self._get_request(remote, offset, verify, have)))
            waiting.append(
                _Incoming(remote, local, None if landing is None else (landing, partial))
            )
            if landing is not None:
                landing.in_flight += 1
            if len(waiting) >= WINDOW:  # take half the window's replies, then send as many
                while len(waiting) > WINDOW // 2:
                    yield from self._settle_download(
                        waiting, retries, landings, verify, resume, progress
                    )
        while waiting:
            yield from self._settle_download(waiting, retries, landings, verify, resume, progress)
        for remote, local in retries:  # once the window is empty: one request at a time
            progress.restart(remote)
            self._send(self._get_request(remote, 0, verify, None))
            yield self._finish_download(remote, local, verify, False, progress, again=True)

    def _settle_download(
        self,
        waiting: deque[_Incoming],
        retries: deque[tuple[str, Path]],
        landings: Landings,
        verify: bool,
        resume: bool,
        progress: TransferProgress,
    ) -> Iterator[TransferResult]:
        """Take the oldest download in flight; one that must start over waits in ``retries``."""
        remote, local, landing = waiting.popleft()
        try:
            result = self._finish_download(
                remote, local, verify, resume, progress, retry=False, landing=landing
            )
        except _Restart:
            retries.append((remote, local))
            return
        finally:
            if landing is not None:
                landings.landed(landing[0])
        yield result

    def _get_request(
        self, remote: str, offset: int, verify: bool, have: os.stat_result | None
    ) -> Get:
        """The ``get`` for ``remote`` from ``offset``, saying what the target holds."""
        if have is None:
            return Get(remote, offset, verify)
        return Get(remote, offset, verify, have.st_size, have.st_mtime)

    def _finish_download(
        self,
        remote: str,
        local: Path,
        verify: bool,
        resume: bool,
        progress: TransferProgress,
        *,
        retry: bool = True,
        again: bool = False,
        landing: tuple[Landing, str] | None = None,
    ) -> TransferResult:
        """Receive the reply to the ``get`` sent for ``remote`` into ``local``.

        A resumed download that does not verify is fetched again from the
        start right away (``retry``), or raises :class:`_Restart`.  A small
        file from its start lands through ``landing``, if given (and as which
        partial file).
        """
        header = self._reply(FileHeader, "reply to get")
        if header.same:
            self._reply(Done, "end of download")
            progress.skip(remote, header.size)
            return TransferResult(remote, local, header.size, 0, header.size, skipped=True)
        if landing is not None and header.offset == 0 and header.length <= SMALL:
            return self._land(remote, local, *landing, header, verify, progress)
        partial = local.with_name(partial_name(local.name))
        result = self._download(remote, local, partial, header, verify, progress)
        if result is not None:
            return result
        if again:
            raise FilesError(f"{remote}: {label(self.hash)} mismatch after download", "mismatch")
        if not retry:
            raise _Restart
        progress.restart(remote)
        self._send(self._get_request(remote, 0, verify, None))
        return self._finish_download(remote, local, verify, False, progress, again=True)

    def download_to(
        self,
        remote: str,
        stream: BinaryIO,
        *,
        verify: bool = True,
        progress: TransferProgress | None = None,
    ) -> TransferResult:
        """Write ``remote`` to ``stream`` (stdout, say) as it arrives, hashing it on the way.

        Nothing is resumed or skipped.  When the whole file does not verify,
        :class:`FilesError` (``mismatch``) is raised after its bytes were
        written: the reader must throw them away.
        """
        progress = progress or TransferProgress()
        header = self._get(remote, 0, verify)
        hasher = new_hasher(self.hash) if verify else None
        self._receive(remote, stream, header, hasher, progress)
        digest = hasher.hexdigest() if hasher is not None else None
        if self._mismatch(digest, self._reply(Done, "end of download")):
            raise FilesError(
                f"{remote}: {label(self.hash)} mismatch; what was written is wrong", "mismatch"
            )
        return TransferResult(
            remote, None, header.size, header.length, 0, digest=digest, hash=self._used(digest)
        )

    def _used(self, digest: str | None) -> str | None:
        """The hash a transfer was verified with (None: it was not)."""
        return self.hash if digest is not None else None

    def _download(
        self,
        remote: str,
        local: Path,
        partial: Path,
        header: FileHeader,
        verify: bool,
        progress: TransferProgress,
    ) -> TransferResult | None:
        offset = header.offset
        try:
            file = open(partial, "r+b" if offset else "w+b")  # noqa: SIM115
        except OSError as exc:
            raise FilesError(f"{partial}: {exc.strerror or exc}", "io") from None
        with file:
            file.truncate(offset)
            file.seek(offset)
            hasher = new_hasher(self.hash) if verify else None
            if hasher is not None and offset:
                hash_file(file, offset, hasher)
            self._receive(remote, file, header, hasher, progress)
            trailer, digest, verified = self._end_of_download(
                hasher, lambda: partial.unlink(missing_ok=True)
            )
            if not verified:
                if offset:
                    return None
                raise self._mismatch_error(remote, trailer, digest)
            try:
                file.flush()
                os.fsync(file.fileno())
            except OSError as exc:
                raise FilesError(f"{partial}: {exc.strerror or exc}", "io") from None
        try:
            os.utime(partial, (header.mtime, header.mtime))
            os.replace(partial, local)
            fsync_directory(local.parent)
        except OSError as exc:
            raise FilesError(f"{local}: {exc.strerror or exc}", "io") from None
        return TransferResult(
            remote,
            local,
            header.size,
            header.length,
            offset,
            digest=digest,
            hash=self._used(digest),
        )

    def _land(
        self,
        remote: str,
        local: Path,
        landing: Landing,
        partial: str,
        header: FileHeader,
        verify: bool,
        progress: TransferProgress,
    ) -> TransferResult:
        """A small file from its start, written to ``partial``, stamped and renamed through
        the descriptor of its directory, which is fsynced later, once for all (see
        :mod:`.landing`)."""
        directory = landing.fd
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        try:
            fd = os.open(partial, flags, 0o666, dir_fd=directory)
        except OSError as exc:
            raise FilesError(f"{local.with_name(partial)}: {exc.strerror or exc}", "io") from None
        try:
            hasher = new_hasher(self.hash) if verify else None
            progress.begin(remote, header.size, 0)
            try:
                self._receive_here(lambda data: write_whole(fd, data), hasher, progress)
            finally:
                progress.end()

            def discard() -> None:
                with contextlib.suppress(OSError):
                    os.unlink(partial, dir_fd=directory)

            trailer, digest, verified = self._end_of_download(hasher, discard)
            if not verified:
                raise self._mismatch_error(remote, trailer, digest)
            try:
                os.fsync(fd)
                os.utime(fd, (header.mtime, header.mtime))
                os.replace(partial, local.name, src_dir_fd=directory, dst_dir_fd=directory)
            except OSError as exc:
                raise FilesError(f"{local}: {exc.strerror or exc}", "io") from None
        finally:
            os.close(fd)
        landing.renamed = True
        return TransferResult(
            remote, local, header.size, header.length, 0, digest=digest, hash=self._used(digest)
        )

    def _end_of_download(
        self, hasher: Hasher | None, discard: Callable[[], object]
    ) -> tuple[Done, str | None, bool]:
        """The ``done`` that ends a download, the digest of what arrived, and whether it
        verified; the partial file goes (``discard``) when the server says the file
        changed meanwhile, or when what arrived does not verify."""
        try:
            trailer = self._reply(Done, "end of download")
        except FilesError as exc:
            if exc.code == "changed":
                discard()
            raise
        digest = hasher.hexdigest() if hasher is not None else None
        if self._mismatch(digest, trailer):
            discard()
            return trailer, digest, False
        return trailer, digest, True

    def _mismatch_error(self, remote: str, trailer: Done, digest: str | None) -> FilesError:
        """A download from its start that did not verify (its partial file removed)."""
        sent = str(trailer.digest(self.hash))
        return FilesError(
            f"{remote}: {label(self.hash)} mismatch (server {sent[:16]}..., "
            f"received {str(digest)[:16]}...); the partial file was removed",
            "mismatch",
        )

    def _mismatch(self, digest: str | None, trailer: Done) -> bool:
        """Whether a download's ``digest`` is not the one its ``done`` carries (both known)."""
        sent = trailer.digest(self.hash)
        return digest is not None and sent is not None and digest != sent

    def _get(self, remote: str, offset: int, verify: bool) -> FileHeader:
        """Ask for ``remote`` from ``offset``; the server's header (it may start over at 0)."""
        self._send(Get(remote, offset, verify))
        return self._reply(FileHeader, "reply to get")

    def _reply(self, kind: type[_Reply], what: str) -> _Reply:
        """The server's next message, which must be a ``kind``; an error is raised."""
        reply = self._next()
        if isinstance(reply, Error):
            raise FilesError(reply.message, reply.code)
        if not isinstance(reply, kind):
            raise FilesError(f"unexpected {what}: {reply!r}", "bad-request")
        return reply

    def _receive(
        self,
        remote: str,
        file: BinaryIO,
        header: FileHeader,
        hasher: Hasher | None,
        progress: TransferProgress,
    ) -> None:
        progress.begin(remote, header.size, header.offset)
        try:
            if header.length <= SMALL:
                self._receive_here(file.write, hasher, progress)
                try:
                    file.flush()
                except OSError as exc:
                    raise _write_failure(exc) from None
            else:
                self._receive_into(file, hasher, progress)
        finally:
            progress.end()

    def _receive_here(
        self, write: Callable[[bytes], object], hasher: Hasher | None, progress: TransferProgress
    ) -> None:
        """Receive a few announced raw bytes in this thread, writing each piece as it comes."""
        conn = self._conn
        while conn.raw_remaining:
            remaining = conn.raw_remaining
            try:
                event = self._next()
            except ConnectionClosed:
                raise self._lost_during(remaining, "to come") from None
            assert isinstance(event, Data)
            try:
                write(event.data)
            except OSError as exc:
                raise _write_failure(exc) from None
            if hasher is not None:
                hasher.update(event.data)
            progress.advance(len(event.data))

    def _receive_into(
        self, file: BinaryIO, hasher: Hasher | None, progress: TransferProgress
    ) -> None:
        """Receive the announced raw bytes: this thread reads the socket, others hash and write.

        When the transfer breaks off (a lost connection, Ctrl-C), what did
        arrive is still written, so that a partial file holds all of it.
        """
        conn = self._conn
        sink = _Sink(file, hasher)
        filled = 0
        try:
            while conn.raw_remaining and conn.buffered():  # bytes that came with the header
                event = conn.next_event()
                assert isinstance(event, Data)
                sink.put_bytes(event.data)
                progress.advance(len(event.data))
            while conn.raw_remaining:
                view = sink.slot()
                want = min(len(view), conn.raw_remaining)
                while filled < want:
                    got = self._recv_raw(view[filled:want], conn.raw_remaining - filled)
                    filled += got
                    progress.advance(got)
                conn.received_raw(filled)
                count, filled = filled, 0
                sink.commit(count)
        finally:
            if filled:
                sink.commit(filled)
            sink.close()

    def _recv_raw(self, view: memoryview, remaining: int) -> int:
        try:
            got = self._sock.recv_into(view)
        except TimeoutError:
            raise Timeout(f"timed out waiting for {self.endpoint}") from None
        except OSError:
            raise self._lost_during(remaining, "to come") from None
        if not got:
            raise self._lost_during(remaining, "to come")
        return got

    # uploads ------------------------------------------------------------------------

    def upload(
        self,
        local: Path | BinaryIO,
        remote: str,
        *,
        verify: bool = True,
        force: bool = False,
        parents: bool = False,
        progress: TransferProgress | None = None,
    ) -> TransferResult:
        """Send ``local`` to ``remote``, resuming the server's partial, verified by the server.

        ``local`` is a path (the remote file gets its modification time) or
        an open regular file, sent whole (the remote file is stamped when it
        arrives).  A stream of unknown size, such as stdin, must be copied to
        a temporary file first: an upload announces its size.  ``parents``:
        make the remote directories it goes into first, if missing.
        """
        progress = progress or TransferProgress()
        directory = str(PurePosixPath(remote).parent)
        if parents and directory != ".":
            self.mkdir(directory, parents=True)
        if not isinstance(local, Path):
            return self._upload(_Outgoing(local, None, remote, None, verify), force, progress)
        try:
            file = open(local, "rb")  # noqa: SIM115
        except OSError as exc:
            raise FilesError(f"{local}: {exc.strerror or exc}", "io") from None
        with file:
            mtime = os.fstat(file.fileno()).st_mtime
            return self._upload(_Outgoing(file, local, remote, mtime, verify), force, progress)

    def upload_many(
        self,
        files: Iterable[tuple[Path, str]],
        *,
        verify: bool = True,
        force: bool = False,
        there: dict[str, Entry] | None = None,
        progress: TransferProgress | None = None,
    ) -> Iterator[TransferResult]:
        """Send each (local, remote) like :meth:`upload`, small files pipelined.

        ``there``: what a listing of the remote side found (remote path ->
        entry); a file with the same size and mtime there is skipped without
        a request (unless ``force``).  A small file goes with its request,
        without waiting for the server's ``ready`` (it is not resumed: it is
        sent whole); a large one waits for the window to empty and is sent
        as :meth:`upload` sends it.  Results come in order.
        """
        progress = progress or TransferProgress()
        waiting: deque[tuple[Path, str, int, int]] = deque()  # local, remote, size, bytes sent
        ahead = 0
        for local, remote in files:
            entry = None if force else (there or {}).get(remote)
            if entry is not None:  # something is there: is it this file?
                try:
                    st = local.stat()
                except OSError as exc:
                    raise FilesError(f"{local}: {exc.strerror or exc}", "io") from None
                if _same(st, entry):
                    progress.skip(remote, st.st_size)
                    yield TransferResult(remote, local, st.st_size, 0, st.st_size, skipped=True)
                    continue
            st, data = _read_small(local, FOLLOWS if self.pipelining else -1)
            if data is None:
                while waiting:
                    ahead -= waiting[0][3]
                    yield self._settle_upload(waiting.popleft(), verify)
                yield self.upload(local, remote, verify=verify, force=force, progress=progress)
                continue
            sent = self._put_ahead(data, st, remote, verify, force, progress)
            waiting.append((local, remote, st.st_size, sent))
            ahead += sent
            if len(waiting) >= WINDOW or ahead > self._conn.window // 2:
                # Take half the window's replies, then send as many again.
                while waiting and (len(waiting) > WINDOW // 2 or ahead > self._conn.window // 4):
                    ahead -= waiting[0][3]
                    yield self._settle_upload(waiting.popleft(), verify)
        while waiting:
            yield self._settle_upload(waiting.popleft(), verify)

    def _put_ahead(
        self,
        data: bytes,
        st: os.stat_result,
        remote: str,
        verify: bool,
        force: bool,
        progress: TransferProgress,
    ) -> int:
        """Send a small file's ``data`` with its ``put`` (and ``done``) in one write; how many
        bytes that was."""
        digest = None
        if verify:
            hasher = new_hasher(self.hash)
            hasher.update(data)
            digest = hasher.hexdigest()
        conn = self._conn
        request = conn.send(Put(remote, len(data), st.st_mtime, verify, force, follows=True))
        conn.sent_raw(len(data))
        wire = b"".join((request, data, conn.send(Done.of(self.hash, digest))))
        progress.begin(remote, len(data), 0)
        self._send_soon(wire)
        progress.advance(len(data))
        progress.end()
        return len(wire)

    def _settle_upload(self, sent: tuple[Path, str, int, int], verify: bool) -> TransferResult:
        """The server's answer to the oldest upload sent ahead."""
        local, remote, size, _ = sent
        reply = self._next()
        if isinstance(reply, Error):
            raise FilesError(reply.message, reply.code)
        if not isinstance(reply, Ok):
            raise FilesError(f"unexpected reply to an upload: {reply!r}", "bad-request")
        if reply.skipped:
            return TransferResult(remote, local, size, 0, 0, skipped=True)
        hashed = self.hash if verify else None
        return TransferResult(remote, local, size, size, 0, hash=hashed)

    def mkdirs(self, paths: Iterable[str]) -> None:
        """Make each remote directory (and its parents), requests pipelined where possible."""
        waiting = 0
        for path in paths:
            self._send_soon(self._conn.send(Mkdir(path, True)))
            waiting += 1
            if waiting >= WINDOW or not self.pipelining:
                self._reply(Ok, "reply to mkdir")
                waiting -= 1
        for _ in range(waiting):
            self._reply(Ok, "reply to mkdir")

    def _upload(self, out: _Outgoing, force: bool, progress: TransferProgress) -> TransferResult:
        result = self._send_file(out, force, progress)
        if result is None:  # a resumed upload did not verify: once more from scratch
            progress.restart(out.remote)
            result = self._send_file(out, True, progress)
            if result is None:
                raise FilesError(
                    f"{out.remote}: {label(self.hash)} mismatch after upload", "mismatch"
                )
        return result

    def _send_file(
        self, out: _Outgoing, force: bool, progress: TransferProgress
    ) -> TransferResult | None:
        file, local, remote, verify = out.file, out.local, out.remote, out.verify
        before = os.fstat(file.fileno())
        reply = self._request(Put(remote, before.st_size, out.mtime, verify, force))
        if isinstance(reply, Ok):
            return TransferResult(remote, local, before.st_size, 0, 0, skipped=True)
        if not isinstance(reply, Ready):
            raise FilesError(f"unexpected reply to put: {reply!r}", "bad-request")
        offset = reply.offset
        hasher = new_hasher(self.hash) if verify else None
        progress.begin(remote, before.st_size, offset)
        try:
            if hasher is None:
                self._send_raw(file, offset, before.st_size - offset, progress)
            else:
                self._send_hashed(file, offset, before.st_size - offset, hasher, progress)
        finally:
            progress.end()
        digest = hasher.hexdigest() if hasher is not None else None
        after = os.fstat(file.fileno())
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            self.close()
            raise FilesError(
                f"{local or remote}: changed while it was being sent; run again", "changed"
            )
        self._send(Done.of(self.hash, digest))
        result = self._next()
        if isinstance(result, Error):
            if result.code == "mismatch" and offset and not force:
                return None
            raise FilesError(result.message, result.code)
        if not isinstance(result, Ok):
            raise FilesError(f"unexpected reply to an upload: {result!r}", "bad-request")
        return TransferResult(
            remote,
            local,
            before.st_size,
            before.st_size - offset,
            offset,
            digest=digest,
            hash=self._used(digest),
        )

    def _send_raw(
        self, file: BinaryIO, offset: int, count: int, progress: TransferProgress
    ) -> None:
        sent = 0
        while sent < count:
            piece = min(SEND_SLICE, count - sent)
            try:
                done = self._sock.sendfile(file, offset + sent, piece)
            except BaseException as exc:
                # sendfile leaves the file's position after what it got out before it stopped.
                moved = max(file.tell() - offset - sent, 0)
                progress.advance(moved)
                if isinstance(exc, TimeoutError):
                    raise Timeout(f"timed out sending to {self.endpoint}") from None
                if isinstance(exc, OSError):
                    raise self._failure_during_upload(count - sent - moved) from None
                raise
            if done == 0:
                self.close()
                raise FilesError("local file shrank while it was being sent; run again", "changed")
            sent += done
            self._conn.sent_raw(done)
            progress.advance(done)

    def _send_hashed(
        self, file: BinaryIO, offset: int, count: int, hasher: Hasher, progress: TransferProgress
    ) -> None:
        """Send ``count`` bytes of ``file`` from ``offset``, hashing the very bytes sent.

        One read feeds both the hash and the socket: a thread reads and
        hashes the next pieces while this one sends the previous (the
        file's first ``offset`` bytes, already on the server, are read for
        the hash alone).  Reading the file a second time beside ``sendfile``
        costs more than the copy ``sendfile`` saves, and the receiver finds
        the bytes still in the cache.
        """
        if offset:
            try:
                hash_file(file, offset, hasher)
            except OSError as exc:
                raise _read_failure(exc) from None
        reader = _Worker(_Reader(file, offset, hasher).fill)
        slots = [memoryview(bytearray(min(SEND_PIECE, count))) for _ in range(SLOTS)]
        pieces: deque[memoryview] = deque()
        queued = sent = 0
        try:
            while sent < count:
                while len(pieces) < SLOTS and queued < count:
                    size = min(SEND_PIECE, count - queued)
                    pieces.append(slots[(queued // SEND_PIECE) % SLOTS][:size])
                    reader.submit(pieces[-1])
                    queued += size
                try:
                    reader.wait_one()
                except FilesError:
                    self.close()  # the bytes announced cannot all come
                    raise
                piece = pieces.popleft()
                try:
                    self._sock.sendall(piece)
                except TimeoutError:
                    raise Timeout(f"timed out sending to {self.endpoint}") from None
                except OSError:
                    raise self._failure_during_upload(count - sent) from None
                sent += len(piece)
                self._conn.sent_raw(len(piece))
                progress.advance(len(piece))
        finally:
            reader.stop()

    def _failure_during_upload(self, remaining: int) -> SocketeerError:
        """The server stopped the upload: read its reason if it sent one."""
        data = b""
        try:
            self._sock.settimeout(2.0)
            while chunk := self._sock.recv(65536):
                data += chunk
        except OSError:
            pass
        reply = _last_error(data)
        if isinstance(reply, Error):
            return FilesError(reply.message, reply.code)
        return self._lost_during(remaining, "to send")


class _Restart(Exception):
    """A resumed download did not verify: it must be fetched again from the start."""


def _status(local: Path) -> os.stat_result | None:
    """The local file's status, if it is a regular file."""
    try:
        st = local.stat()
    except OSError:
        return None
    return st if stat_module.S_ISREG(st.st_mode) else None


def _size(path: Path) -> int:
    """The size of the file at ``path``, 0 if there is none."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_small(local: Path, limit: int) -> tuple[os.stat_result, bytes | None]:
    """The status of the file ``local`` and, if it has at most ``limit`` bytes, its bytes.

    The file is read whole and must not change meanwhile (``changed``).
    """
    try:
        fd = os.open(local, os.O_RDONLY | os.O_CLOEXEC)
        try:
            before = os.fstat(fd)
            if before.st_size > limit:
                return before, None
            data = os.read(fd, before.st_size + 1)  # one more: did it grow?
            while 0 < len(data) <= before.st_size:
                more = os.read(fd, before.st_size + 1 - len(data))
                if not more:
                    break
                data += more
            after = os.fstat(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise FilesError(f"{local}: {exc.strerror or exc}", "io") from None
    if len(data) != before.st_size or after.st_mtime_ns != before.st_mtime_ns:
        raise FilesError(f"{local}: changed while it was being sent; run again", "changed")
    return before, data


def _same(st: os.stat_result, entry: Entry) -> bool:
    """rsync's quick check: the same size and modification time."""
    return st.st_size == entry.size and abs(st.st_mtime - entry.mtime) < 1e-6


def _last_error(data: bytes) -> Message | None:
    """The error frame a server sends before closing on an upload it stopped."""
    try:
        bodies = LengthPrefixCodec(MAX_CONTROL_SIZE).feed(data)
    except FrameTooLarge as exc:
        bodies = exc.messages
    found: Message | None = None
    for body in bodies:
        try:
            found = decode(body)
        except ProtocolError:
            break
    return found


def _read_failure(exc: OSError) -> FilesError:
    """What reading a file being uploaded failed with."""
    return FilesError(f"reading the file to send it failed: {exc.strerror or exc}", "io")


def _write_failure(exc: OSError) -> Exception:
    """What writing a download failed with: a reader gone from a pipe stays BrokenPipeError."""
    if isinstance(exc, BrokenPipeError):
        return exc
    return FilesError(f"writing the download failed: {exc.strerror or exc}", "io")


class _Reader:
    """Fills buffers with a file's bytes in order from ``offset``, hashing each."""

    def __init__(self, file: BinaryIO, offset: int, hasher: Hasher) -> None:
        self._fd = file.fileno()
        self._at = offset
        self._hasher = hasher

    def fill(self, view: memoryview) -> None:
        """Read exactly ``len(view)`` bytes into ``view`` and hash them."""
        got = 0
        while got < len(view):
            try:
                done = os.preadv(self._fd, [view[got:]], self._at + got)
            except OSError as exc:
                raise _read_failure(exc) from None
            if not done:
                raise FilesError("local file shrank while it was being sent; run again", "changed")
            got += done
        self._at += got
        self._hasher.update(view)


class _Sink:
    """Write (and hash) received slots in worker threads while the caller reads the next."""

    def __init__(self, file: BinaryIO, hasher: Hasher | None) -> None:
        self._file = file
        self._slots = [memoryview(bytearray(SLOT)) for _ in range(SLOTS)]
        self._next = 0
        self._in_use = 0
        self._workers: list[_Worker] = [_Worker(file.write)]
        if hasher is not None:
            self._workers.append(_Worker(hasher.update))

    def slot(self) -> memoryview:
        """A free buffer to receive into (waits for the workers if all are busy)."""
        if self._in_use == SLOTS:
            for worker in self._workers:
                worker.wait_one()
            self._in_use -= 1
        return self._slots[self._next]

    def commit(self, count: int) -> None:
        """The slot from :meth:`slot` holds ``count`` bytes: hand them to the workers."""
        view = self._slots[self._next][:count]
        for worker in self._workers:
            worker.submit(view)
        self._in_use += 1
        self._next = (self._next + 1) % SLOTS

    def put_bytes(self, data: bytes) -> None:
        """Bytes that arrived outside a slot."""
        view = self.slot()
        view[: len(data)] = data
        self.commit(len(data))

    def close(self) -> None:
        """Wait for every submitted slot; re-raise a worker's failure."""
        for worker in self._workers:
            worker.stop()
        for worker in self._workers:
            worker.check()
        try:
            self._file.flush()
        except OSError as exc:
            raise _write_failure(exc) from None


class _Worker:
    """One thread applying ``function`` to each submitted buffer, in order."""

    def __init__(self, function: Callable[[memoryview], object]) -> None:
        self._function = function
        self._todo: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (view := self._todo.get()) is not None:
            if self._error is None:
                try:
                    self._function(view)
                except BaseException as exc:  # reported by check()
                    self._error = exc
            self._done.put(1)

    def submit(self, view: memoryview) -> None:
        self._todo.put(view)

    def wait_one(self) -> None:
        self._done.get()
        self.check()

    def stop(self) -> None:
        self._todo.put(None)
        self._thread.join()

    def check(self) -> None:
        if isinstance(self._error, OSError):
            raise _write_failure(self._error)
        if self._error is not None:
            raise self._error
