"""Whether a connection speaks HTTP: its first line is an HTTP/1.x request line.

Sans-IO.  Only the methods the services answer are recognised, so a plain
download's file name (``GET stuff``) is never taken for a request unless it
spells out a whole request line, ``HTTP/1.x`` included.
"""

from __future__ import annotations

import re

__all__ = ["METHODS", "could_be_request_line", "is_request_line"]

#: The methods a request line may name.
METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS")

_REQUEST_LINE = re.compile(
    rb"(?:" + b"|".join(m.encode() for m in METHODS) + rb") [\x21-\x7e]+ HTTP/1\.[01]\r?\n?"
)


def is_request_line(line: bytes) -> bool:
    """Whether ``line`` (with or without its line ending) is an HTTP/1.x request line."""
    return _REQUEST_LINE.fullmatch(line) is not None


def could_be_request_line(start: bytes) -> bool:
    """Whether ``start``, the first bytes of a connection, may still become a request line."""
    for method in METHODS:
        opening = method.encode() + b" "
        if opening.startswith(start) or start.startswith(opening):
            return True
    return False
