"""HTTP dates, entity tags, conditional requests and byte ranges (RFC 9110), sans-IO.

``curl -C -``, ``wget -c`` and browsers resume with ``Range``; they
revalidate with ``If-None-Match``/``If-Modified-Since`` and make sure a
resumed range still belongs to the same file with ``If-Range``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "ByteRange",
    "Unsatisfiable",
    "entity_tag",
    "http_date",
    "if_range_holds",
    "none_match",
    "not_modified_since",
    "parse_http_date",
    "parse_range",
]

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_IMF_DATE = re.compile(
    r"[A-Z][a-z]{2}, (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT"
)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def http_date(timestamp: float) -> str:
    """``timestamp`` (epoch seconds) as an HTTP date: ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    try:
        when = datetime.fromtimestamp(int(timestamp), UTC)
    except (OverflowError, OSError, ValueError):
        when = datetime.fromtimestamp(0, UTC)
    return (
        f"{_DAYS[when.weekday()]}, {when.day:02d} {_MONTHS[when.month - 1]} {when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} GMT"
    )


def parse_http_date(text: str) -> float | None:
    """Seconds since the epoch of an HTTP date (IMF-fixdate), or None if it is not one."""
    match = _IMF_DATE.fullmatch(text.strip())
    if match is None or match[2] not in _MONTHS:
        return None
    day, _, year, hour, minute, second = match.groups()
    try:
        when = datetime(
            int(year),
            _MONTHS.index(match[2]) + 1,
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return when.timestamp()


def entity_tag(inode: int, size: int, mtime_ns: int) -> str:
    """A strong entity tag for one version of a file."""
    return f'"{inode:x}-{size:x}-{mtime_ns:x}"'


def none_match(header: str, tag: str) -> bool:
    """Whether ``If-None-Match: header`` matches ``tag`` (weak comparison): then 304."""
    if header.strip() == "*":
        return True
    bare = tag.removeprefix("W/")
    return any(item.strip().removeprefix("W/") == bare for item in header.split(","))


def not_modified_since(header: str, mtime: float) -> bool:
    """Whether ``If-Modified-Since: header`` says the client's copy is current."""
    since = parse_http_date(header)
    return since is not None and int(mtime) <= since


def if_range_holds(header: str, tag: str, mtime: float) -> bool:
    """Whether ``If-Range: header`` still names this version (strong comparison)."""
    header = header.strip()
    if header.startswith('"'):
        return header == tag
    since = parse_http_date(header)
    return since is not None and int(mtime) == since


class Unsatisfiable(ValueError):
    """A range that starts past the end of the file (416)."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` (inclusive) of a file of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        """How many bytes the range holds."""
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` header's value."""
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str, size: int) -> ByteRange | None:
    """The one range ``Range: header`` asks of ``size`` bytes; None: send everything.

    Several ranges, or a header that is not a byte range, are ignored (the
    whole file is sent, as RFC 9110 allows).  A range that starts at or past
    the end raises :class:`Unsatisfiable`.
    """
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable(f"bytes */{size}")
        return ByteRange(max(0, size - suffix), size - 1, size)
    start = int(first)
    if start >= size:
        raise Unsatisfiable(f"bytes */{size}")
    end = int(last) if last else size - 1
    if end < start:
        return None
    return ByteRange(start, min(end, size - 1), size)
