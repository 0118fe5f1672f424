"""``socketeer serve chat`` and ``socketeer chat``: the chat server and its terminal client.

The client shows incoming lines above an input line that is never
overwritten (prompt_toolkit), with a colour per nickname and the history of
what was typed (up and down arrows).  Ctrl-D or ``/quit`` leaves (exit 0),
Ctrl-C too (exit 130).  When stdin or stdout is not a terminal it reads
lines from stdin and prints the lines it receives, plainly.
"""

from __future__ import annotations

import getpass
import sys

import click

from .. import loop
from ..endpoint import Endpoint
from ..logs import announce_browsable
from ..services.chat import (
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_QUEUE_TOTAL,
    ChatClient,
    ChatService,
    ChatSettings,
)
from ..services.chat.names import nick_problem
from ..visible import visible
from .params import ENDPOINT, SECONDS, SizeType
from .serve import ServeOptions, run_server, serve_group, server_options

__all__ = ["chat_command", "serve_chat"]

# --- the server -------------------------------------------------------------------------


@serve_group.command("chat")
@server_options(framing=False)
@click.option(
    "--history",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Lines a member joining a room is shown.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Lines a second a member may send (0 = no limit); more are dropped with a notice.",
)
@click.option(
    "--burst",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Lines a member may send at once before --rate applies.",
)
@click.option(
    "--max-queue",
    type=SizeType(),
    default=str(DEFAULT_MAX_QUEUE // 1024) + "K",
    show_default=True,
    help="Unsent bytes a member may have waiting; past it, it is disconnected as not reading.",
)
@click.option(
    "--max-queue-total",
    type=SizeType(),
    default=str(DEFAULT_MAX_QUEUE_TOTAL // (1024 * 1024)) + "M",
    show_default=True,
    help="Unsent bytes all members together may have waiting; past it, "
    "the members furthest behind are cut off.",
)
@click.option(
    "--max-rooms",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Rooms that may exist at once.",
)
@click.option(
    "--max-rooms-per-address",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Rooms members from one address (IPv6: one /64) may create and have to themselves.",
)
@click.option("--room", default="lobby", show_default=True, help="The room newcomers land in.")
def serve_chat(
    options: ServeOptions,
    history: int,
    rate: float,
    burst: int,
    max_queue: int,
    max_queue_total: int,
    max_rooms: int,
    max_rooms_per_address: int,
    room: str,
) -> None:
    """Chat rooms that nc, telnet, `socketeer chat` and browsers can join.

    Browsers open the printed http:// address (the same port).

    Plain lines are said to your room; /help lists the commands.  Lines
    longer than --max-message are refused with a notice.  Members may stay
    silent as long as they like unless --idle-timeout is given.
    """
    if options.workers > 1:
        raise click.BadParameter("chat keeps its rooms in one process", param_hint="--workers")
    try:
        settings = ChatSettings(
            default_room=room,
            history=history,
            rate=rate,
            burst=burst,
            max_line_length=options.max_message or ChatSettings.max_line_length,
            max_rooms=max_rooms,
            max_rooms_per_address=max_rooms_per_address,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--room") from None
    service = ChatService(settings, max_queue=max_queue, max_queue_total=max_queue_total)
    run_server(service, options, on_ready=announce_browsable)


# --- the client -------------------------------------------------------------------------


@click.command("chat")
@click.argument("endpoint", type=ENDPOINT)
@click.option("-n", "--nick", help="Your nickname (default: your login name).")
@click.option(
    "--timeout",
    type=SECONDS,
    default=10.0,
    show_default=True,
    help="Seconds to connect, and for the server to show it is a chat server.",
)
@click.option("--no-reconnect", is_flag=True, help="Exit (status 1) when the connection drops.")
@click.option(
    "--plain",
    is_flag=True,
    help="Read lines from stdin, print lines as received, no colours "
    "(the default when stdin or stdout is not a terminal).",
)
def chat_command(
    endpoint: Endpoint, nick: str | None, timeout: float, no_reconnect: bool, plain: bool
) -> None:
    """Join the chat at ENDPOINT as NICK.

    \b
    Type to talk to your room; /help lists the commands.  Up and down
    arrows recall what you typed.  Ctrl-D or /quit leaves (exit 0), Ctrl-C
    too (exit 130).  A dropped connection is retried with backoff.
    """
    if endpoint.transport == "udp":
        raise click.BadParameter("chat runs over TCP or Unix sockets", param_hint="ENDPOINT")
    nick = nick or _login_name()
    problem = nick_problem(nick)
    if problem:
        raise click.BadParameter(
            f'"{visible(nick)}" cannot be a nickname: {problem}', param_hint="--nick"
        )
    client = ChatClient(endpoint, nick, reconnect=not no_reconnect, connect_timeout=timeout)
    terminal = sys.stdin.isatty() and sys.stdout.isatty() and not plain
    from .chat_terminal import run_plain, run_terminal  # prompt_toolkit: only when chatting

    code = loop.run(run_terminal(client) if terminal else run_plain(client))
    if code:
        raise SystemExit(code)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise click.BadParameter("say who you are", param_hint="--nick") from None
