"""``socketeer send``'s side of a conversation: how messages go out, where replies end.

Sans-IO: the I/O layer feeds what arrives (:meth:`Conversation.receive_data`),
says when the server paused (:meth:`~Conversation.paused`) or closed
(:meth:`~Conversation.closed`), and takes whole replies
(:meth:`~Conversation.next_reply`).  No sockets, no clock.

Framings:

``auto``
    As forgiving as a server's ``auto`` framing.  The server's first bytes
    decide: a NUL first (a 4-byte length) means ``length``; otherwise a reply
    ends with a line ending or with a pause, and messages are sent as lines if
    the server's first reply ended with one (or before it has said anything,
    like nc), bare if it did not (the classic ``send(b'rose')`` servers).
``line``
    Messages end with ``\\n``; a reply is every whole line that has arrived.
``raw``
    Messages go as they are; a reply is what arrives until a pause.
``length``
    Messages and replies carry a 4-byte big-endian length.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from .framing import DEFAULT_MAX_FRAME_SIZE, LengthPrefixCodec

__all__ = ["SEND_FRAMINGS", "Conversation", "SendFraming", "error_reason", "unframed"]

SendFraming = Literal["auto", "line", "raw", "length"]
SEND_FRAMINGS: tuple[SendFraming, ...] = ("auto", "line", "raw", "length")
_HEADER = 4


class Conversation:
    """The framing of one conversation, and the replies cut from what the server sends."""

    def __init__(self, framing: SendFraming, max_frame: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        #: The framing in use: for ``auto``, None until the server's first bytes decide.
        self.framing: Literal["line", "raw", "length"] | None = (
            None if framing == "auto" else framing
        )
        #: Whether a pause ends a reply (``auto`` and ``raw``).
        self.pause_ends_reply = framing in ("auto", "raw")
        self._max_frame = max_frame
        self._frames: LengthPrefixCodec | None = None
        if framing == "length":
            self._frames = LengthPrefixCodec(max_frame)
        #: The framing the last message was sent in (None before the first).
        self.sent_in: Literal["line", "raw", "length"] | None = None
        self._pending = bytearray()
        self._replies: deque[bytes] = deque()
        self._closed = False

    # sending --------------------------------------------------------------------------

    def outgoing(self, message: bytes) -> bytes:
        """The bytes that carry ``message``: a line until the server shows otherwise."""
        self.sent_in = self.framing or "line"
        if self.sent_in == "length":
            return len(message).to_bytes(_HEADER, "big") + message
        if self.sent_in == "raw":
            return message
        return message + b"\n"

    # receiving ------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Whether part of a text reply has arrived and its end has not."""
        return bool(self._pending)

    @property
    def finished(self) -> bool:
        """Whether the server closed and every reply has been taken."""
        return self._closed and not self._replies

    def receive_data(self, data: bytes) -> None:
        """Take the next bytes from the server (the server's first ones may fix the framing)."""
        if self.framing is None and not self._pending and data[:1] == b"\0":
            self.framing = "length"
            self.pause_ends_reply = False
            self._frames = LengthPrefixCodec(self._max_frame)
        if self._frames is not None:
            self._replies.extend(self._frames.feed(data))
            return
        self._pending += data
        if self.framing == "line" and not self.pause_ends_reply:
            end = self._pending.rfind(b"\n") + 1
            if end:
                self._replies.append(bytes(self._pending[:end]))
                del self._pending[:end]
        elif self._pending.endswith(b"\n"):
            self._take_pending("line")

    def paused(self) -> None:
        """Nothing more arrived for a moment: under ``auto`` and ``raw`` that ends a reply."""
        if self.pause_ends_reply and self._pending:
            self._take_pending("raw")

    def closed(self) -> None:
        """The server closed: what is left is its last reply.

        Raises :class:`~socketeer.errors.RemoteProtocolError` if it closed
        inside a length-prefixed frame.
        """
        self._closed = True
        if self._frames is not None:
            self._frames.end()
        if self._pending:
            self._replies.append(bytes(self._pending))
            self._pending.clear()

    def next_reply(self) -> bytes | None:
        """The next whole reply (a frame's body, or text with its line endings), if any."""
        return self._replies.popleft() if self._replies else None

    def _take_pending(self, decided: Literal["line", "raw"]) -> None:
        if self.framing is None:
            self.framing = decided
        self._replies.append(bytes(self._pending))
        self._pending.clear()


def unframed(reply: bytes) -> bytes:
    """``reply`` without a length prefix, if it is exactly one length-prefixed frame."""
    if reply[:1] == b"\0" and int.from_bytes(reply[:_HEADER], "big") == len(reply) - _HEADER:
        return reply[_HEADER:]
    return reply


def error_reason(reply: str, sent: str | None = None) -> str | None:
    """The reason given by a reply that is an ``error: REASON`` line, else None.

    A reply that is exactly what was ``sent`` is an echo, not the server's error.
    """
    first = reply.split("\n", 1)[0].rstrip("\r")
    if not first.startswith("error:") or reply.rstrip("\r\n") == (sent or "").rstrip("\r\n"):
        return None
    return first.removeprefix("error:").strip() or "unknown error"
