"""The files service over asyncio: one session (and one task) per connection.

The session's protocol callbacks only move bytes: into the sans-IO
:class:`~.connection.FilesConnection` (or the plain-download name), or,
during an upload, straight into a queue of raw chunks.  The session's task
answers requests one at a time, running filesystem work in threads and
sending files with ``loop.sendfile`` (zero-copy ``os.sendfile`` on asyncio's
own loop).  Reading pauses while an upload's chunks wait for the disk, so a
fast client on a slow disk costs bounded memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import itertools
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from ... import __version__
from ...accounts import Account, Accounts
from ...errors import ConnectionClosed, ProtocolError
from ...host import Host, Task
from ...http.connection import HttpConnection
from ...http.detect import is_request_line
from ...http.files import FilesWeb
from ...recent_logins import RecentLogins
from ...service import Service
from ...session import Session
from ...throttle import AuthThrottle
from ...visible import visible
from .access import Access
from .beneath import Directories
from .buffers import BufferPool
from .connection import (
    CLOSED,
    MAX_REQUEST_SIZE,
    NEED_DATA,
    SERVER,
    Data,
    FilesConnection,
    check_hello,
)
from .hashes import choose, new_hasher
from .messages import (
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
)
from .plain import PlainRequest, is_protocol_opening
from .store import FileStore, HashCache, StoreError, Upload, os_error

__all__ = ["FilesService", "FilesSession"]

log = logging.getLogger("socketeer.server")

#: A plain download's name without newline counts as complete after this much quiet.
PLAIN_QUIET = 0.3
#: Upload bytes queued for the disk before the session stops reading.
QUEUE_HIGH, QUEUE_LOW = 8 * 1024 * 1024, 2 * 1024 * 1024
#: An upload is received straight into these reused buffers (small enough to stay in cache).
SLOT, SLOTS = 2 * 1024 * 1024, 4
#: Upload buffers the whole service may hold at once (32 x 2 MiB = 64 MiB).
POOL_SLOTS = 32
#: A partly filled buffer goes to disk once the client has paused this long.
STALL = 0.05
#: Where everything else is received (asyncio's own read size).
SCRATCH = 256 * 1024
#: Upload bytes queued (copied) before reading pauses, for an upload without pool buffers.
UNPOOLED_HIGH = SCRATCH
#: Bytes per sendfile call: the session counts its progress between calls.
SEND_SLICE = 1024 * 1024
#: Bytes per read when the loop cannot sendfile (uvloop).
COPY_CHUNK = 1024 * 1024
#: A failed upload with more than this still to come is cut short instead of drained.
SKIP_LIMIT = 256 * 1024 * 1024
#: Seconds a cut-short upload's connection waits for the client to close.
LINGER = 10.0
#: A download this small is read whole and written with its header (and its
#: ``done``) in one write: one trip to a thread, one segment, no sendfile.
INLINE = 64 * 1024
#: Directories read from the disk per trip to a thread for a recursive listing.
TREE_BATCH = 64
#: Files opened (and read, if small) per trip to a thread for ``get`` requests sent ahead.
PREFETCH = 32
#: An upload this small that follows its request is taken whole, then written in one trip
#: to a thread (not resumed: such an upload is sent from byte 0 anyway).
WHOLE_PUT = 1024 * 1024
#: Small uploads stored in one trip to a thread at most (and their bytes).
STORE_BATCH, STORE_BATCH_BYTES = 64, 4 * 1024 * 1024
#: Replies held back (see FilesSession._write) are written once they are this many bytes.
HOLD = 64 * 1024
#: Password checks (scrypt: 16 MiB and tens of ms each) one service runs at once.
CHECKS_AT_ONCE = 2
#: Characters of a user name a log line quotes.
SHOWN_NAME = 64
_ZEROS = bytes(1024 * 1024)


class FilesService(Service):
    """Share ``root``: read-only, or writable with ``allow_upload`` and a ``token``.

    With ``accounts`` (a users file), clients log in and each request is
    checked against their rights (the token, if any, still allows
    everything).  Wrong tokens and passwords are answered late and,
    repeated, get the address banned (``throttle``, a default
    :class:`~socketeer.throttle.AuthThrottle`, read against ``clock``).
    Partial files of abandoned uploads are deleted after ``partial_ttl``
    seconds (0: never).
    """

    name = "files"
    default_framing = "length"
    datagrams = False

    def __init__(
        self,
        root: Path,
        *,
        allow_upload: bool = False,
        token: str | None = None,
        partial_ttl: float = 86400.0,
        throttle: AuthThrottle | None = None,
        clock: Callable[[], float] = time.monotonic,
        accounts: Accounts | None = None,
    ) -> None:
        if allow_upload and not token:
            raise ValueError("uploads need a token (--token or SOCKETEER_TOKEN)")
        self.store = FileStore(root)
        self.allow_upload = allow_upload
        self.partial_ttl = partial_ttl  # seconds before an abandoned partial is deleted; 0: never
        self._token = token.encode() if token else None
        self.throttle = throttle if throttle is not None else AuthThrottle()
        self.clock = clock
        #: The users file's accounts; None: no accounts (the token decides).
        self.accounts = accounts
        self._checks = asyncio.Semaphore(CHECKS_AT_ONCE)
        #: Logins verified lately, taken again without scrypt.
        self.logins = RecentLogins()
        self._hashing: dict[tuple[str, tuple[int, int, int, int, int]], asyncio.Future[str]] = {}
        #: Upload buffers, shared by every session and bounded in all.
        self.buffers = BufferPool(SLOT, POOL_SLOTS)
        #: Where everything but upload bytes is received: one buffer for the whole
        #: service, since each read is copied out before the next one starts.
        self.scratch = memoryview(bytearray(SCRATCH))
        #: Browsers, curl and wget on the same port (a first line that is an HTTP request).
        self.web = FilesWeb(self)

    def new_session(self, host: Host) -> FilesSession:
        return FilesSession(host, self)

    def refusal(self, reason: str) -> bytes:
        """A refused client gets the files protocol's own ``busy`` error frame."""
        return FilesConnection(SERVER).refuse(Error("busy", reason))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Abandoned partials expire while the service runs; hashing ends with it."""
        expiry = (
            asyncio.get_running_loop().create_task(self._expire_partials())
            if self.partial_ttl > 0
            else None
        )
        try:
            yield
        finally:
            if expiry is not None:
                expiry.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await expiry
            for hashing in list(self._hashing.values()):
                hashing.cancel()

    async def _expire_partials(self) -> None:
        """At start, then every quarter of the TTL (at most hourly): delete stale partials."""
        ttl = self.partial_ttl
        while True:
            try:
                removed = await asyncio.to_thread(self.store.expire_partials, time.time(), ttl)
            except OSError as exc:
                log.warning("expiring partial files failed: %s", exc)
            else:
                if removed:
                    log.info("deleted %d partial file(s) untouched for %gs", removed, ttl)
            await asyncio.sleep(min(ttl / 4, 3600.0))

    async def authenticate(self, name: str, password: str) -> Account | None:
        """The account ``name`` if ``password`` is its password (checked in a thread).

        A login verified in the last minute is taken without another check
        (see :mod:`socketeer.recent_logins`): a browser or ``curl -u`` sends
        its password with every request.  Wrong passwords are always checked.
        """
        accounts = self.accounts
        if accounts is None:
            return None
        known = self.logins.find(accounts, name, password, self.clock())
        if known is not None:
            return known
        async with self._checks:  # bounded: each check takes 16 MiB
            account = await asyncio.to_thread(accounts.authenticate, name, password)
        if account is not None and self.accounts is accounts:
            self.logins.remember(accounts, name, password, account, self.clock())
        return account

    def use_accounts(self, accounts: Accounts | None) -> None:
        """Take the accounts of a users file read again; logins verified before are forgotten."""
        self.accounts = accounts
        self.logins.forget()

    def token_matches(self, token: str | None) -> bool:
        """Whether ``token`` is the write token (compared in constant time)."""
        if self._token is None or token is None:
            return False
        return hmac.compare_digest(token.encode(), self._token)

    async def sha256(self, file: BinaryIO, st: os.stat_result) -> str:
        """The file's SHA-256 (see :meth:`digest`)."""
        return await self.digest(file, st, "sha256")

    async def digest(self, file: BinaryIO, st: os.stat_result, hash_name: str) -> str:
        """The file's hash; concurrent requests for one version share one hashing."""
        known = self.store.hashes.get(st, hash_name)
        if known is not None:
            return known
        key = (hash_name, HashCache.key(st))
        running = self._hashing.get(key)
        if running is None:
            # The hashing outlives the session that started it (others share it, and
            # that client may leave): it reads through a descriptor of its own.
            own = os.dup(file.fileno())
            running = asyncio.ensure_future(asyncio.to_thread(self._hash_own, own, st, hash_name))
            self._hashing[key] = running
            running.add_done_callback(lambda done: self._hashed(key, done))
        return await asyncio.shield(running)

    def _hash_own(self, fd: int, st: os.stat_result, hash_name: str) -> str:
        with open(fd, "rb") as file:
            return self.store.digest(file, st, hash_name)

    def _hashed(
        self, key: tuple[str, tuple[int, int, int, int, int]], done: asyncio.Future[str]
    ) -> None:
        self._hashing.pop(key, None)
        if not done.cancelled() and done.exception() is not None:
            log.warning("hashing a file failed: %s", done.exception())


class FilesSession(Session, asyncio.BufferedProtocol):
    """One connection to the files service: the protocol, or one plain download.

    A buffered protocol: an upload's bytes are received straight into a few
    reused buffers that the disk threads then write and hash, instead of
    into a new bytes object per read (whose allocation and page faults cost
    more than the copy).  Reading pauses while every buffer waits for the disk.
    """

    def __init__(self, host: Host, service: FilesService) -> None:
        super().__init__(host)
        self._service = service
        self._store = service.store
        self._conn: FilesConnection | None = None
        self._plain: PlainRequest | None = None
        self._wakeup = asyncio.Event()
        self._task: Task | None = None
        self._chunks: list[bytes | memoryview] = []
        self._queued = 0
        self._scratch = service.scratch
        self._lent: list[bytearray] = []  # upload buffers, lent by the service's pool
        self._free: list[bytearray] = []  # those of them not holding bytes for the disk
        self._slot: bytearray | None = None  # the buffer being filled, and how far
        self._filled = 0
        self._into_slot = False  # what get_buffer() last handed out
        self._paused = False  # reading paused: upload bytes wait for the disk
        self._unread = False  # reading paused: the client is not reading our replies
        self._eof = False
        self._writable = False
        #: The rights of a logged-in (or anonymous) client on a server with accounts;
        #: None: the token decides (no accounts, or the token was given).
        self._access: Access | None = None
        self._hash = "sha256"  # what this connection's transfers are verified with
        self._discarding = False
        #: Replies written while more requests wait are held back, then written together.
        self._holding = False
        self._held: list[bytes] = []
        self._held_size = 0
        self._writing: asyncio.Future[tuple[None, None]] | None = None
        self._web: HttpConnection | None = None  # the connection turned out to speak HTTP
        #: Small uploads received whole whose replies wait to be stored together.
        self._stores: list[tuple[Put, bytes, str | None]] = []
        self._stored_bytes = 0
        #: Files opened ahead for ``get`` requests still waiting their turn, in order.
        self._opened: collections.deque[tuple[Get, _Opened | StoreError | None]] = (
            collections.deque()
        )

    # bytes in -----------------------------------------------------------------------

    def started(self) -> None:
        self._task = self.host.spawn(self._run(), f"files session with {self.peer}")

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._web is not None:
            return self._web.get_buffer(sizehint)
        conn = self._conn
        self._into_slot = (
            conn is not None
            and conn.receiving_raw
            and not conn.buffered()
            and not self._discarding
            and (self._slot is not None or bool(self._free))
        )
        if not self._into_slot or conn is None:
            return self._scratch
        if self._slot is None:
            self._slot, self._filled = self._free.pop(), 0
        end = min(SLOT, self._filled + conn.raw_remaining)
        return memoryview(self._slot)[self._filled : end]

    def buffer_updated(self, nbytes: int) -> None:
        if self._web is not None:
            self._web.buffer_updated(nbytes)
            return
        if not self._into_slot:
            self.data_received(bytes(self._scratch[:nbytes]))
            return
        assert self._conn is not None
        self.transferred += nbytes
        self._conn.received_raw(nbytes)
        self._filled += nbytes
        if self._filled == SLOT or not self._conn.raw_remaining:
            self._seal()  # wakes the task; a read that only adds to the slot does not

    def _seal(self) -> None:
        """The slot being filled goes to the disk queue."""
        if self._slot is None:
            return
        if self._filled:
            self._queue(memoryview(self._slot)[: self._filled])
            self._wakeup.set()
        else:
            self._free.append(self._slot)
        self._slot = None
        if not self._free and not self._paused:
            self._paused = True  # every buffer waits for the disk
            self._pause_reading()

    def _release(self, chunks: list[bytes | memoryview]) -> None:
        """Buffers the disk threads are done with are free again."""
        for chunk in chunks:
            if isinstance(chunk, memoryview) and isinstance(chunk.obj, bytearray):
                self._free.append(chunk.obj)
                chunk.release()

    def data_received(self, data: bytes) -> None:
        if self._web is not None:
            self._web.feed(data)
            return
        if self._discarding:
            self._wakeup.set()
            return
        if self._conn is None and self._plain is None:
            if is_protocol_opening(data):
                limit = self.host.limits.max_message_size or MAX_REQUEST_SIZE
                self._conn = FilesConnection(SERVER, max_control=limit)
            else:
                self._plain = PlainRequest()
        conn = self._conn
        if conn is not None and conn.receiving_raw and not conn.buffered():
            # An upload's bytes go straight to the disk queue, uncopied.
            take = min(len(data), conn.raw_remaining)
            conn.received_raw(take)
            self.transferred += take
            self._queue(data if take == len(data) else data[:take])
            data = data[take:]
        if data:
            if conn is not None:
                conn.receive_data(data)
            elif self._plain is not None:
                self._chunks.append(data)
        self._wakeup.set()

    def eof_received(self) -> bool:
        self._eof = True
        if self._web is not None:
            self._web.feed_eof()
        if self._conn is not None:
            self._conn.receive_data(b"")
        self._wakeup.set()
        # Keep the transport open: the answer may still be on its way.  TLS cannot (the
        # peer's close_notify ends the connection), and asyncio warns if asked to.
        return self.stream.can_half_close

    def ended(self, exc: Exception | None) -> None:
        if self._task is not None and not self._task.done():
            if exc is not None:
                log.info("%s: transfer ended: %s", self.peer, exc)
            self._task.cancel()

    def _queue(self, chunk: bytes | memoryview) -> None:
        self._chunks.append(chunk)
        self._queued += len(chunk)
        # Without the pool's buffers, what waits is copied: one read's worth at a time.
        high = QUEUE_HIGH if self._lent else UNPOOLED_HIGH
        if self._queued >= high and not self._paused:
            self._paused = True
            self._pause_reading()

    def _take_chunks(self, limit: int | None = None) -> list[bytes | memoryview]:
        """What is queued for the disk (at least one chunk, about ``limit`` bytes if given).

        Give slots back with :meth:`_release`.  Taking one slot at a time
        frees each as soon as it is written, so receiving never waits for a
        whole batch.
        """
        if limit is None:
            chunks, self._chunks, self._queued = self._chunks, [], 0
            return chunks
        taken, size = 0, 0
        while taken < len(self._chunks) and (
            taken == 0 or size + len(self._chunks[taken]) <= limit
        ):
            size += len(self._chunks[taken])
            taken += 1
        chunks, self._chunks = self._chunks[:taken], self._chunks[taken:]
        self._queued -= size
        return chunks

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            if not self._unread and not self.closing:
                self.stream.resume_reading()

    def _pause_reading(self) -> None:
        if not self.closing and not (self._paused and self._unread):
            self.stream.pause_reading()

    def pause_writing(self) -> None:
        """The client is not reading what we send: take nothing more from it until it does."""
        super().pause_writing()
        if not self._unread:
            self._unread = True
            self._pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._unread:
            self._unread = False
            if not self._paused and not self.closing:
                self.stream.resume_reading()

    # the task -----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._wait_for_opening()
            if self._plain is not None:
                await self._plain_download(self._plain)
            elif self._conn is not None:
                await self._converse(self._conn)
        except asyncio.CancelledError:
            raise
        except ProtocolError as exc:
            self._refuse(str(exc))
        except (ConnectionError, OSError) as exc:
            log.info("%s: transfer ended: %s", self.peer, exc)
            self.kill()
        except Exception:
            log.exception("files session with %s failed", self.peer)
            self._refuse("internal server error")
        finally:
            for _, opened in self._opened:
                if opened is not None and not isinstance(opened, StoreError):
                    opened[0].close()
            self._holding = False
            self._flush_held()
            self.close()

    async def _wait_for_opening(self) -> None:
        while self._conn is None and self._plain is None and not self._eof:
            await self._wait()

    async def _wait(self, timeout: float | None = None) -> bool:
        """Wait for bytes (or the end); False if ``timeout`` passed first."""
        self._flush_held()  # the peer may be waiting for them
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _write(self, data: bytes) -> None:
        if self._holding:
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size >= HOLD:
                self._flush_held()
            return
        if self._held:
            self._flush_held()
        if not self.closing:
            self.stream.write(data)

    def _flush_held(self) -> None:
        """What :meth:`_write` held back goes to the transport, in one write."""
        held, self._held, self._held_size = self._held, [], 0
        if held and not self.closing:
            self.stream.write(b"".join(held))

    def _refuse(self, reason: str) -> None:
        reason = visible(reason)
        if self._conn is not None and self._conn.raw_remaining:
            log.info("%s: %s", self.peer, reason)  # in the middle of file bytes: just close
            return
        if self._conn is not None:
            self._write(self._conn.refuse(Error("bad-request", reason)))
        else:
            self._write(f"error: {reason}\n".encode())
        log.info("%s: %s", self.peer, reason)

    def notify_failure(self, reason: str) -> None:
        if self._web is not None:
            self._web.failed(reason)
            return
        self._refuse(reason)

    # plain downloads ----------------------------------------------------------------

    async def _plain_download(self, request: PlainRequest) -> None:
        name = None
        opening: list[bytes] = []
        while name is None:
            for chunk in self._take_chunks():
                opening.append(bytes(chunk))
                name = request.feed(opening[-1])
            if name is None and (self._eof or not await self._wait(PLAIN_QUIET)):
                name = request.end() if self._eof or not self._chunks else None
        if is_request_line(name.encode("utf-8", "surrogateescape")):
            # HTTP reads the opening again; nothing else may keep it while the connection lasts.
            self._plain = None
            del request
            await self._serve_http(opening)
            return
        self.messages += 1
        log.info("%s: plain download of %r", self.peer, name)
        accounts = self._service.accounts
        # With accounts, a plain download is anonymous: it gets what anyone may read.
        opener = (
            self._store.open_file
            if accounts is None
            else Access(self._store, accounts, None).open_file
        )
        try:
            file, st = await asyncio.to_thread(opener, name)
        except StoreError as exc:
            self._write(f"error: {visible(str(exc))}\n".encode())
            return
        with file:
            sent = await self._sendfile(file, 0, st.st_size)
        if sent < st.st_size:
            log.warning("%s: %r shrank while it was being sent", self.peer, name)

    async def _serve_http(self, opening: list[bytes]) -> None:
        """The first line was an HTTP request: serve the connection as HTTP from here on."""
        service = self._service
        self._web = web = HttpConnection(
            self.stream, self, service.web, pool=service.buffers, scratch=self._scratch
        )
        while opening:
            web.feed(opening.pop(0))
        for chunk in self._take_chunks():
            web.feed(bytes(chunk))
        if self._eof:
            web.feed_eof()
        await web.run()

    # the protocol -------------------------------------------------------------------

    async def _converse(self, conn: FilesConnection) -> None:
        corked = False
        while True:
            event = conn.next_event()
            # While requests sent ahead wait, their replies leave together: held back
            # and written at once, one segment for several small ones instead of one
            # each (the last reply uncorks).
            if corked != (event is not NEED_DATA and conn.buffered() > 0):
                corked = self._holding = not corked
                if not corked:
                    self._flush_held()
                self.stream.cork(corked)
            if event is NEED_DATA and conn.deferred:
                # Nothing more here yet: store what waits (bytes may arrive meanwhile).
                await self._store_pending(conn)
                continue
            if conn.deferred and (
                not isinstance(event, Put) or not event.follows or event.size > WHOLE_PUT
            ):
                await self._store_pending(conn)  # before answering anything else
            if event is NEED_DATA:
                await self._wait()
            elif event is CLOSED:
                return
            else:
                self.messages += 1
            if isinstance(event, Hello):
                if not await self._welcome(conn, event):
                    return
            elif isinstance(event, Message):
                await self._answer(conn, event)
            else:
                continue
            # The next request waits until the client has taken this answer: one
            # that never reads must not pile answers up in the server's memory.
            with contextlib.suppress(ConnectionClosed):
                await self.stream.drain()

    async def _welcome(self, conn: FilesConnection, hello: Hello) -> bool:
        problem = check_hello(hello)
        service, address = self._service, self._address()
        banned = service.throttle.ban_remaining(address, service.clock())
        if banned:
            problem = Error(
                "banned",
                f"too many failed logins from {visible(address)}; "
                f"try again in {math.ceil(banned)} s",
            )
        account = None
        if problem is None:
            problem, account = await self._log_in(hello)
        if problem is not None:
            level = logging.WARNING if problem.code in ("banned", "unauthorized") else logging.INFO
            log.log(level, "%s: refused: %s", self.peer, visible(problem.message))
            self._write(conn.send(problem))
            return False
        everything = hello.token is not None and service.allow_upload
        accounts = service.accounts
        if accounts is not None and not everything:
            self._access = Access(self._store, accounts, account)
            self._writable = accounts.may_write(account)
        else:
            self._writable = everything
        if account is not None:
            log.info("%s: logged in as %s", self.peer, account.name)
        user = account.name if account is not None else None
        self._hash = choose(hello.hashes)
        welcome = Welcome(
            server=f"socketeer {__version__}",
            writable=self._writable,
            user=user,
            hash=self._hash,
            pipeline=conn.max_control,  # what the connection takes ahead (see connection.py)
        )
        self._write(conn.send(welcome))
        return True

    async def _log_in(self, hello: Hello) -> tuple[Error | None, Account | None]:
        """Check the hello's token and account; a failure is counted, logged and answered late."""
        service = self._service
        wrong: Error | None = None
        account = None
        given = hello.token is not None and service.allow_upload
        if given and not service.token_matches(hello.token):
            wrong = Error("unauthorized", "wrong token")
        if wrong is None and hello.user is not None:
            if service.accounts is None:
                return Error("unauthorized", "this server has no accounts (no --users)"), None
            account = await service.authenticate(hello.user, hello.password or "")
            if account is None:
                shown = visible(hello.user[:SHOWN_NAME])
                wrong = Error("unauthorized", f'wrong user name or password (user "{shown}")')
        address, now = self._address(), service.clock()
        if wrong is None:
            if hello.token is not None or hello.user is not None:
                service.throttle.succeeded(address, now)
            return None, account
        failure = service.throttle.failed(address, now)
        if failure.banned_for:
            log.warning(
                "%s: banned for %d s after %d failed logins",
                self.peer,
                math.ceil(failure.banned_for),
                failure.failures,
            )
        await asyncio.sleep(failure.delay)
        return wrong, None

    def _address(self) -> str:
        """Who failed logins are counted against: the client's host, an IPv6 client's /64
        (a host may pick any address in it), one for all Unix sockets."""
        return self.stream.address_key

    async def _answer(self, conn: FilesConnection, request: Message) -> None:
        try:
            if isinstance(request, Get):
                await self._send_file(conn, request)
                return
            if isinstance(request, Put):
                await self._receive_file(conn, request)
                return
            if isinstance(request, List) and request.recursive:
                await self._send_tree(conn, request.path)
                return
            reply = await self._simple(request)
        except StoreError as exc:
            reply = Error(exc.code, visible(str(exc)))
        self._write(conn.send(reply))

    async def _simple(self, request: Message) -> Message:
        if self._access is not None:
            return await self._simple_with_rights(self._access, request)
        store = self._store
        if isinstance(request, List):
            entries = await asyncio.to_thread(store.list, request.path)
            return Listing(request.path, tuple(entries))
        if isinstance(request, Stat):
            return StatReply(await asyncio.to_thread(store.stat, request.path))
        self._check_writable()
        if isinstance(request, Mkdir):
            await asyncio.to_thread(store.mkdir, request.path, request.parents)
        elif isinstance(request, Delete):
            await asyncio.to_thread(store.delete, request.path, request.recursive)
        log.info("%s: %s %r", self.peer, request.op, getattr(request, "path", ""))
        return Ok()

    async def _simple_with_rights(self, access: Access, request: Message) -> Message:
        """A request other than get and put, checked against the client's rights."""
        if isinstance(request, List):
            entries = await asyncio.to_thread(access.list, request.path)
            return Listing(request.path, tuple(entries))
        if isinstance(request, Stat):
            return StatReply(await asyncio.to_thread(access.stat, request.path))
        if isinstance(request, Mkdir):
            await asyncio.to_thread(access.mkdir, request.path, request.parents)
        elif isinstance(request, Delete):
            await asyncio.to_thread(access.delete, request.path, request.recursive)
        log.info("%s: %s %r", self.peer, request.op, getattr(request, "path", ""))
        return Ok()

    def _check_writable(self) -> None:
        if not self._service.allow_upload:
            raise StoreError("read-only", "this server is read-only (start it with --allow-upload)")
        if not self._writable:
            raise StoreError(
                "unauthorized", "writing needs the server's token (--token or SOCKETEER_TOKEN)"
            )

    # downloads ----------------------------------------------------------------------

    async def _send_tree(self, conn: FilesConnection, path: str) -> None:
        """A recursive listing: one ``listing`` per directory, streamed, parents first."""
        walk = self._store.tree(path) if self._access is None else self._access.tree(path)
        last: tuple[str, list[Entry]] | None = None
        while True:
            batch = await asyncio.to_thread(lambda: list(itertools.islice(walk, TREE_BATCH)))
            for found in batch:
                if last is not None:
                    self._write(conn.send(Listing(last[0], tuple(last[1]), more=True)))
                last = found
            if len(batch) < TREE_BATCH:
                break
            await self._drain()
        assert last is not None  # the tree's top is always there, or tree() raised
        self._write(conn.send(Listing(last[0], tuple(last[1]))))

    async def _send_file(self, conn: FilesConnection, request: Get) -> None:
        opened = await self._open(conn, request)
        if isinstance(opened, StoreError):
            self._write(conn.send(Error(opened.code, visible(str(opened)))))
            return
        file, st, whole = opened
        with file:
            if request.size == st.st_size and _same_time(request.mtime, st.st_mtime):
                # The client has this file already (rsync's quick check): nothing to send.
                same = FileHeader(st.st_size, st.st_mtime, st.st_size, 0, same=True)
                self._write(conn.send(same) + conn.send(Done()))
                return
            offset = request.offset if request.offset <= st.st_size else 0
            length = st.st_size - offset
            header = conn.send(FileHeader(st.st_size, st.st_mtime, offset, length))
            if whole is not None:
                await self._send_whole(conn, request, file, st, whole, header)
                return
            hashing = (
                asyncio.ensure_future(self._service.digest(file, st, self._hash))
                if request.hash
                else None
            )
            try:
                self.stream.cork(True)  # the header leaves with the first of the bytes
                self._write(header)
                try:
                    sent = await self._sendfile(file, offset, length)
                finally:
                    self.stream.cork(False)
                if sent < length:  # the file shrank: keep the framing, then say so
                    await self._pad(length - sent)
                conn.sent_raw(length)
                now = await asyncio.to_thread(os.fstat, file.fileno())
                if sent < length or HashCache.key(now) != HashCache.key(st):
                    self._write(
                        conn.send(Error("changed", f"{visible(request.path)}: changed while sent"))
                    )
                    return
                digest = await hashing if hashing is not None else None
            finally:
                if hashing is not None and not hashing.done():
                    hashing.cancel()
        self._log_sent(request.path, length, offset)
        self._write(conn.send(Done.of(self._hash, digest)))

    async def _open(self, conn: FilesConnection, request: Get) -> _Opened | StoreError:
        """The file ``request`` names, opened; with the (small) files of ``get`` requests
        sent after it, in one trip to a thread."""
        if self._opened and self._opened[0][0] == request:
            ready = self._opened.popleft()[1]
            if ready is not None:
                return ready
            return await asyncio.to_thread(self._open_for, request)
        for _, stale in self._opened:  # not the requests expected: the order went wrong
            if stale is not None and not isinstance(stale, StoreError):
                stale[0].close()
        self._opened.clear()
        gets = [request, *conn.requests_ahead(PREFETCH)] if conn.window else [request]
        opened = await asyncio.to_thread(self._open_all, gets)
        for get, ahead in zip(gets[1:], opened[1:], strict=True):
            if not isinstance(ahead, StoreError) and ahead[2] is None:
                ahead[0].close()  # a large file is opened in its turn: descriptors stay few
                self._opened.append((get, None))
            else:
                self._opened.append((get, ahead))
        return opened[0]

    def _open_all(self, gets: list[Get]) -> list[_Opened | StoreError]:
        """In a thread: :meth:`_open_for` each, their directories walked to once."""
        with self._store.directories() as walks:
            return [self._open_for(get, walks) for get in gets]

    def _open_for(self, request: Get, walks: Directories | None = None) -> _Opened | StoreError:
        """In a thread: the file, its status, and all its bytes if it is small (else None)."""
        opener = self._store.open_file if self._access is None else self._access.open_file
        try:
            file, st = opener(request.path, walks=walks)
        except StoreError as exc:
            return exc
        if st.st_size > INLINE:
            return file, st, None
        try:
            data = os.pread(file.fileno(), st.st_size, 0)
        except OSError as exc:
            file.close()
            return os_error(exc, request.path)
        return file, st, data

    async def _send_whole(
        self,
        conn: FilesConnection,
        request: Get,
        file: BinaryIO,
        st: os.stat_result,
        data: bytes,
        header: bytes,
    ) -> None:
        """A small file read whole: header, bytes and ``done`` leave in one write."""
        offset = request.offset if request.offset <= st.st_size else 0
        body = data[offset:].ljust(st.st_size - offset, b"\0")  # shrank: keep the framing
        conn.sent_raw(len(body))
        now = os.fstat(file.fileno())
        if len(data) != st.st_size or HashCache.key(now) != HashCache.key(st):
            end = Error("changed", f"{visible(request.path)}: changed while sent")
            self._write(header + body + conn.send(end))
            return
        digest = None
        if request.hash:
            digest = self._store.hashes.get(st, self._hash)
            if digest is None:
                hasher = new_hasher(self._hash)
                hasher.update(data)
                digest = hasher.hexdigest()
                self._store.hashes.put(st, digest, self._hash)
        self.transferred += len(body)
        self._log_sent(request.path, len(body), offset)
        self._write(header + body + conn.send(Done.of(self._hash, digest)))

    def _log_sent(self, path: str, length: int, offset: int) -> None:
        if offset:
            log.info("%s: sent %r (%d bytes from %d)", self.peer, path, length, offset)
        else:
            log.info("%s: sent %r (%d bytes)", self.peer, path, length)

    async def _sendfile(self, file: BinaryIO, offset: int, length: int) -> int:
        self._flush_held()  # what was written before goes first
        stream = self.stream
        sent = 0
        while sent < length:
            count = min(SEND_SLICE, length - sent)
            try:
                done = await stream.sendfile(file, offset + sent, count)
            except NotImplementedError:  # uvloop, TLS: copy through the loop instead
                return sent + await self._copy(file, offset + sent, length - sent)
            self.transferred += done
            sent += done
            if done < count:
                break
        return sent

    async def _copy(self, file: BinaryIO, offset: int, length: int) -> int:
        sent = 0
        while sent < length:
            count = min(COPY_CHUNK, length - sent)
            data = await asyncio.to_thread(os.pread, file.fileno(), count, offset + sent)
            if not data:
                break
            self._write(data)
            sent += len(data)
            self.transferred += len(data)
            await self._drain()
        return sent

    async def _pad(self, count: int) -> None:
        while count > 0:
            chunk = _ZEROS[: min(count, len(_ZEROS))]
            self._write(chunk)
            count -= len(chunk)
            await self._drain()

    async def _drain(self) -> None:
        self._flush_held()
        try:
            await self.stream.drain()
        except ConnectionClosed:
            raise ConnectionResetError("connection lost") from None

    # uploads ------------------------------------------------------------------------

    async def _receive_file(self, conn: FilesConnection, request: Put) -> None:
        if request.follows and request.size <= WHOLE_PUT:
            await self._receive_whole(conn, request)
            return
        try:
            upload = await asyncio.to_thread(self._uploader(), request, self._hash)
        except StoreError as exc:
            if not request.follows:
                raise
            # The bytes are on their way already: the answer comes after them.
            await self._finish_with(conn, Error(exc.code, visible(str(exc))))
            return
        if upload is None:
            if request.follows:
                await self._finish_with(conn, Ok(skipped=True))
            else:
                self._write(conn.send(Ok(skipped=True)))
            return
        if request.follows and upload.offset:
            await asyncio.to_thread(upload.restart)  # the bytes come from 0
        self._lent = self._service.buffers.take(SLOTS)
        self._free = list(self._lent)
        try:
            if not request.follows:
                self._write(conn.send(Ready(upload.offset)))
            done = await self._receive_raw(conn, upload)
            digest = done.digest(self._hash) if request.hash else None
            await asyncio.to_thread(upload.finish, digest)
        except StoreError as exc:
            await self._settle(upload)
            upload.abandon()
            await self._finish_with(conn, Error(exc.code, visible(str(exc))))
            return
        finally:
            await self._settle(upload)
            upload.abandon()
            self._store.release(upload.target)
            self._return_buffers()
        if upload.offset:
            log.info(
                "%s: received %r (%d bytes, resumed from %d)",
                self.peer,
                request.path,
                request.size,
                upload.offset,
            )
        else:
            log.info("%s: received %r (%d bytes)", self.peer, request.path, request.size)
        self._write(conn.send(Ok()))

    def _uploader(self) -> Callable[[Put, str], Upload | None]:
        """In a thread, start receiving a ``put`` (None: the target holds it already),
        as the token or the account's rights allow."""
        access = self._access
        if access is None:
            self._check_writable()
        start = self._store.upload if access is None else access.upload
        return lambda put, hash_name: start(
            put.path, put.size, put.mtime, put.hash, put.force, hash_name
        )

    async def _receive_whole(self, conn: FilesConnection, request: Put) -> None:
        """A small upload that follows its request: its bytes and ``done``, then the disk."""
        data = bytearray()
        while True:
            chunks = self._take_chunks()
            for chunk in chunks:
                data += chunk
            if chunks:
                self._resume()
            event = conn.next_event()
            if isinstance(event, Data):
                data += event.data
            elif isinstance(event, Done):
                self.messages += 1
                break
            elif event is NEED_DATA:
                await self._wait()
            else:
                raise ProtocolError(f"unexpected {event!r} during an upload")
        digest = event.digest(self._hash) if request.hash else None
        # Stored with the small uploads sent after it, in one trip to a thread: the
        # replies wait until the client has nothing more here (or the batch is full).
        conn.defer_reply()
        self._stores.append((request, bytes(data), digest))
        self._stored_bytes += len(data)
        if len(self._stores) >= STORE_BATCH or self._stored_bytes >= STORE_BATCH_BYTES:
            await self._store_pending(conn)

    async def _store_pending(self, conn: FilesConnection) -> None:
        """Store the small uploads waiting for the disk, together; send their replies in order."""
        stores, self._stores, self._stored_bytes = self._stores, [], 0
        if not stores:
            return
        replies = await asyncio.to_thread(self._store_all, stores)
        sent = []
        for (request, _, _), reply in zip(stores, replies, strict=True):
            if isinstance(reply, Ok) and not reply.skipped:
                log.info("%s: received %r (%d bytes)", self.peer, request.path, request.size)
            sent.append(conn.deferred_reply(reply))
        self._write(b"".join(sent))  # in one write

    def _store_all(self, stores: list[tuple[Put, bytes, str | None]]) -> list[Ok | Error]:
        """In a thread: whole small uploads put in place, each directory walked to once,
        and each directory they were renamed into fsynced once, before any is answered."""
        with self._store.directories() as walks:
            placed = [self._store_whole(*job, walks) for job in stores]
            failed = walks.sync()
        replies: list[Ok | Error] = []
        for (request, _, _), reply in zip(stores, placed, strict=True):
            if isinstance(reply, tuple) and reply[:-1] in failed:
                problem = os_error(failed[reply[:-1]], request.path)
                reply = Error(problem.code, visible(str(problem)))
            replies.append(Ok() if isinstance(reply, tuple) else reply)
        return replies

    def _store_whole(
        self, request: Put, data: bytes, digest: str | None, walks: Directories
    ) -> tuple[str, ...] | Ok | Error:
        """In a thread: a whole small upload put in place; where (its names), or the reply."""
        access = self._access
        try:
            if access is None:
                self._check_writable()
            receive = self._store.receive_whole if access is None else access.receive_whole
            where = receive(
                request.path,
                data,
                request.mtime,
                digest,
                self._hash,
                force=request.force,
                walks=walks,
            )
        except StoreError as exc:
            return Error(exc.code, visible(str(exc)))
        return Ok(skipped=True) if where is None else where

    async def _receive_raw(self, conn: FilesConnection, upload: Upload) -> Done:
        """Write the upload's bytes as they come; return the ``done`` that ends them."""
        while True:
            chunks = self._take_chunks(SLOT)
            if chunks:
                # Disk and hash in parallel (both release the GIL), while the
                # loop fills the other buffers.  Shielded: a vanishing client
                # must not cut a write short (see _settle).
                writing = asyncio.gather(
                    asyncio.to_thread(upload.write_all, chunks),
                    asyncio.to_thread(upload.hash_all, chunks),
                )
                self._writing = writing
                await asyncio.shield(writing)
                self._writing = None
                self._release(chunks)
                self._resume()
                continue
            event = conn.next_event()
            if isinstance(event, Data):
                self._queue(event.data)
            elif isinstance(event, Done):
                self.messages += 1
                return event
            elif event is NEED_DATA:
                if not await self._wait(STALL):
                    self._seal()  # the client paused: what arrived goes to disk now
            else:
                raise ProtocolError(f"unexpected {event!r} during an upload")

    def _return_buffers(self) -> None:
        """The upload is over: its buffers go back to the service's pool."""
        lent = self._lent
        self._chunks = [c for c in self._chunks if not _inside(c, lent)]
        self._queued = sum(len(c) for c in self._chunks)
        self._slot, self._free = None, []
        self._service.buffers.give(lent)

    async def _settle(self, upload: Upload) -> None:
        """An upload ends: let a running write finish, and keep what arrived in the partial."""
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
            self._writing = None
        self._seal()
        rest = self._take_chunks()
        if rest and not upload.file.closed:
            with contextlib.suppress(StoreError):
                await asyncio.to_thread(upload.write_all, rest)
        self._release(rest)
        self._resume()

    async def _finish_with(self, conn: FilesConnection, error: Error | Ok) -> None:
        """Answer a failed upload, as the reply to its ``done`` when the client is still sending.

        The rest of the client's bytes are read and dropped, so the error
        arrives in turn and the connection stays usable.  (Closing with
        unread bytes would make the kernel reset the connection, and the
        client could lose the error.)  More than :data:`SKIP_LIMIT` still to
        come is not worth waiting for: the error goes out at once, and the
        connection ends once the client has seen it and closed.
        """
        if isinstance(error, Error) and conn.raw_remaining > SKIP_LIMIT:
            self._write(conn.refuse(error))
            await self._linger()
            return
        while not conn.awaiting_reply:
            self._release(self._take_chunks())  # dropped
            self._resume()
            event = conn.next_event()
            if event is NEED_DATA:
                await self._wait()
            elif not isinstance(event, Data | Done):
                raise ProtocolError(f"unexpected {event!r} during an upload")
        self._write(conn.send(error))

    async def _linger(self) -> None:
        """Half-close and drop what still arrives until the client closes (or gives up)."""
        if self.closing:
            return
        self._flush_held()
        self.stream.half_close()  # over TLS there is no half-close: the close comes at the end
        self._discarding = True
        deadline = self.host.now() + LINGER
        while not self._eof:
            self._release(self._take_chunks())
            self._resume()
            left = deadline - self.host.now()
            if left <= 0 or not await self._wait(left):
                break


#: A file opened for a download: the file, its status, and all its bytes if it is small.
_Opened = tuple[BinaryIO, os.stat_result, bytes | None]


def _same_time(mtime: float | None, other: float) -> bool:
    """Whether a client's ``mtime`` is the file's (what rsync's quick check compares)."""
    return mtime is not None and abs(mtime - other) < 1e-6


def _inside(chunk: bytes | memoryview, buffers: list[bytearray]) -> bool:
    return isinstance(chunk, memoryview) and any(chunk.obj is buffer for buffer in buffers)
