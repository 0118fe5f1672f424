"""``socketeer send``: the classic one-shot client (a greeting, then a reply per message).

Blocking, like the classic client programs it stands in for: connect, show
the greeting, then send each message and show its reply as it arrives.
How messages are framed and where replies end is decided by a sans-IO
:class:`~socketeer.conversation.Conversation`; this module only moves bytes
and watches the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .client import Connection
from .conversation import Conversation, SendFraming, error_reason, unframed
from .endpoint import Endpoint
from .errors import ConnectionClosed, RemoteProtocolError, Timeout, translate_os_error
from .quantity import quantity
from .service import TextCodec
from .tls import ClientTLS

__all__ = ["REPLY_PAUSE", "send_messages"]

_CHUNK = 64 * 1024


def send_messages(
    endpoint: Endpoint,
    messages: Sequence[str],
    *,
    framing: SendFraming,
    encoding: str,
    timeout: float,
    greeting_wait: float,
    show: Callable[[str], None],
    tls: ClientTLS | None = None,
) -> None:
    """Connect, show the greeting if one starts within ``greeting_wait``, then send
    each message and show its reply as it arrives.

    Over a stream, ``framing`` says how messages are sent and where replies
    end (see :mod:`socketeer.conversation`; ``auto`` picks from what the
    server sends).  A server that closes after the last message (``exit``) is
    a normal end; one that closes earlier is an error.  Over UDP each message
    is one datagram and one datagram back is its reply.  A reply that is an
    ``error: REASON`` line raises :class:`~socketeer.errors.RemoteProtocolError`.

    Messages are sent in ``encoding`` (characters it lacks become ``?``);
    replies are decoded from it, undecodable bytes kept as surrogate escapes.
    """
    text = TextCodec(encoding)
    with Connection.connect(endpoint, timeout=timeout, tls=tls) as conn:
        if not endpoint.is_stream:
            _send_datagrams(conn, messages, text, timeout, show)
            return
        talk = Conversation(framing)
        if greeting_wait > 0:
            greeting = _next_reply(conn, talk, greeting_wait, timeout)
            if greeting is not None:
                show(_shown(greeting, None, text, endpoint, talk))
        for done, message in enumerate(messages):
            if talk.finished:
                raise ConnectionClosed(
                    f"{endpoint} closed the connection after {done} of "
                    f"{quantity(len(messages), 'message')}"
                )
            conn.send(talk.outgoing(text.encode(message)))
            reply = _next_reply(conn, talk, timeout, timeout, required=True)
            if reply is not None:
                show(_shown(reply, message, text, endpoint, talk))


#: Seconds of quiet that end a reply under the ``auto`` and ``raw`` framings.
REPLY_PAUSE = 0.1


def _next_reply(
    conn: Connection, talk: Conversation, wait: float, timeout: float, *, required: bool = False
) -> bytes | None:
    """The next reply, starting within ``wait`` seconds and ending within ``timeout`` more.

    None if the server closed instead, or (unless ``required``) if nothing
    started within ``wait``.
    """
    started = False
    deadline = time.monotonic() + wait
    while (reply := talk.next_reply()) is None:
        if talk.finished:
            return None
        pausing = talk.pending and talk.pause_ends_reply
        left = deadline - time.monotonic()
        data = _recv_within(conn, min(left, REPLY_PAUSE) if pausing else left)
        if data is None:
            if pausing:
                talk.paused()
            elif time.monotonic() >= deadline:
                if not required and not started:
                    return None
                raise _no_reply(conn.endpoint, talk, started, timeout if started else wait)
            continue
        if not data:
            talk.closed()
            continue
        if not started:
            started, deadline = True, time.monotonic() + timeout
        talk.receive_data(data)
    return reply


def _recv_within(conn: Connection, wait: float) -> bytes | None:
    """What arrives within ``wait`` seconds (``b""`` once the server closed), or None."""
    conn.sock.settimeout(max(wait, 0.001))
    try:
        return conn.sock.recv(_CHUNK)
    except TimeoutError:
        return None
    except OSError as exc:
        raise translate_os_error(exc, "receive from", conn.endpoint) from None


def _no_reply(endpoint: Endpoint, talk: Conversation, started: bool, waited: float) -> Timeout:
    within = f"within {quantity(waited, 'second')}"
    if not started:
        return Timeout(f"no reply from {endpoint} {within}")
    if talk.framing == "length":
        return Timeout(f"no whole frame from {endpoint} {within}")
    return Timeout(
        f"no line ending from {endpoint} {within}: if its replies do not end with a newline, "
        "use --framing auto or raw"
    )


def _send_datagrams(
    conn: Connection,
    messages: Sequence[str],
    text: TextCodec,
    timeout: float,
    show: Callable[[str], None],
) -> None:
    """One datagram out per message; the next datagram back is its reply."""
    for message in messages:
        conn.send(text.encode(message))
        reply = _recv_within(conn, timeout)
        if reply is None:
            raise Timeout(
                f'no reply from {conn.endpoint} to "{message}" within '
                f"{quantity(timeout, 'second')} (over UDP, a server that is down looks "
                "the same as one that does not answer)"
            )
        show(_shown(reply, message, text, conn.endpoint, None))


def _shown(
    reply: bytes, sent: str | None, text: TextCodec, endpoint: Endpoint, talk: Conversation | None
) -> str:
    """The reply as it is shown: text without its final line ending.

    A reply that is an ``error:`` line (or a frame holding one, in any framing)
    raises :class:`~socketeer.errors.RemoteProtocolError` with the server's reason.
    """
    if reason := error_reason(text.decode(unframed(reply)), sent):
        hint = ""
        if reason.startswith("frame of") and talk is not None and talk.sent_in != "length":
            hint = " (it reads a 4-byte length before each message: use --framing length)"
        raise RemoteProtocolError(f"{endpoint} answered with an error: {reason}{hint}")
    return text.decode(reply).replace("\r\n", "\n").removesuffix("\n")
