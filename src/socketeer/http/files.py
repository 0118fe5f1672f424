"""The files service over HTTP: browse, download, resume, zip, upload, mkdir, delete.

Everything goes through the service's :class:`~socketeer.services.files.store.FileStore`,
so the share is confined exactly as for the files protocol, and uploads are
written to a partial file and renamed over the target only once complete.
Filesystem calls run in threads; downloads use ``sendfile`` where the
transport allows.

==========================  ==============================================
``GET /dir/``               the listing page (``?json``, or ``Accept:
                            application/json``: JSON; ``?zip``: a zip
                            streamed as it is made)
``GET /file``               the bytes (``Range``, ``If-Range``,
                            ``If-None-Match``, ``If-Modified-Since``; HEAD)
``PUT /path``               upload (``curl -T``); ``?offset=N&size=T``: one
                            chunk of a resumable upload; ``PUT /dir/``: mkdir
``POST /dir/?upload``       multipart upload (the page's form)
``POST /dir/?mkdir``        make the directory named by the form's ``name``
``POST /path?delete``,      delete (a directory with what is in it)
``DELETE /path``
``POST /.socketeer/login``  exchange the token, or an account's name and
                            password, for a session cookie
==========================  ==============================================

With accounts (``--users``), every request acts as the account it proves
(``Authorization: Basic``, or a login cookie) or anonymously, and each goes
through :class:`~socketeer.services.files.access.Access`: anonymous
refusals get 401 with a Basic challenge, a logged-in user's 403.  The
token (``Authorization: Bearer``, or its cookie) still allows everything.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import mimetypes
import stat as stat_module
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qsl, quote

from python_multipart.multipart import MultipartParser, parse_options_header
from stream_zip import ZIP_AUTO, stream_zip

from ..accounts import Account, Right
from ..services.files.access import Access as Rights
from ..services.files.messages import Entry
from ..services.files.paths import join_remote
from ..services.files.store import FileStore, StoreError, Upload
from ..visible import visible
from .access import (
    COOKIE,
    SESSION_LIFETIME,
    Access,
    Grant,
    Verdict,
    parse_cookies,
    same_origin,
)
from .connection import Exchange
from .listing import SORT_KEYS, ListingView, listing_json, render_listing
from .responses import (
    PAGE_HEADERS,
    SHARED_FILE_HEADERS,
    HttpError,
    asset,
    html_response,
    json_response,
    wants_json,
)
from .targets import BadTarget, Target, parse_target
from .validators import (
    Unsatisfiable,
    entity_tag,
    http_date,
    if_range_holds,
    none_match,
    not_modified_since,
    parse_range,
)

if TYPE_CHECKING:
    from ..services.files.session import FilesService

__all__ = ["FORM_LIMIT", "STATUS_OF", "Caller", "FilesWeb"]

log = logging.getLogger("socketeer.server")

#: Bytes a form (login, mkdir) may send.
FORM_LIMIT = 64 * 1024
#: Zip bytes gathered before each send.
ZIP_BATCH = 1024 * 1024
#: Reserved at the top of the share for socketeer's own pages and assets.
RESERVED = ".socketeer"
#: How each store error is answered.
STATUS_OF = {
    "not-found": 404,
    "bad-path": 400,
    "denied": 403,
    "forbidden": 403,
    "read-only": 403,
    "unauthorized": 401,
    "exists": 409,
    "not-empty": 409,
    "not-a-directory": 409,
    "not-a-file": 409,
    "busy": 423,
    "changed": 409,
    "mismatch": 409,
    "no-space": 507,
    "too-large": 413,
    "bad-request": 400,
}
#: Types a browser would run as a page: always downloaded, never shown.
_ACTIVE_TYPES = {
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
    "text/javascript",
    "application/javascript",
}
_ALLOW = "GET, HEAD, PUT, POST, DELETE, OPTIONS"
#: The earliest time a zip member can have (1980-01-01).
ZIP_EPOCH = 315532800
#: Characters of a user name a log line or an answer quotes.
SHOWN_NAME = 64


def challenge(scheme: str) -> tuple[str, str]:
    """The ``WWW-Authenticate`` header a 401 carries."""
    return ("www-authenticate", f'{scheme} realm="socketeer"')


def store_error(exc: StoreError) -> HttpError:
    """A store's refusal as the HTTP error a client is told."""
    # Only an account's rights say "unauthorized": an anonymous request that may log in.
    headers = [challenge("Basic")] if exc.code == "unauthorized" else []
    return HttpError(STATUS_OF.get(exc.code, 500), visible(str(exc)), headers)


def content_disposition(kind: str, name: str) -> str:
    """``attachment; filename="..."; filename*=UTF-8''...`` for any name."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    encoded = quote(name, safe="", errors="surrogateescape")
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


@dataclass(frozen=True)
class Caller:
    """Who sent a request, and what its reads and writes go through."""

    grant: Grant
    #: The store itself (no accounts, or the token), or an account's rights in it.
    source: FileStore | Rights
    #: The account that logged in, if one did.
    account: Account | None = None


class FilesWeb:
    """Serves ``service``'s share to browsers, curl and wget.

    With the service's accounts, each request is checked against the rights
    of the account it proves (or of anonymous users).  Over TLS (the
    exchange's ``scheme`` is ``https``) the login cookie is ``Secure``.
    """

    def __init__(self, service: FilesService) -> None:
        self.service = service
        self.store = service.store
        self.access = Access(
            service.token_matches if service.allow_upload else None,
            accounts=service.accounts is not None,
        )

    # dispatch -----------------------------------------------------------------------

    async def handle(self, exchange: Exchange) -> None:
        """Answer one request."""
        if exchange.method == "OPTIONS":
            await exchange.respond(204, [("allow", _ALLOW), *PAGE_HEADERS])
            return
        try:
            target = parse_target(exchange.target)
        except BadTarget as exc:
            raise HttpError(400, str(exc)) from None
        try:
            if target.names[:1] == (RESERVED,):
                await self._own(exchange, target)
            elif exchange.method in ("GET", "HEAD"):
                await self._get(exchange, target)
            elif exchange.method == "PUT":
                await self._put(exchange, target)
            elif exchange.method == "POST":
                await self._post(exchange, target)
            elif exchange.method == "DELETE":
                source = await self._writer(exchange)
                await asyncio.to_thread(source.delete, target.path, True)
                log.info("%s: deleted %r over HTTP", exchange.peer, target.path)
                await exchange.respond(204, PAGE_HEADERS)
            else:
                raise HttpError(405, f"{exchange.method} is not supported", [("allow", _ALLOW)])
        except StoreError as exc:
            raise store_error(exc) from None

    # who sent the request -----------------------------------------------------------

    def _verdict(self, exchange: Exchange) -> Verdict:
        headers = exchange.headers
        return self.access.check(
            headers.get("authorization"),
            parse_cookies(headers.get("cookie")),
            self.service.clock(),
        )

    async def _reader(self, exchange: Exchange) -> Caller:
        """Who reads: without accounts anyone may, and the token shows the write tools."""
        if self.service.accounts is None:
            grant = self._verdict(exchange).grant if self.service.allow_upload else Grant.NONE
            return Caller(grant, self.store)
        return await self._caller(exchange)

    async def _writer(self, exchange: Exchange) -> FileStore | Rights:
        """What a write goes through; refused (401/403) before anything is written."""
        if self.service.accounts is None:
            await self._authorize(exchange)
            return self.store
        caller = await self._caller(exchange)
        if caller.grant is not Grant.NONE:
            origin = exchange.headers.get("origin")
            # A browser attaches cookies and Basic credentials to other sites' posts too.
            foreign = origin is not None and not self._same_origin(exchange)
            if foreign or (caller.grant is Grant.COOKIE and origin is None):
                raise HttpError(403, "a logged-in write from a browser must come from this server")
        return caller.source

    async def _caller(self, exchange: Exchange) -> Caller:
        """On a server with accounts: anonymous, unless the request proves an account or the token.

        A Basic password is checked in a thread (at most two at once); wrong
        ones are answered late and counted against the address, like the
        files protocol's.
        """
        service, accounts = self.service, self.service.accounts
        assert accounts is not None
        verdict = self._verdict(exchange)
        if verdict.grant is Grant.NONE and not verdict.failed:
            return Caller(Grant.NONE, Rights(self.store, accounts, None))
        self._refuse_banned(exchange)
        if verdict.failed:
            basic = (exchange.headers.get("authorization") or "").lower().startswith("basic")
            if basic:
                await self._failed_login(exchange, "malformed Basic credentials", "Basic")
            await self._failed_login(exchange, "wrong token")
        account = None
        if verdict.basic is not None:
            user, password = verdict.basic
            account = await service.authenticate(user, password)
            if account is None:
                await self._failed_login(exchange, _wrong_password(user), "Basic")
            service.throttle.succeeded(exchange.address_key, service.clock())
        elif verdict.user is not None:
            account = accounts.find(verdict.user)
        elif verdict.grant is Grant.BEARER:
            service.throttle.succeeded(exchange.address_key, service.clock())
        token = verdict.grant is Grant.BEARER or (
            verdict.grant is Grant.COOKIE and verdict.user is None
        )
        if token:  # as a bearer or its login cookie: everything
            return Caller(verdict.grant, self.store)
        return Caller(verdict.grant, Rights(self.store, accounts, account), account)

    async def _authorize(self, exchange: Exchange) -> None:
        """Without accounts: refuse (401/403) a write without the token; nothing is written."""
        service = self.service
        if not service.allow_upload:
            raise HttpError(403, "this server is read-only (start it with --allow-upload)")
        self._refuse_banned(exchange)
        verdict = self._verdict(exchange)
        if verdict.failed:
            await self._failed_login(exchange, "wrong token")
        if verdict.grant is Grant.NONE:
            raise HttpError(
                401,
                "writing needs the server's token (Authorization: Bearer TOKEN, or log in)",
                [challenge("Bearer")],
            )
        if verdict.grant is Grant.COOKIE and not self._same_origin(exchange):
            raise HttpError(403, "a write with the login cookie must come from this server's pages")
        service.throttle.succeeded(exchange.address_key, service.clock())

    def _refuse_banned(self, exchange: Exchange) -> None:
        address = exchange.address_key
        banned = self.service.throttle.ban_remaining(address, self.service.clock())
        if banned:
            raise HttpError(
                403,
                f"too many failed logins from {visible(address)}; "
                f"try again in {math.ceil(banned)} s",
            )

    async def _failed_login(
        self, exchange: Exchange, reason: str, scheme: str = "Bearer"
    ) -> NoReturn:
        """Count a wrong credential against the address, log it, and answer 401 late."""
        service = self.service
        failure = service.throttle.failed(exchange.address_key, service.clock())
        log.warning("%s: refused over HTTP: %s", exchange.peer, reason)
        if failure.banned_for:
            log.warning(
                "%s: banned for %d s after %d failed logins",
                exchange.peer,
                math.ceil(failure.banned_for),
                failure.failures,
            )
        await asyncio.sleep(failure.delay)
        raise HttpError(401, reason, [challenge(scheme)])

    def _same_origin(self, exchange: Exchange) -> bool:
        headers = exchange.headers
        return same_origin(headers.get("origin"), headers.get("host"), exchange.scheme)

    # socketeer's own pages ----------------------------------------------------------

    async def _own(self, exchange: Exchange, target: Target) -> None:
        name = target.names[1] if len(target.names) == 2 else ""
        if exchange.method in ("GET", "HEAD"):
            found = asset(name)
            if found is None or name.endswith(".html"):
                raise HttpError(404, "no such page")
            body, content_type = found
            await exchange.respond(
                200,
                [("content-type", content_type), ("cache-control", "no-cache"), *PAGE_HEADERS],
                body,
            )
        elif exchange.method == "POST" and name == "login":
            await self._login(exchange)
        elif exchange.method == "POST" and name == "logout":
            self.access.logout(parse_cookies(exchange.headers.get("cookie")))
            await self._see_other(exchange, "/", [("set-cookie", self._cookie(exchange, "", 0))])
        else:
            raise HttpError(405, f"{exchange.method} is not supported here", [("allow", "GET")])

    async def _login(self, exchange: Exchange) -> None:
        origin = exchange.headers.get("origin")
        if origin is not None and not self._same_origin(exchange):
            raise HttpError(403, "log in from this server's own page")
        form = dict(parse_qsl((await exchange.body(FORM_LIMIT)).decode("utf-8", "replace")))
        service = self.service
        if not self.access.enabled:
            raise HttpError(403, "this server is read-only (start it with --allow-upload)")
        self._refuse_banned(exchange)
        user = form.get("user", "")
        if user and service.accounts is not None:
            account = await service.authenticate(user, form.get("password", ""))
            if account is None:
                await self._failed_login(exchange, _wrong_password(user), "Basic")
            session = self.access.open_session(account.name, service.clock())
            log.info("%s: logged in over HTTP as %s", exchange.peer, account.name)
        else:  # the token (on a form with accounts, in the password field)
            token = form.get("token") or form.get("password", "")
            found = self.access.login(token, service.clock())
            if found is None:
                await self._failed_login(exchange, "wrong token")
            session = found
            log.info("%s: logged in over HTTP", exchange.peer)
        service.throttle.succeeded(exchange.address_key, service.clock())
        after = form.get("next", "/")
        if not after.startswith("/") or after.startswith("//"):
            after = "/"
        await self._see_other(
            exchange,
            after,
            [("set-cookie", self._cookie(exchange, session or "", SESSION_LIFETIME))],
        )

    def _cookie(self, exchange: Exchange, value: str, lifetime: float) -> str:
        secure = "; Secure" if exchange.scheme == "https" else ""
        return (
            f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={int(lifetime)}{secure}"
        )

    async def _see_other(
        self, exchange: Exchange, location: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        await exchange.respond(303, [("location", location), *PAGE_HEADERS, *(headers or [])])

    # reading ------------------------------------------------------------------------

    async def _get(self, exchange: Exchange, target: Target) -> None:
        caller = await self._reader(exchange)
        entry = await asyncio.to_thread(caller.source.stat, target.path)
        if entry.type == "dir":
            if not target.directory:
                query = exchange.target.partition(b"?")[2].decode("ascii")
                location = _href(target.path, directory=True) + (f"?{query}" if query else "")
                await exchange.respond(301, [("location", location), *PAGE_HEADERS])
                return
            if "zip" in target.query:
                await self._zip(exchange, target.path, caller.source)
                return
            await self._listing(exchange, target, caller)
            return
        if target.directory and target.path:
            raise HttpError(404, f"{visible(target.path)}: not a directory")
        await self._file(exchange, target, caller.source)

    async def _listing(self, exchange: Exchange, target: Target, caller: Caller) -> None:
        entries = await asyncio.to_thread(caller.source.list, target.path)
        if "json" in target.query or wants_json(exchange.headers):
            await exchange.respond(
                200,
                [("content-type", "application/json"), *PAGE_HEADERS],
                listing_json(target.path, entries),
            )
            return
        sort = target.query.get("sort", "name")
        view = ListingView(
            target.path,
            sort if sort in SORT_KEYS else "name",
            target.query.get("order") == "desc",
            writable=await self._may_write(caller, target.path),
            can_log_in=self.access.enabled,
            accounts=self.access.accounts,
            user=caller.account.name if caller.account is not None else None,
            logged_in=caller.grant is Grant.COOKIE,
        )
        await html_response(
            exchange, 200, render_listing(entries, view), [("cache-control", "no-cache")]
        )

    async def _may_write(self, caller: Caller, path: str) -> bool:
        """Whether the listing of ``path`` offers ``caller`` the forms that write."""
        source = caller.source
        if not isinstance(source, Rights):
            return caller.grant is not Grant.NONE
        names, _ = await asyncio.to_thread(self.store.resolve, path)
        return Right.WRITE in source.rights(names)

    async def _file(self, exchange: Exchange, target: Target, source: FileStore | Rights) -> None:
        file, st = await asyncio.to_thread(source.open_file, target.path)
        with file:
            name = target.names[-1]
            tag = entity_tag(st.st_ino, st.st_size, st.st_mtime_ns)
            modified = http_date(st.st_mtime)
            headers = exchange.headers
            validators = [("etag", tag), ("last-modified", modified)]
            match = headers.get("if-none-match")
            since = headers.get("if-modified-since")
            if (match is not None and none_match(match, tag)) or (
                match is None and since is not None and not_modified_since(since, st.st_mtime)
            ):
                await exchange.respond(304, [*validators, *SHARED_FILE_HEADERS])
                return
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            fields = [
                ("content-type", content_type),
                *validators,
                ("accept-ranges", "bytes"),
                ("cache-control", "no-cache"),
                *SHARED_FILE_HEADERS,
            ]
            if "download" in target.query or content_type in _ACTIVE_TYPES:
                fields.append(("content-disposition", content_disposition("attachment", name)))
            ranged = None
            asked = headers.get("range")
            condition = headers.get("if-range")
            if asked is not None and (
                condition is None or if_range_holds(condition, tag, st.st_mtime)
            ):
                try:
                    ranged = parse_range(asked, st.st_size)
                except Unsatisfiable as exc:
                    raise HttpError(
                        416,
                        f"range past the end of the file ({st.st_size} bytes)",
                        [("content-range", str(exc))],
                    ) from None
            if ranged is None:
                start, length, status = 0, st.st_size, 200
            else:
                start, length, status = ranged.start, ranged.length, 206
                fields.append(("content-range", ranged.content_range))
            fields.append(("content-length", str(length)))
            await exchange.start(status, fields)
            await exchange.sendfile(file, start, length)
            await exchange.end()
        if not exchange.head:
            log.info(
                "%s: sent %r over HTTP (%d bytes from %d)",
                exchange.peer,
                target.path,
                length,
                start,
            )

    async def _zip(self, exchange: Exchange, path: str, source: FileStore | Rights) -> None:
        walk = source.tree(path, once=True)
        top = await asyncio.to_thread(next, walk, None)  # refused before a byte is sent
        if top is None:
            raise HttpError(404, f"{visible(path)}: no such directory")
        name = path.rsplit("/", 1)[-1] if path else "share"
        await exchange.start(
            200,
            [
                ("content-type", "application/zip"),
                ("content-disposition", content_disposition("attachment", f"{name}.zip")),
                *SHARED_FILE_HEADERS,
            ],
        )
        if not exchange.head:
            chunks = iter(stream_zip(_zip_members(source, path, name, top, walk)))
            while True:
                batch = await asyncio.to_thread(_gather, chunks, ZIP_BATCH)
                if not batch:
                    break
                exchange.add_transferred(len(batch))
                await exchange.write(batch)
        await exchange.end()
        log.info("%s: sent %r as a zip over HTTP", exchange.peer, path)

    # writing ------------------------------------------------------------------------

    async def _put(self, exchange: Exchange, target: Target) -> None:
        source = await self._writer(exchange)
        if target.directory:
            await asyncio.to_thread(source.mkdir, target.path, True)
            await json_response(exchange, 201, {"made": target.path})
            return
        query = target.query
        resumable = "offset" in query
        total: int | None
        if resumable:
            offset, total = _number(query.get("offset")), _number(query.get("size"))
        else:
            offset, total = 0, None
            declared = exchange.headers.get("content-length")
            if declared is not None and declared.isdigit():
                total = int(declared)
        upload = await asyncio.to_thread(
            self._begin_upload, source, target.path, total or 0, resumable and "fresh" not in query
        )
        try:
            if upload.offset != offset:
                raise HttpError(
                    409,
                    f"the upload stands at byte {upload.offset}, not {offset}",
                    [("upload-offset", str(upload.offset))],
                )
            received = await exchange.receive_body(
                lambda chunks: asyncio.to_thread(upload.write_all, chunks), _left(total, offset)
            )
            end = offset + received
            if total is None:
                upload.size = end
            if end < upload.size:  # one chunk of a resumable upload: more to come
                upload.abandon()
                await json_response(exchange, 200, {"offset": end}, [("upload-offset", str(end))])
                return
            await asyncio.to_thread(upload.finish, None)
        finally:
            upload.abandon()
            self.store.release(upload.target)
        log.info("%s: received %r over HTTP (%d bytes)", exchange.peer, target.path, upload.size)
        await json_response(exchange, 201, {"received": target.path, "size": upload.size})

    async def _post(self, exchange: Exchange, target: Target) -> None:
        query = target.query
        if "delete" in query:
            source = await self._writer(exchange)
            await asyncio.to_thread(source.delete, target.path, True)
            log.info("%s: deleted %r over HTTP", exchange.peer, target.path)
            parent = target.path.rsplit("/", 1)[0] if "/" in target.path else ""
            await self._done(exchange, parent, {"deleted": target.path})
        elif "mkdir" in query:
            source = await self._writer(exchange)
            form = dict(parse_qsl((await exchange.body(FORM_LIMIT)).decode("utf-8", "replace")))
            made = join_remote(target.path, form.get("name", "").strip("/"))
            if made == target.path:
                raise HttpError(400, "name the new directory")
            await asyncio.to_thread(source.mkdir, made, False)
            log.info("%s: made directory %r over HTTP", exchange.peer, made)
            await self._done(exchange, target.path, {"made": made})
        elif "upload" in query:
            source = await self._writer(exchange)
            received = await self._multipart(exchange, target.path, source)
            await self._done(exchange, target.path, {"received": received})
        else:
            raise HttpError(400, "say what to do: ?upload, ?mkdir or ?delete")

    async def _done(self, exchange: Exchange, directory: str, answer: dict[str, Any]) -> None:
        """A write's answer: JSON to scripts, back to the listing for a plain form."""
        if wants_json(exchange.headers):
            await json_response(exchange, 200, answer)
        else:
            await self._see_other(exchange, _href(directory, directory=True))

    async def _multipart(
        self, exchange: Exchange, directory: str, source: FileStore | Rights
    ) -> list[str]:
        """Receive each file of a ``multipart/form-data`` body into ``directory``."""
        content_type, options = parse_options_header(exchange.headers.get("content-type") or "")
        boundary = options.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise HttpError(415, "upload with multipart/form-data")
        parts = _Parts()
        parser = MultipartParser(boundary, parts.callbacks())
        received: list[str] = []
        upload: Upload | None = None
        try:
            async for chunk in exchange.chunks():
                parser.write(chunk)
                for kind, value in parts.take():
                    if kind == "begin":
                        upload = await self._start_part(source, directory, value)
                    elif kind == "data" and upload is not None:
                        await asyncio.to_thread(upload.write_all, [value])
                    elif kind == "end" and upload is not None:
                        upload.size = upload.file.tell()
                        await asyncio.to_thread(upload.finish, None)
                        received.append(upload.remote)
                        log.info("%s: received %r over HTTP", exchange.peer, upload.remote)
                        upload = None
            parser.finalize()
        except ValueError as exc:  # python-multipart's parse errors
            raise HttpError(400, f"malformed multipart body: {exc}") from None
        finally:
            if upload is not None:
                upload.abandon()
        if parts.pending or upload is not None:
            raise HttpError(400, "the multipart body ended in the middle of a file")
        return received

    async def _start_part(
        self, source: FileStore | Rights, directory: str, headers: bytes
    ) -> Upload | None:
        disposition = _part_header(headers, b"content-disposition")
        _, options = parse_options_header(disposition)
        filename = options.get(b"filename")
        if not filename:
            return None  # a plain form field
        name = filename.decode("utf-8", "replace").replace("\\", "/").strip("/")
        remote = join_remote(directory, name)
        return await asyncio.to_thread(self._begin_upload, source, remote, 0)

    def _begin_upload(
        self, source: FileStore | Rights, remote: str, size: int, resume: bool = False
    ) -> Upload:
        """In a thread: start an upload, making its missing parent directories first.

        With an account's rights, the upload itself is checked before any
        directory is made, so a refused one leaves nothing behind.
        """
        if isinstance(source, Rights):
            source.may_upload(remote)
        parent = remote.rpartition("/")[0]
        if parent and self.store.resolve(parent)[1] is None:
            source.mkdir(parent, True)  # a folder's upload, a PUT to a new directory
        upload = source.upload(remote, size, None, False, True, resume=resume)
        assert upload is not None  # force: never skipped
        return upload


class _Parts:
    """python-multipart's callbacks, turned into a list of events to act on."""

    def __init__(self) -> None:
        self._events: list[tuple[str, bytes]] = []
        self._head: list[bytes] = []
        self.pending = False

    def callbacks(self) -> Any:
        def on_part_begin() -> None:
            self._head = []
            self.pending = True

        def on_header_field(data: bytes, start: int, end: int) -> None:
            self._head.append(b"\n" + data[start:end] + b":")

        def on_header_value(data: bytes, start: int, end: int) -> None:
            self._head.append(data[start:end])

        def on_headers_finished() -> None:
            self._events.append(("begin", b"".join(self._head)))

        def on_part_data(data: bytes, start: int, end: int) -> None:
            self._events.append(("data", bytes(data[start:end])))

        def on_part_end() -> None:
            self._events.append(("end", b""))
            self.pending = False

        return {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        }

    def take(self) -> list[tuple[str, bytes]]:
        events, self._events = self._events, []
        return events


def _wrong_password(user: str) -> str:
    return f'wrong user name or password (user "{visible(user[:SHOWN_NAME])}")'


def _zip_members(
    source: FileStore | Rights,
    path: str,
    top: str,
    first: tuple[str, list[Entry]],
    walk: Iterator[tuple[str, list[Entry]]],
) -> Iterator[tuple[str, datetime, int, Any, Any]]:
    """The tree below ``path`` as stream-zip members: its ``first`` listing, then ``walk``'s.

    Runs in the zipping thread.  ``walk`` is ``source``'s tree, each
    directory once (a symlink loop is zipped once, not until the path is
    too deep); every file is opened through ``source``: with an account's
    rights, what it may not read is left out.
    """
    modified: dict[str, datetime] = {}
    for remote, listed in itertools.chain([first], walk):
        shown = f"{top}/{remote[len(path) :].lstrip('/')}".rstrip("/")
        if remote != path:  # below the top: listed (and shown) only if it may be
            when = modified.pop(remote, datetime.fromtimestamp(ZIP_EPOCH, UTC))
            yield shown + "/", when, stat_module.S_IFDIR | 0o755, ZIP_AUTO(0), iter(())
        for entry in listed:
            below, name = join_remote(remote, entry.name), f"{shown}/{entry.name}"
            when = datetime.fromtimestamp(max(entry.mtime, ZIP_EPOCH), UTC)
            if entry.type == "dir":
                modified[below] = when
            elif entry.type == "file":
                try:
                    file, st = source.open_file(below)
                except StoreError:
                    continue  # not to be read, or gone or swapped meanwhile
                yield (
                    name,
                    when,
                    stat_module.S_IFREG | 0o644,
                    ZIP_AUTO(st.st_size, level=1),
                    _read_exactly(file, st.st_size),
                )


def _part_header(head: bytes, name: bytes) -> bytes:
    for line in head.split(b"\n"):
        field, _, value = line.partition(b":")
        if field.strip().lower() == name:
            return value.strip()
    return b""


def _gather(chunks: Iterator[bytes], size: int) -> bytes:
    """About ``size`` bytes from ``chunks`` (fewer at the end; b"" when spent)."""
    parts: list[bytes] = []
    gathered = 0
    for chunk in chunks:
        parts.append(chunk)
        gathered += len(chunk)
        if gathered >= size:
            break
    return b"".join(parts)


def _read_exactly(file: Any, size: int) -> Iterator[bytes]:
    """``size`` bytes of ``file``, then closed (a file that shrank is an error)."""
    with file:
        left = size
        while left:
            data = file.read(min(left, 1024 * 1024))
            if not data:
                raise OSError("a file shrank while it was being zipped")
            left -= len(data)
            yield data


def _number(text: str | None) -> int:
    if text is None or not text.isdigit():
        raise HttpError(400, "offset and size must be whole numbers of bytes")
    return int(text)


def _left(total: int | None, offset: int) -> int | None:
    if total is None:
        return None
    if offset > total:
        raise HttpError(400, f"offset {offset} is past the size {total}")
    return total - offset


def _href(path: str, directory: bool = False) -> str:
    url = "/" + quote(path, safe="/", errors="surrogateescape")
    return url + "/" if directory and path else url
