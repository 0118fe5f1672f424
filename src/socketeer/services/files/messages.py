"""The files protocol's messages and how each is written on the wire.

Every control message is one length-prefixed frame (4-byte big-endian
length, then the body) whose body is a UTF-8 JSON object with an ``op``
member naming the message.  File bytes travel raw, between a message that
announces how many follow (``file``, ``ready``) and the message that closes
them (``done``).  See docs/files-protocol.md for the whole protocol.
"""

from __future__ import annotations

import json
import json.scanner
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, cast

from ...errors import RemoteProtocolError

__all__ = [
    "MAX_CONTROL_SIZE",
    "PROTOCOL_NAME",
    "VERSION",
    "Delete",
    "Done",
    "Entry",
    "EntryType",
    "Error",
    "ErrorCode",
    "FileHeader",
    "Get",
    "Hello",
    "List",
    "Listing",
    "Message",
    "Mkdir",
    "Ok",
    "Put",
    "Ready",
    "Stat",
    "StatReply",
    "Welcome",
    "decode",
    "encode",
]

PROTOCOL_NAME = "socketeer-files"
VERSION = 1
#: The largest control frame either side accepts (a listing of ~100,000 entries).
MAX_CONTROL_SIZE = 16 * 1024 * 1024

EntryType = Literal["file", "dir", "link", "other", "partial"]
ErrorCode = Literal[
    "bad-request",
    "version",
    "unauthorized",
    "forbidden",
    "banned",
    "read-only",
    "bad-path",
    "not-found",
    "not-a-file",
    "not-a-directory",
    "exists",
    "not-empty",
    "denied",
    "no-space",
    "busy",
    "mismatch",
    "changed",
    "io",
]
ERROR_CODES: frozenset[str] = frozenset(ErrorCode.__args__)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Entry:
    """One directory entry: its name, type, size in bytes and modification time (epoch s)."""

    name: str
    type: EntryType
    size: int
    mtime: float


@dataclass(frozen=True)
class Message:
    """Base of every message; ``op`` names it on the wire."""

    op: ClassVar[str] = ""


# client -> server ------------------------------------------------------------------


@dataclass(frozen=True)
class Hello(Message):
    """The client's opening: protocol name, version, the write token if it has one,
    and the account it logs in as (``user`` and ``password``) on a server with accounts."""

    op: ClassVar[str] = "hello"
    version: int = VERSION
    protocol: str = PROTOCOL_NAME
    token: str | None = None
    client: str = ""
    hashes: tuple[str, ...] = ()
    user: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class List(Message):
    """List the directory ``path`` ("" is the shared directory); ``recursive``: its whole tree."""

    op: ClassVar[str] = "list"
    path: str = ""
    recursive: bool = False


@dataclass(frozen=True)
class Stat(Message):
    """Describe ``path``."""

    op: ClassVar[str] = "stat"
    path: str = ""


@dataclass(frozen=True)
class Get(Message):
    """Download ``path`` from byte ``offset``; ``hash`` asks for the file's hash at the end.

    ``size`` and ``mtime``: the client has a file of that size and
    modification time; if the server's is the same, no byte is sent
    (``file`` says ``same``).
    """

    op: ClassVar[str] = "get"
    path: str = ""
    offset: int = 0
    hash: bool = True
    size: int | None = None
    mtime: float | None = None


@dataclass(frozen=True)
class Put(Message):
    """Upload ``size`` bytes to ``path``, stamped ``mtime``; ``force`` replaces an equal file.

    ``follows``: the bytes follow at once, from byte 0, without waiting for ``ready``.
    """

    op: ClassVar[str] = "put"
    path: str = ""
    size: int = 0
    mtime: float | None = None
    hash: bool = True
    force: bool = False
    follows: bool = False


@dataclass(frozen=True)
class Mkdir(Message):
    """Make the directory ``path`` (and missing parents with ``parents``)."""

    op: ClassVar[str] = "mkdir"
    path: str = ""
    parents: bool = False


@dataclass(frozen=True)
class Delete(Message):
    """Delete the file or empty directory ``path`` (a whole tree with ``recursive``)."""

    op: ClassVar[str] = "delete"
    path: str = ""
    recursive: bool = False


# either side -----------------------------------------------------------------------


@dataclass(frozen=True)
class Done(Message):
    """Closes raw file bytes: the hash (hex) of the whole file, or None if not hashed.

    The member is named for the connection's hash: ``sha256`` or ``blake3``.
    """

    op: ClassVar[str] = "done"
    sha256: str | None = None
    blake3: str | None = None

    @classmethod
    def of(cls, hash_name: str, digest: str | None) -> Done:
        """The ``done`` carrying ``digest``, a hash of kind ``hash_name``."""
        return cls(blake3=digest) if hash_name == "blake3" else cls(sha256=digest)

    def digest(self, hash_name: str) -> str | None:
        """The hash of kind ``hash_name`` this ``done`` carries, if any."""
        return self.blake3 if hash_name == "blake3" else self.sha256


@dataclass(frozen=True)
class Error(Message):
    """A request failed: a stable ``code`` for programs, a ``message`` for people."""

    op: ClassVar[str] = "error"
    code: str = "bad-request"
    message: str = ""
    supported: tuple[int, ...] = ()


# server -> client ------------------------------------------------------------------


@dataclass(frozen=True)
class Welcome(Message):
    """The server accepts the hello: its version, whether this connection may write,
    and the account it is logged in as (None: none).

    ``hash``: what transfers on this connection are verified with.
    ``pipeline``: bytes of requests the client may send ahead of the replies
    (0: one request at a time; more also means ``list`` takes ``recursive``).
    """

    op: ClassVar[str] = "welcome"
    version: int = VERSION
    server: str = ""
    writable: bool = False
    user: str | None = None
    hash: str = "sha256"
    pipeline: int = 0


@dataclass(frozen=True)
class Listing(Message):
    """The entries of a directory, sorted by name, and its partial files apart.

    ``more``: another listing follows, answering the same (recursive) ``list``.

    Partial files given among ``entries`` are moved to ``partials``: a
    client that predates them ignores that member and never sees them.
    """

    op: ClassVar[str] = "listing"
    path: str = ""
    entries: tuple[Entry, ...] = ()
    partials: tuple[Entry, ...] = ()
    more: bool = False

    def __post_init__(self) -> None:
        if any(entry.type == "partial" for entry in self.entries):
            apart = tuple(entry for entry in self.entries if entry.type == "partial")
            object.__setattr__(self, "partials", self.partials + apart)
            kept = tuple(entry for entry in self.entries if entry.type != "partial")
            object.__setattr__(self, "entries", kept)


@dataclass(frozen=True)
class StatReply(Message):
    """What ``stat`` found."""

    op: ClassVar[str] = "entry"
    entry: Entry = field(default_factory=lambda: Entry("", "other", 0, 0.0))


@dataclass(frozen=True)
class FileHeader(Message):
    """A download starts: ``length`` raw bytes from ``offset`` of a file of ``size`` bytes.

    ``same``: the client's file has this size and mtime already; nothing is sent.
    """

    op: ClassVar[str] = "file"
    size: int = 0
    mtime: float = 0.0
    offset: int = 0
    length: int = 0
    same: bool = False


@dataclass(frozen=True)
class Ready(Message):
    """An upload may start: send the bytes of the file from ``offset`` to its end."""

    op: ClassVar[str] = "ready"
    offset: int = 0


@dataclass(frozen=True)
class Ok(Message):
    """The request succeeded; ``skipped`` when the target already held the same file."""

    op: ClassVar[str] = "ok"
    skipped: bool = False


MESSAGES: dict[str, type[Message]] = {
    cls.op: cls
    for cls in (
        Hello,
        List,
        Stat,
        Get,
        Put,
        Mkdir,
        Delete,
        Done,
        Error,
        Welcome,
        Listing,
        StatReply,
        FileHeader,
        Ready,
        Ok,
    )
}

_JSON = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)
#: Reads one JSON value at an index of a string: (value, where it ends); StopIteration if none.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    cast(Any, json.JSONDecoder())  # typeshed's make_scanner says it takes itself
)
_STRING = json.encoder.encode_basestring_ascii


def encode(message: Message) -> bytes:
    """The frame body of ``message`` (without the length prefix).

    The JSON that ``json.dumps(..., ensure_ascii=True, separators=(",", ":"))``
    writes, member by member in their order: no dictionary is built for it.
    """
    opening, members = _LAYOUT[type(message)]
    parts = [opening]
    for head, name, kind in members:
        value = getattr(message, name)
        if kind == "Entry":
            value = _entry_object(value)
        elif kind == "tuple[Entry, ...]":
            value = [_entry_object(entry) for entry in value]
        parts.append(head)
        parts.append(_json(value))
    parts.append("}")
    return "".join(parts).encode("ascii")


def _json(value: Any) -> str:
    """``value`` in JSON, as :data:`_JSON` writes it (the common kinds without its machinery)."""
    kind = type(value)
    if kind is str:
        return _STRING(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return _JSON.encode(value)  # tuples, objects; refuses NaN and infinities


def _entry_object(entry: Entry) -> dict[str, Any]:
    """An entry as JSON has it (``dataclasses.asdict`` deep-copies: slow)."""
    return {"name": entry.name, "type": entry.type, "size": entry.size, "mtime": entry.mtime}


def _parse(body: bytes) -> Any:
    """The JSON value ``body`` holds (ValueError, UnicodeDecodeError, RecursionError if none).

    A body that is one value and nothing more (what socketeer writes) is read by
    the JSON scanner alone; anything else goes to ``json.loads``, which says why.
    """
    try:
        text = body.decode("utf-8")
        value, end = _SCAN(text, 0)
    except (UnicodeDecodeError, StopIteration, ValueError):
        return json.loads(body)
    if end != len(text):
        return json.loads(body)  # whitespace after it, or more: json.loads decides
    return value


def decode(body: bytes) -> Message:
    """Parse a frame body; anything malformed raises :class:`RemoteProtocolError`."""
    try:
        data = _parse(body)
    except (UnicodeDecodeError, ValueError, RecursionError):  # deep nesting: RecursionError
        raise RemoteProtocolError("malformed message: not a JSON object") from None
    if not isinstance(data, dict):
        raise RemoteProtocolError("malformed message: not a JSON object")
    op = data.pop("op", None)
    cls = MESSAGES.get(op) if isinstance(op, str) else None
    if cls is None:
        raise RemoteProtocolError(f"unknown message {op!r}")
    checks = _CHECKS[cls]
    values: dict[str, Any] = {}
    for name, value in data.items():
        check = checks.get(name)
        if check is None:
            continue  # later minor additions are ignored, not refused
        checked = check(value)
        if checked is _BAD:
            raise RemoteProtocolError(f"malformed {cls.op!r} message: bad {name!r}")
        values[name] = checked
    return cls(**values)


#: Times (seconds since the epoch) a file system can hold: a signed 64-bit time_t.
MAX_TIME = 2.0**63


def _time(value: Any) -> Any:
    """A time a file may be stamped with, as a float (else ``_BAD``).

    Python's json also reads NaN, Infinity, 1e400 and 400-digit integers, and
    ``os.utime`` refuses finite times past a signed 64-bit ``time_t`` (1e19).
    """
    if type(value) not in (int, float):
        return _BAD
    try:
        number = float(value)
    except OverflowError:
        return _BAD
    if not math.isfinite(number) or not -MAX_TIME < number < MAX_TIME:
        return _BAD
    return number


#: What a member check returns for a value of the wrong type.
_BAD: Any = object()


def _int(value: Any) -> Any:
    return value if type(value) is int and value >= 0 else _BAD


def _bool(value: Any) -> Any:
    return value if type(value) is bool else _BAD


def _str(value: Any) -> Any:
    return value if isinstance(value, str) else _BAD


def _str_or_none(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else _BAD


def _int_or_none(value: Any) -> Any:
    return value if value is None or (type(value) is int and value >= 0) else _BAD


def _strs(value: Any) -> Any:
    if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
        return _BAD
    return tuple(value)


def _ints(value: Any) -> Any:
    if not isinstance(value, list) or any(type(v) is not int for v in value):
        return _BAD
    return tuple(value)


def _time_or_none(value: Any) -> Any:
    return None if value is None else _time(value)


def _entries(value: Any) -> Any:
    if not isinstance(value, list):
        return _BAD
    entries = tuple(_entry(v) for v in value)
    return _BAD if any(entry is _BAD for entry in entries) else entries


def _entry(value: Any) -> Any:
    if not isinstance(value, dict):
        return _BAD
    name, kind, size, mtime = (value.get(k) for k in ("name", "type", "size", "mtime"))
    if (
        not isinstance(name, str)
        or kind not in ("file", "dir", "link", "other", "partial")
        or type(size) is not int
        or size < 0
    ):
        return _BAD
    number = _time(mtime)
    return _BAD if number is _BAD else Entry(name, kind, size, number)


#: How a member of each declared type (as written in this module) is checked.
_CHECKERS: dict[str, Callable[[Any], Any]] = {
    "int": _int,
    "bool": _bool,
    "str": _str,
    "str | None": _str_or_none,
    "int | None": _int_or_none,
    "tuple[str, ...]": _strs,
    "float": _time,
    "float | None": _time_or_none,
    "tuple[int, ...]": _ints,
    "Entry": _entry,
    "tuple[Entry, ...]": _entries,
}
#: Each message class's members and their declared types, in order.
_MEMBERS: dict[type[Message], tuple[tuple[str, str], ...]] = {
    cls: tuple((f.name, str(f.type)) for f in fields(cls)) for cls in MESSAGES.values()
}
#: How each message class is written: its opening, then each member's key before its value.
_LAYOUT: dict[type[Message], tuple[str, tuple[tuple[str, str, str], ...]]] = {
    cls: (
        f'{{"op":{_STRING(cls.op)}',
        tuple((f",{_STRING(name)}:", name, kind) for name, kind in members),
    )
    for cls, members in _MEMBERS.items()
}
#: How each member of each message class is checked, by name.
_CHECKS: dict[type[Message], dict[str, Callable[[Any], Any]]] = {
    cls: {name: _CHECKERS[kind] for name, kind in members} for cls, members in _MEMBERS.items()
}
