"""``connect``, ``listen`` and ``send``: the netcat side of the command line."""

from __future__ import annotations

import sys

import click

from .. import loop, netcat
from ..endpoint import Endpoint
from ..framing import Framing
from ..service import TextCodec
from .params import ENCODING, ENDPOINT, SECONDS, announce, encoding_problem

__all__ = ["connect_command", "listen_command", "send_command"]


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
def connect_command(
    endpoint: Endpoint, timeout: float, idle_timeout: float | None, udp_wait: float
) -> None:
    """Connect to ENDPOINT: stdin goes to the socket, the socket to stdout.

    The end of stdin half-closes the connection; the command ends when the
    other side closes.
    """
    loop.run(
        netcat.connect(
            endpoint,
            timeout=timeout,
            idle_timeout=idle_timeout or None,
            udp_wait=udp_wait,
            stdin_fd=sys.stdin.fileno(),
            out=sys.stdout.buffer,
        )
    )


@click.command("listen")
@click.argument("endpoint", type=ENDPOINT)
@click.option("-k", "--keep-open", is_flag=True, help="Keep accepting; stdin goes to every client.")
@click.option("-v", "--verbose", is_flag=True, help="Report connections on stderr.")
def listen_command(endpoint: Endpoint, keep_open: bool, verbose: bool) -> None:
    """Listen on ENDPOINT: print what arrives, send stdin back.

    "listening on ENDPOINT" goes to stderr, since stdout carries the data.
    """

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
        )
    )


@click.command("send")
@click.argument("endpoint", type=ENDPOINT)
@click.argument("messages", nargs=-1, required=True)
@click.option(
    "--framing", type=click.Choice(["line", "raw", "length"]), default="line", show_default=True
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
def send_command(
    endpoint: Endpoint,
    messages: tuple[str, ...],
    framing: Framing,
    encoding: str,
    timeout: float,
    greeting_wait: float,
) -> None:
    """Send each MESSAGE to ENDPOINT and print each reply (and any greeting)."""
    try:
        TextCodec(encoding)
    except LookupError as exc:
        raise encoding_problem(exc) from None
    netcat.send_messages(
        endpoint,
        messages,
        framing=framing,
        encoding=encoding,
        timeout=timeout,
        greeting_wait=greeting_wait,
        show=click.echo,
    )
