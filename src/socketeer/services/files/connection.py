"""The files protocol's state machine, for either side of a connection, without I/O.

Like h11's ``Connection``: feed it what arrived with :meth:`receive_data`,
take what it means with :meth:`next_event`, and turn messages to send into
bytes with :meth:`send`.  It knows the order the protocol allows (hello
first; one request at a time; raw file bytes only after ``file`` or
``ready``, exactly as many as announced, then ``done``) and refuses anything
else: the peer's mistakes raise :class:`RemoteProtocolError`, our own
:class:`LocalProtocolError`.

**Pipelining.**  Once the server's ``welcome`` offers a ``pipeline`` (bytes
the client may send ahead), a client may send further requests before the
replies to earlier ones: ``get``, ``list``, ``stat``, ``mkdir``, ``delete``,
and ``put`` with ``follows`` (its bytes and ``done`` follow it at once), not
a ``put`` that waits for ``ready``.  The server answers them in the order
they were sent; the machine keeps the requests sent ahead in order and
matches each reply to the oldest one not yet answered.

Raw bytes may bypass the machine for speed (``recv_into`` a file buffer,
``sendfile``): report them with :meth:`received_raw` / :meth:`sent_raw`.

Memory stays bounded whatever the peer sends.  A control message's length
is checked against the limit the moment its 4-byte header arrives, before
any of its body is kept: :data:`MAX_CONTROL_BEFORE_HELLO` until the hello
has been accepted, ``max_control`` after.  A peer that talks out of turn
may have at most one message's worth of bytes waiting.  Received bytes go
into one buffer that grows amortised and is never re-copied, however small
the pieces they arrive in.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from ...errors import LocalProtocolError, RemoteProtocolError
from ...framing import ReceiveBuffer
from .messages import (
    PROTOCOL_NAME,
    VERSION,
    Delete,
    Done,
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
    Welcome,
    decode,
    encode,
)

__all__ = [
    "CLIENT",
    "CLOSED",
    "MAX_CONTROL_BEFORE_HELLO",
    "MAX_REQUEST_SIZE",
    "NEED_DATA",
    "SERVER",
    "Closed",
    "ClosedMidMessage",
    "Data",
    "FilesConnection",
    "NeedData",
    "Role",
    "check_hello",
    "frame",
]

_HEADER = 4
REQUESTS = (List, Stat, Get, Put, Mkdir, Delete)
#: The largest control message either side takes before the hello is accepted
#: (a hello, a welcome or an error), so strangers cannot make a server hold much.
MAX_CONTROL_BEFORE_HELLO = 64 * 1024
#: The default largest control message after the hello: a request is at most a few
#: KiB (a path is at most 4096 bytes).  A client receiving listings passes
#: :data:`~.messages.MAX_CONTROL_SIZE` instead.
MAX_REQUEST_SIZE = 1024 * 1024


class ClosedMidMessage(RemoteProtocolError):
    """The peer closed the connection where the protocol does not allow it."""


class Role(enum.Enum):
    """Which side of the connection a machine speaks for."""

    CLIENT = "client"
    SERVER = "server"


CLIENT, SERVER = Role.CLIENT, Role.SERVER


@dataclass(frozen=True)
class Data:
    """Raw file bytes."""

    data: bytes


class NeedData:
    """Nothing more can be read until more bytes arrive."""


class Closed:
    """The peer closed the connection at a point where that is allowed."""


NEED_DATA, CLOSED = NeedData(), Closed()
Event = Message | Data | NeedData | Closed


class _State(enum.Enum):
    HELLO = "before hello"
    WELCOME = "waiting for welcome"
    IDLE = "idle"
    REPLY = "waiting for a reply"
    FILE_DATA = "file bytes"
    FILE_END = "waiting for the end of the file"
    PUT_DATA = "upload bytes"
    PUT_RESULT = "waiting for the upload's result"
    CLOSED = "closed"


class _Out(enum.Enum):
    """What a pipelining client is sending: requests, or a ``put``'s bytes, or its ``done``."""

    IDLE = "requests"
    RAW = "upload bytes sent ahead"
    DONE = "the done of an upload sent ahead"


def frame(message: Message) -> bytes:
    """``message`` as it goes on the wire: 4-byte big-endian length, then the body."""
    body = encode(message)
    return len(body).to_bytes(_HEADER, "big") + body


#: Where each side may speak a control message, as the other sees it.
_PEER_TURN = {
    SERVER: frozenset({_State.HELLO, _State.IDLE, _State.PUT_RESULT}),  # the client's turn
    CLIENT: frozenset({_State.WELCOME, _State.REPLY, _State.FILE_END}),  # the server's turn
}


class FilesConnection:
    """One connection's protocol state, as seen by ``role``.

    ``max_control`` is the largest control message taken once the hello has
    been accepted, ``max_control_before_hello`` (at most ``max_control``)
    the largest before.  A message over the limit is a
    :class:`RemoteProtocolError` as soon as its length header has arrived.
    """

    def __init__(
        self,
        role: Role,
        max_control: int = MAX_REQUEST_SIZE,
        max_control_before_hello: int = MAX_CONTROL_BEFORE_HELLO,
    ) -> None:
        if not 0 <= max_control < 2 ** (8 * _HEADER):
            raise ValueError("max_control must fit in the 4-byte length header")
        self.role = role
        self.max_control = max_control
        self.max_control_before_hello = min(max_control_before_hello, max_control)
        self._state = _State.HELLO
        self._request: Message | None = None
        self._raw = 0  # raw bytes still to flow in the current transfer
        self._buffer = ReceiveBuffer()
        self._need = -1  # the body length of a frame whose header was read, or -1
        self._failure: RemoteProtocolError | None = None
        self._eof = False
        #: Bytes of requests a client may send ahead of the replies (from the welcome).
        self.window = 0
        self._ahead: deque[Message] = deque()  # client: requests sent whose replies wait
        self._deferred = 0  # server: uploads ended whose replies are still to be sent
        self._out = _Out.IDLE  # client: where the requests sent ahead stand
        self._out_raw = 0
        #: Server: the bodies requests_ahead() decoded, and what they decoded to, in order.
        self._peeked: deque[tuple[bytes, Message]] = deque()

    # what the caller may ask --------------------------------------------------------

    @property
    def state(self) -> str:
        """Where the conversation stands, in words (for messages and tests)."""
        return self._state.value

    @property
    def raw_remaining(self) -> int:
        """Raw file bytes still to come in the current transfer (either direction)."""
        return self._raw if self._state in (_State.FILE_DATA, _State.PUT_DATA) else 0

    @property
    def receiving_raw(self) -> bool:
        """Whether the peer is now sending raw file bytes to us."""
        sender = SERVER if self._state is _State.FILE_DATA else CLIENT
        return self._state in (_State.FILE_DATA, _State.PUT_DATA) and sender is not self.role

    @property
    def control_limit(self) -> int:
        """The largest control message the peer may send now."""
        if self._state in (_State.HELLO, _State.WELCOME):
            return self.max_control_before_hello
        return self.max_control

    @property
    def request(self) -> Message | None:
        """The request being answered, if one is."""
        return self._request

    @property
    def awaiting_reply(self) -> bool:
        """Whether a request (or an upload's ``done``) is waiting for the server's answer."""
        return self._state is _State.REPLY

    @property
    def idle(self) -> bool:
        """Whether a new request may be sent (client) or received (server), none in flight."""
        return self._state is _State.IDLE

    @property
    def in_flight(self) -> int:
        """Client: requests sent whose replies have not ended (the one being answered too)."""
        answering = self._state not in (_State.IDLE, _State.HELLO, _State.CLOSED)
        return len(self._ahead) + answering

    # receiving ----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes that arrived; ``b""`` means the peer closed its side.

        Too much (a header announcing more than :attr:`control_limit`, or a
        peer sending out of turn more than one message could hold) is not
        kept: the next :meth:`next_event` raises :class:`RemoteProtocolError`.
        """
        if not data:
            self._eof = True
            return
        if self._failure is not None:
            return  # the connection is being refused: nothing more is kept
        self._buffer.feed(data)
        if self.receiving_raw:
            return
        turn = self._state in _PEER_TURN[self.role]
        try:
            if turn:
                self._read_header()
            # A server's client never sends file bytes unasked, so on that side
            # everything beyond the frame being read is a message sent ahead.
            if not turn or self.role is SERVER:
                self._check_backlog()
        except RemoteProtocolError as exc:
            self._fail(exc)

    def buffered(self) -> int:
        """Bytes received but not yet turned into events."""
        return len(self._buffer) + (_HEADER if self._need >= 0 else 0)

    def next_event(self) -> Event:
        """The next thing the peer said, :data:`NEED_DATA`, or :data:`CLOSED`."""
        if self._failure is not None:
            raise self._failure
        waiting = self.window and self._state not in _PEER_TURN[SERVER]
        if self.role is SERVER and waiting and not self.receiving_raw:
            return NEED_DATA  # requests sent ahead wait for their turn
        if self.receiving_raw:
            if not len(self._buffer):
                return self._need_more()
            chunk = self._buffer.take(self._raw)
            self._raw -= len(chunk)
            self._after_raw()
            return Data(chunk)
        try:
            self._read_header()
        except RemoteProtocolError as exc:
            self._fail(exc)
            raise
        body = self._buffer.take_exactly(self._need) if self._need >= 0 else None
        if body is None:
            return self._need_more()
        self._need = -1
        peeked = self._peeked
        if peeked and peeked[0][0] == body:
            message = peeked.popleft()[1]  # decoded already by requests_ahead()
        else:
            peeked.clear()
            message = decode(body)
        self._advance(self._peer, message, RemoteProtocolError)
        return message

    def requests_ahead(self, limit: int) -> list[Get]:
        """Server: ``get`` requests received beyond the one being answered, not taken.

        Up to ``limit``, in order, stopping at anything else (a request that
        changes the disk must run before a later ``get`` reads it): so their
        files can be opened ahead, together.
        """
        found: list[Get] = []
        self._peeked.clear()
        if self.role is not SERVER or self._need >= 0 or self._state not in (_State.REPLY,):
            return found
        offset = 0
        while len(found) < limit:
            header = self._buffer.peek(offset, _HEADER)
            length = int.from_bytes(header, "big") if header is not None else -1
            body = self._buffer.peek(offset + _HEADER, length) if length >= 0 else None
            if body is None or length > self.control_limit:
                break
            try:
                message = decode(body)
            except RemoteProtocolError:
                break
            if not isinstance(message, Get):
                break
            found.append(message)
            self._peeked.append((body, message))
            offset += _HEADER + length
        return found

    def received_raw(self, count: int) -> None:
        """The caller read ``count`` raw file bytes straight from the socket."""
        if not self.receiving_raw or count > self._raw or self.buffered():
            raise LocalProtocolError("raw bytes read outside a transfer")
        self._raw -= count
        self._after_raw()

    # sending ------------------------------------------------------------------------

    def send(self, message: Message) -> bytes:
        """Check that ``message`` may be sent now; return its bytes."""
        if self._deferred:
            raise LocalProtocolError(f"{message.op!r} sent before the deferred replies")
        if not self._send_ahead(message):
            self._advance(self.role, message, LocalProtocolError)
        return frame(message)

    def sent_raw(self, count: int) -> None:
        """The caller sent ``count`` raw file bytes (the current transfer's)."""
        if self._out is _Out.RAW:
            if count > self._out_raw:
                raise LocalProtocolError(f"{count} raw bytes sent, {self._out_raw} were announced")
            self._out_raw -= count
            if not self._out_raw:
                self._out = _Out.DONE
            return
        if self.receiving_raw or count > self.raw_remaining:
            raise LocalProtocolError(f"{count} raw bytes sent, {self.raw_remaining} were announced")
        self._raw -= count
        self._after_raw()

    def defer_reply(self) -> None:
        """Server: answer the upload whose ``done`` just arrived later; take the next request.

        Small uploads sent ahead can so be stored together, in one trip to
        the disk.  Their replies go out in order with :meth:`deferred_reply`
        before anything else is sent.
        """
        request = self._request
        if self.role is not SERVER or not self.awaiting_reply or not isinstance(request, Put):
            raise LocalProtocolError("only the reply to an ended upload can wait")
        self._advance(SERVER, Ok(), LocalProtocolError)  # an error would end it alike
        self._deferred += 1

    @property
    def deferred(self) -> int:
        """Server: replies to uploads that :meth:`defer_reply` holds back, still to be sent."""
        return self._deferred

    def deferred_reply(self, reply: Ok | Error) -> bytes:
        """Server: the bytes of the oldest deferred reply (``ok`` or ``error``)."""
        if not self._deferred:
            raise LocalProtocolError("no reply was deferred")
        self._deferred -= 1
        return frame(reply)

    def refuse(self, error: Error) -> bytes:
        """An error to send whatever the state (after a protocol error); the connection ends."""
        self._state = _State.CLOSED
        return frame(error)

    # the rules ----------------------------------------------------------------------

    def _send_ahead(self, message: Message) -> bool:
        """A pipelining client sends ``message`` before the replies it waits for; False: not so."""
        if self.role is not CLIENT or not self.window:
            return False
        if isinstance(message, Done) and self._out is _Out.DONE:
            self._out = _Out.IDLE
            return True
        answering = self._state in (_State.REPLY, _State.FILE_DATA, _State.FILE_END)
        if not isinstance(message, REQUESTS) or not (answering or self._ahead):
            return False
        if self._out is not _Out.IDLE:
            raise LocalProtocolError(f"a request sent while {self._out.value} are due")
        if isinstance(message, Put) and not message.follows:
            raise LocalProtocolError("a put that waits for ready cannot be sent ahead")
        self._ahead.append(message)
        if isinstance(message, Put):
            self._out, self._out_raw = (_Out.RAW if message.size else _Out.DONE), message.size
        return True

    def _next_request(self) -> None:
        """A client's reply ended: the oldest request sent ahead is answered next."""
        if self._state is _State.IDLE and self._ahead:
            self._state, self._request = _State.REPLY, self._ahead.popleft()

    @property
    def _peer(self) -> Role:
        return SERVER if self.role is CLIENT else CLIENT

    def _need_more(self) -> Event:
        if not self._eof:
            return NEED_DATA
        if self.buffered() or self._state not in (_State.IDLE, _State.HELLO, _State.CLOSED):
            raise ClosedMidMessage(f"connection closed in the middle of a message ({self.state})")
        return CLOSED

    def _read_header(self) -> None:
        """Take the next frame's length header, if it has arrived, and check it at once."""
        if self._need >= 0 or len(self._buffer) < _HEADER:
            return
        header = self._buffer.take_exactly(_HEADER)
        assert header is not None
        length = int.from_bytes(header, "big")
        limit = self.control_limit
        if length > limit:
            before = " before hello" if limit < self.max_control else ""
            raise RemoteProtocolError(
                f"control message of {length} bytes is over the {limit}-byte limit{before}"
            )
        self._need = length

    def _check_backlog(self) -> None:
        """At most one message's worth may wait beyond the frame being read."""
        current = _HEADER + self._need if self._need >= 0 else 0
        ahead = self.buffered() - current
        if ahead > _HEADER + max(self.control_limit, self.window):
            raise RemoteProtocolError(
                f"{self._peer.value} sent {ahead} bytes out of turn ({self.state})"
            )

    def _fail(self, exc: RemoteProtocolError) -> None:
        """The peer broke the protocol: drop what it sent, and say so from now on."""
        self._failure = exc
        self._buffer = ReceiveBuffer()
        self._need = -1

    def _after_raw(self) -> None:
        # Only a transfer ends here: ``sent_raw(0)`` after an empty one changes nothing.
        if self._raw == 0 and self._state in (_State.FILE_DATA, _State.PUT_DATA):
            self._state = _State.FILE_END if self._state is _State.FILE_DATA else _State.PUT_RESULT

    def _advance(
        self, sender: Role, message: Message, error: type[LocalProtocolError | RemoteProtocolError]
    ) -> None:
        state = self._state

        def refuse() -> NoReturn:
            raise error(f"{sender.value} may not send {message.op!r} now ({state.value})")

        if state is _State.CLOSED:
            refuse()
        if sender is CLIENT:
            if state is _State.HELLO and isinstance(message, Hello):
                self._state = _State.WELCOME
            elif state is _State.IDLE and isinstance(message, Put) and message.follows:
                self._state, self._request, self._raw = _State.PUT_DATA, message, message.size
                self._after_raw_if_empty()
            elif state is _State.IDLE and isinstance(message, REQUESTS):
                self._state, self._request = _State.REPLY, message
            elif state is _State.PUT_RESULT and isinstance(message, Done):
                self._state = _State.REPLY
            else:
                refuse()
            return
        if state is _State.WELCOME:
            if isinstance(message, Welcome):
                self._state, self.window = _State.IDLE, message.pipeline
            elif isinstance(message, Error):
                self._state = _State.CLOSED
            else:
                refuse()
        elif state is _State.REPLY:
            self._reply(message, refuse, error)
        elif state is _State.FILE_END and isinstance(message, Done | Error):
            self._state, self._request = _State.IDLE, None
        else:
            refuse()
        self._next_request()

    def _reply(
        self,
        message: Message,
        refuse: Callable[[], NoReturn],
        error: type[LocalProtocolError | RemoteProtocolError],
    ) -> None:
        request = self._request
        if isinstance(message, FileHeader) and isinstance(request, Get):
            self._state, self._raw = _State.FILE_DATA, message.length
            self._after_raw_if_empty()
        elif isinstance(message, Ready) and isinstance(request, Put) and not request.follows:
            if message.offset > request.size:
                raise error("upload offset beyond the file's size")
            self._state, self._raw = _State.PUT_DATA, request.size - message.offset
            self._after_raw_if_empty()
        elif isinstance(message, (FileHeader, Ready, Welcome, Hello, Done, *REQUESTS)):
            refuse()
        elif isinstance(message, Listing) and message.more:
            if not (isinstance(request, List) and request.recursive):
                refuse()  # one listing more answers the same recursive list
        else:
            self._state, self._request = _State.IDLE, None

    def _after_raw_if_empty(self) -> None:
        if self._raw == 0:
            self._after_raw()


def check_hello(hello: Hello) -> Error | None:
    """Why the server cannot speak with a client that said ``hello``, or None."""
    if hello.protocol != PROTOCOL_NAME:
        return Error("version", f"not a {PROTOCOL_NAME} client ({hello.protocol!r})", (VERSION,))
    if hello.version != VERSION:
        return Error(
            "version",
            f"protocol version {hello.version} is not supported; this server speaks {VERSION}",
            (VERSION,),
        )
    return None
