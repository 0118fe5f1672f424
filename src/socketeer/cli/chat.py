"""``socketeer serve chat`` and ``socketeer chat``: the chat server and its terminal client.

The client shows incoming lines above an input line that is never
overwritten (prompt_toolkit), with a colour per nickname and the history of
what was typed (up and down arrows).  Ctrl-D or ``/quit`` leaves (exit 0),
Ctrl-C too (exit 130).  When stdin or stdout is not a terminal it reads
lines from stdin and prints the lines it receives, plainly.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

import click

from .. import loop
from ..accounts import Accounts
from ..endpoint import Endpoint
from ..services.chat import (
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_QUEUE_TOTAL,
    ChatClient,
    ChatService,
    ChatSettings,
)
from ..services.chat.logins import Registry
from ..services.chat.names import nick_problem
from ..services.chat.network import ChatNetwork
from ..services.chat.offers import (
    DEFAULT_MAX_OFFER_SIZE,
    DEFAULT_MAX_OFFERS,
    DEFAULT_MAX_OFFERS_TOTAL,
    DEFAULT_OFFER_TTL,
    OfferLimits,
)
from ..services.chat.state import DEFAULT_HISTORY_BYTES, ChatState, MemoryState
from ..tls import ClientTLS, alpn
from ..visible import visible
from .login import USER, USERS, credentials
from .params import SECONDS, EndpointType, SizeType
from .serve import ServeOptions, run_server, serve_group, server_options, size_text
from .tls import client_tls_options

__all__ = ["chat_command", "serve_chat"]

#: A chat server's endpoint, which may open with the user to log in as (``alice@HOST:PORT``).
ENDPOINT = EndpointType(users=True)

# --- the server -------------------------------------------------------------------------


def default_state_dir() -> Path:
    """Where ``serve chat`` keeps its state unless told: the user's data directory."""
    data = os.environ.get("XDG_DATA_HOME") or ""
    base = Path(data) if os.path.isabs(data) else Path.home() / ".local" / "share"
    return base / "socketeer" / "chat"


def chat_state(where: str, lines: int, size: int) -> ChatState:
    """The chat's state as ``--state`` names it: ``none`` (memory only) or a directory."""
    if where == "none":
        return MemoryState(lines, size)
    from ..services.chat.sqlite_state import SQLiteState  # sqlite3: only when it is used

    return SQLiteState(Path(where).expanduser(), lines, size)


#: Seconds a nickname stays held after its process stops refreshing it (``--redis-ttl``).
DEFAULT_REDIS_TTL = 30.0


def redis_chat(url: str, ttl: float, lines: int, size: int) -> tuple[ChatState, ChatNetwork]:
    """The chat's state and network in the Redis at ``url`` (``--redis``)."""
    try:
        from ..services.chat.redis_link import RedisLink, redis_url_problem
        from ..services.chat.redis_network import RedisNetwork
        from ..services.chat.redis_state import RedisState
    except ImportError:
        raise click.ClickException(
            "--redis needs the redis package: pip install 'socketeer[redis]'"
        ) from None
    problem = redis_url_problem(url)
    if problem:
        raise click.BadParameter(problem, param_hint="--redis")
    link = RedisLink(url)
    return RedisState(link, lines, size), RedisNetwork(link, ttl)


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
    "--history-bytes",
    type=SizeType(),
    default=str(DEFAULT_HISTORY_BYTES // 1024) + "K",
    show_default=True,
    help="Bytes of history kept per room at most (the oldest lines go first).",
)
@click.option(
    "--state",
    metavar="DIR|none",
    help="Where the rooms' history is kept, so that it survives a restart (SQLite); "
    "none: in memory only.  [default: $XDG_DATA_HOME/socketeer/chat]",
)
@click.option(
    "--redis",
    metavar="URL",
    help="Be one chat with every `serve chat` given the same Redis "
    "(redis://[:PASSWORD@]HOST:PORT/DB, rediss:// for TLS); history is kept there.",
)
@click.option(
    "--redis-ttl",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_REDIS_TTL,
    show_default=True,
    help="Seconds a nickname stays taken after its process dies (with --redis).",
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
@click.option(
    "--max-rooms-per-member",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Rooms one member may be in at once.",
)
@click.option("--room", default="lobby", show_default=True, help="The room newcomers land in.")
@click.option(
    "--files",
    "files_endpoint",
    type=EndpointType(),
    default=None,
    help="Run a drop box for files between members here (a files share; /send, /accept).",
)
@click.option(
    "--files-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The drop box's directory, emptied at start.  [default: STATE/offers]",
)
@click.option(
    "--files-host",
    default=None,
    help="The host name members fetch from when --files listens on every address "
    "(default: this machine's name).",
)
@click.option(
    "--max-offer-size",
    type=SizeType(),
    default=size_text(DEFAULT_MAX_OFFER_SIZE),
    show_default=True,
    help="The largest file one offer may hold.",
)
@click.option(
    "--max-offers",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_OFFERS,
    show_default=True,
    help="Offers one member may have pending, as sender and as recipient.",
)
@click.option(
    "--max-offers-total",
    type=SizeType(),
    default=size_text(DEFAULT_MAX_OFFERS_TOTAL),
    show_default=True,
    help="Bytes all pending offers may hold together.",
)
@click.option(
    "--offer-ttl",
    type=SECONDS,
    default=DEFAULT_OFFER_TTL,
    show_default=True,
    help="Seconds an offer has to be uploaded, then again to be fetched.",
)
@USERS
@click.option(
    "--registered-only",
    is_flag=True,
    help="Only the nicknames of --users accounts, after their password.",
)
def serve_chat(
    options: ServeOptions,
    history: int,
    history_bytes: int,
    state: str | None,
    redis: str | None,
    redis_ttl: float,
    rate: float,
    burst: int,
    max_queue: int,
    max_queue_total: int,
    max_rooms: int,
    max_rooms_per_address: int,
    max_rooms_per_member: int,
    room: str,
    files_endpoint: Endpoint | None,
    files_dir: Path | None,
    files_host: str | None,
    max_offer_size: int,
    max_offers: int,
    max_offers_total: int,
    offer_ttl: float,
    users: Accounts | None,
    registered_only: bool,
) -> None:
    """Chat rooms that nc, telnet, `socketeer chat` and browsers can join.

    Browsers open the printed http:// address (the same port).

    Plain lines are said to your room; /join adds a room, /help lists the
    commands.  Lines longer than --max-message are refused with a notice.
    Members may stay silent as long as they like unless --idle-timeout is
    given.  The rooms' history is kept in --state and survives a restart.
    With --users, an account's nickname needs its password (/login NAME
    PASSWORD, or PASS PASSWORD before the nickname), and a /msg to one who
    is offline waits for their next login.  With --files, members send each
    other files through a drop box on that endpoint (socketeer chat: /send
    NICK PATH, /accept).  With --redis, every process given the same Redis
    (--workers, or other machines) is one chat.
    """
    if registered_only and users is None:
        raise click.UsageError("--registered-only needs --users FILE")
    if options.workers > 1 and redis is None:
        raise click.BadParameter(
            "chat keeps its rooms in one process; give --redis to spread it over several",
            param_hint="--workers",
        )
    if redis is not None and state is not None:
        raise click.BadParameter("with --redis the history is kept in Redis", param_hint="--state")
    try:
        settings = ChatSettings(
            default_room=room,
            history=history,
            history_bytes=history_bytes,
            rate=rate,
            burst=burst,
            max_line_length=options.max_message or ChatSettings.max_line_length,
            max_rooms=max_rooms,
            max_rooms_per_address=max_rooms_per_address,
            max_rooms_per_member=max_rooms_per_member,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--room") from None
    where = state or str(default_state_dir())
    network: ChatNetwork | None = None
    if redis is not None:
        kept, network = redis_chat(redis, redis_ttl, history, history_bytes)
    else:
        kept = chat_state(where, history, history_bytes)
    registry = Registry(users, registered_only) if users is not None else None
    dropbox = None
    if files_endpoint is not None:
        if options.workers > 1:
            raise click.BadParameter(
                "workers cannot share a drop box's port: give --files to a node with one"
                " worker (with --redis, members of every node may be offered files from it)",
                param_hint="--files",
            )
        if files_endpoint.transport not in ("tcp", "unix") or files_endpoint.tls:
            raise click.BadParameter(
                "the drop box listens on plain TCP or a Unix socket", param_hint="--files"
            )
        from ..services.chat.dropbox import DropBox  # the files service: only when it is used

        base = default_state_dir() if where == "none" else Path(where).expanduser()
        try:
            limits = OfferLimits(max_offer_size, max_offers, max_offers_total, offer_ttl)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--max-offer-size") from None
        directory = files_dir or base / "offers"
        try:
            dropbox = DropBox(directory, files_endpoint, limits, shown_host=files_host)
        except OSError as exc:
            raise click.BadParameter(
                f"{directory}: {exc.strerror or exc}", param_hint="--files-dir"
            ) from None
    service = ChatService(
        settings,
        max_queue=max_queue,
        max_queue_total=max_queue_total,
        state=kept,
        registry=registry,
        network=network,
        dropbox=dropbox,
    )
    run_server(service, options, browsable=True)


# --- the client -------------------------------------------------------------------------


@click.command("chat")
@click.argument("endpoint", type=ENDPOINT)
@click.option("-n", "--nick", help="Your nickname (default: --user, or your login name).")
@USER
@click.option(
    "--timeout",
    type=SECONDS,
    default=10.0,
    show_default=True,
    help="Seconds to connect, and for the server to show it is a chat server.",
)
@click.option("--no-reconnect", is_flag=True, help="Exit (status 1) when the connection drops.")
@click.option(
    "--downloads",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    help="Where files you /accept are saved.  [default: here]",
)
@click.option(
    "--plain",
    is_flag=True,
    help="Read lines from stdin, print lines as received, no colours "
    "(the default when stdin or stdout is not a terminal).",
)
@client_tls_options(alpn("chat"))
def chat_command(
    endpoint: Endpoint,
    nick: str | None,
    user: str | None,
    timeout: float,
    no_reconnect: bool,
    downloads: Path,
    plain: bool,
    tls: ClientTLS,
) -> None:
    """Join the chat at ENDPOINT as NICK.

    \b
    Type to talk to your room; /help lists the commands.  Up and down
    arrows recall what you typed.  /send NICK PATH offers a file, /accept
    saves one offered to you in --downloads.  Ctrl-D or /quit leaves (exit 0), Ctrl-C
    too (exit 130).  A dropped connection is retried with backoff.
    """
    if endpoint.transport == "udp":
        raise click.BadParameter("chat runs over TCP or Unix sockets", param_hint="ENDPOINT")
    user, password = credentials(user)
    nick = nick or user or _login_name()
    problem = nick_problem(nick)
    if problem:
        raise click.BadParameter(
            f'"{visible(nick)}" cannot be a nickname: {problem}', param_hint="--nick"
        )
    client = ChatClient(
        endpoint,
        nick,
        reconnect=not no_reconnect,
        connect_timeout=timeout,
        tls=tls,
        password=password,
    )
    terminal = sys.stdin.isatty() and sys.stdout.isatty() and not plain
    from .chat_terminal import run_plain, run_terminal  # prompt_toolkit: only when chatting

    code = loop.run(
        run_terminal(client, downloads) if terminal else run_plain(client, downloads),
        use_uvloop=not endpoint.tls,  # see run_server: TLS on asyncio's loop
    )
    if code:
        raise SystemExit(code)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise click.BadParameter("say who you are", param_hint="--nick") from None
