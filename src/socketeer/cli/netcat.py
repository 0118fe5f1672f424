"""``connect``, ``listen`` and ``send``: the netcat side of the command line."""

from __future__ import annotations

import sys
from typing import TextIO

import click

from .. import loop, netcat
from ..conversation import SEND_FRAMINGS, SendFraming
from ..endpoint import Endpoint
from ..send import REPLY_PAUSE, send_messages
from ..service import TextCodec
from ..tls import ClientTLS
from .params import ENCODING, ENDPOINT, SECONDS, announce, encoding_problem
from .tls import client_tls_options

__all__ = ["connect_command", "listen_command", "send_command"]

PEER_ENCODING = click.option(
    "--encoding",
    default=None,
    help="The peer's text encoding, e.g. gbk: what arrives is shown in the terminal's "
    "encoding, stdin is sent in this one.  Default: bytes pass through unchanged.",
)


def _terminal_encoding(stream: TextIO | None) -> str:
    return getattr(stream, "encoding", None) or "utf-8"


def _encodings(peer: str | None) -> netcat.Encodings:
    """``--encoding`` checked: a usage error (exit 2) for one that cannot be used."""
    encodings = netcat.Encodings(
        peer, stdin=_terminal_encoding(sys.stdin), stdout=_terminal_encoding(sys.stdout)
    )
    try:
        encodings.incoming()
        encodings.outgoing()
    except LookupError as exc:
        raise encoding_problem(exc) from None
    return encodings


def _show_line(line: str) -> None:
    """Write ``line`` in the terminal's encoding; what it cannot show becomes ``?``."""
    codec = TextCodec(_terminal_encoding(sys.stdout))
    sys.stdout.buffer.write(codec.encode(line + "\n"))
    sys.stdout.buffer.flush()


@click.command("connect")
@click.argument("endpoint", type=ENDPOINT)
@click.option(
    "--timeout", type=SECONDS, default=10.0, show_default=True, help="Seconds to connect."
)
@click.option(
    "-i",
    "--idle-timeout",
    type=SECONDS,
    default=None,
    help="Give up after this many seconds with nothing received.",
)
@click.option(
    "-w",
    "--wait",
    "udp_wait",
    type=SECONDS,
    default=1.0,
    show_default=True,
    help="UDP: seconds to wait for replies after the end of stdin.",
)
@PEER_ENCODING
@client_tls_options()
def connect_command(
    endpoint: Endpoint,
    timeout: float,
    idle_timeout: float | None,
    udp_wait: float,
    encoding: str | None,
    tls: ClientTLS,
) -> None:
    """Connect to ENDPOINT: stdin goes to the socket, the socket to stdout.

    All of stdin is sent, even after the other side has half-closed; its end
    half-closes the connection, and the command ends when the other side
    closes too (from a terminal: as soon as the other side closes).  Exit 1
    if the other side closes or resets before all of stdin was sent.
    """
    encodings = _encodings(encoding)
    loop.run(
        netcat.connect(
            endpoint,
            timeout=timeout,
            idle_timeout=idle_timeout or None,
            udp_wait=udp_wait,
            stdin_fd=sys.stdin.fileno(),
            out=sys.stdout.buffer,
            encodings=encodings,
            tls=tls,
        ),
        use_uvloop=not endpoint.tls,  # see run_server: TLS on asyncio's loop
    )


@click.command("listen")
@click.argument("endpoint", type=ENDPOINT)
@click.option("-k", "--keep-open", is_flag=True, help="Keep accepting; stdin goes to every client.")
@click.option("-v", "--verbose", is_flag=True, help="Report connections on stderr.")
@PEER_ENCODING
def listen_command(
    endpoint: Endpoint, keep_open: bool, verbose: bool, encoding: str | None
) -> None:
    """Listen on ENDPOINT: print what arrives, send stdin back.

    One client is served like connect serves its server.  With -k, every
    client at once: stdin goes to all, and each is closed once it has sent.
    "listening on ENDPOINT" goes to stderr, since stdout carries the data.
    """
    encodings = _encodings(encoding)

    def on_event(text: str) -> None:
        if verbose:
            click.echo(text, err=True)

    loop.run(
        netcat.listen(
            endpoint,
            keep_open=keep_open,
            stdin_fd=sys.stdin.fileno(),
            out=sys.stdout.buffer,
            on_ready=lambda eps: announce(eps, sys.stderr),
            on_event=on_event,
            encodings=encodings,
        )
    )


@click.command("send")
@click.argument("endpoint", type=ENDPOINT)
@click.argument("messages", nargs=-1, required=True)
@click.option(
    "--framing",
    type=click.Choice(SEND_FRAMINGS),
    default="auto",
    show_default=True,
    help="How messages are sent and replies end over a stream.  auto: from what the server "
    "sends first (a 4-byte length: length; else a reply ends with a newline or a "
    f"{REPLY_PAUSE:g} s pause, and messages go as lines unless the server's first reply "
    "lacked a newline); line: lines; raw: bare messages, replies end with a pause; "
    "length: 4-byte big-endian length prefixes.",
)
@ENCODING
@click.option(
    "--timeout",
    type=SECONDS,
    default=10.0,
    show_default=True,
    help="Seconds to connect and to wait for each reply.",
)
@click.option(
    "--greeting-wait",
    type=SECONDS,
    default=0.3,
    show_default=True,
    help="Seconds to wait for a greeting before sending (0: don't).",
)
@client_tls_options()
def send_command(
    endpoint: Endpoint,
    messages: tuple[str, ...],
    framing: SendFraming,
    encoding: str,
    timeout: float,
    greeting_wait: float,
    tls: ClientTLS,
) -> None:
    """Send each MESSAGE to ENDPOINT and print each reply (and any greeting).

    Replies are printed as they arrive, one per message.  A server that
    closes after the last message (exit) is a normal end.  A reply that is
    an "error: ..." line ends the command with exit 1 and the reason on
    stderr.  Over UDP each MESSAGE is one datagram and the next datagram
    back is its reply (no greeting, no framing).
    """
    try:
        TextCodec(encoding)
    except LookupError as exc:
        raise encoding_problem(exc) from None
    send_messages(
        endpoint,
        messages,
        framing=framing,
        encoding=encoding,
        timeout=timeout,
        greeting_wait=greeting_wait,
        show=_show_line,
        tls=tls,
    )
