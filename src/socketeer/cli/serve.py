"""``socketeer serve SERVICE``: one subcommand per service, sharing the server's options."""

from __future__ import annotations

import functools
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from .. import loop
from ..datagram import DatagramLimits
from ..endpoint import Endpoint, parse_endpoint
from ..framing import FRAMINGS, Framing
from ..server import Server, ServerConfig, serve
from ..service import Service
from ..services import EchoService, GreetService
from ..workers import run_workers
from .params import ENCODING, ENDPOINT, SECONDS, SizeType, announce, encoding_problem, setup_logging

__all__ = ["ServeOptions", "run_server", "serve_group", "server_options"]

DEFAULT_ENDPOINT = "127.0.0.1:1234"


@dataclass(frozen=True)
class ServeOptions:
    """The options every ``serve`` subcommand takes."""

    endpoints: tuple[Endpoint, ...]
    framing: Framing | None
    max_conns: int
    max_conns_per_ip: int | None
    backlog: int | None
    udp_rate: float
    udp_burst: int
    idle_timeout: float
    max_message: int | None
    grace: float
    workers: int
    no_uvloop: bool
    quiet: bool
    log_level: str


_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.argument("endpoints", nargs=-1, type=ENDPOINT),
    click.option(
        "--max-conns",
        type=click.IntRange(min=1),
        default=10_000,
        show_default=True,
        help="Connections per process; more get a one-line refusal.",
    ),
    click.option(
        "--max-conns-per-ip",
        type=click.IntRange(min=1),
        default=None,
        help="Connections from one IP address; more get a one-line refusal (default: no limit).",
    ),
    click.option(
        "--backlog",
        type=click.IntRange(min=1),
        default=None,
        help="Connections the kernel queues before accepting (default: net.core.somaxconn).",
    ),
    click.option(
        "--udp-rate",
        type=click.FloatRange(min=0),
        default=DatagramLimits.rate,
        show_default=True,
        help="UDP replies a second to one source address (0 = no limit).",
    ),
    click.option(
        "--udp-burst",
        type=click.IntRange(min=1),
        default=DatagramLimits.burst,
        show_default=True,
        help="UDP replies one source address may get at once.",
    ),
    click.option(
        "--idle-timeout",
        type=SECONDS,
        default=300.0,
        show_default=True,
        help="Close sessions that sent no whole message for this long (seconds; 0 = never).",
    ),
    click.option(
        "--max-message",
        type=SizeType(),
        default=None,
        help="Largest message (default: 64K for lines, 16M for frames, 1M for files requests).",
    ),
    click.option(
        "--grace",
        type=SECONDS,
        default=5.0,
        show_default=True,
        help="Seconds sessions get to finish after SIGINT/SIGTERM.",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Processes sharing the port (SO_REUSEPORT).",
    ),
    click.option(
        "--no-uvloop",
        is_flag=True,
        help="Use asyncio's own event loop even if uvloop is installed.",
    ),
    click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only."),
    click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"]),
        default="info",
        show_default=True,
    ),
]
_FRAMING: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--framing", type=click.Choice(FRAMINGS), help="Message framing (default: the service's)."
)


def server_options(*, framing: bool = True) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Add ENDPOINT... and the server options; the command gets them as ``options``.

    ``framing=False`` for services whose protocol fixes the framing.
    """

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            names = ServeOptions.__dataclass_fields__
            shared = {name: kwargs.pop(name, None) for name in names}
            command(options=ServeOptions(**shared), **kwargs)

        decorated: Callable[..., Any] = wrapper
        for option in reversed([*_OPTIONS, *([_FRAMING] if framing else [])]):
            decorated = option(decorated)
        return decorated

    return decorate


def _raise_fd_limit() -> None:
    """Let one process hold as many connections as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_server(service: Service, options: ServeOptions, *, use_uvloop: bool = True) -> None:
    """Serve ``service`` as ``options`` say until SIGINT/SIGTERM.

    ``use_uvloop=False`` for services that need asyncio's own loop (zero-copy
    ``sendfile``); ``--no-uvloop`` turns it off for any service.
    """
    setup_logging(options.quiet, options.log_level)
    config = ServerConfig(
        framing=options.framing,
        max_message_size=options.max_message,
        max_conns=options.max_conns,
        max_conns_per_ip=options.max_conns_per_ip,
        backlog=options.backlog,
        udp_limits=DatagramLimits(rate=options.udp_rate, burst=options.udp_burst),
        idle_timeout=options.idle_timeout or None,
        grace=options.grace,
    )
    where = list(options.endpoints) or [parse_endpoint(DEFAULT_ENDPOINT)]
    if not service.datagrams and any(e.transport == "udp" for e in where):
        raise click.BadParameter(f"{service.name} does not run over UDP", param_hint="ENDPOINTS")
    _raise_fd_limit()
    use_uvloop = use_uvloop and not options.no_uvloop
    logging.getLogger("socketeer.server").debug("event loop: %s", loop.loop_name(use_uvloop))
    if options.workers > 1:
        code = run_workers(service, where, config, options.workers, announce, use_uvloop)
        raise SystemExit(code)
    loop.run(serve(Server(service, where, config), on_ready=announce), use_uvloop=use_uvloop)


@click.group("serve")
def serve_group() -> None:
    """Serve a service on every ENDPOINT (default 127.0.0.1:1234).

    Prints "listening on ENDPOINT" for each bound socket, then logs
    connections to stderr.  SIGINT/SIGTERM stop it gracefully (exit 0).
    """


@serve_group.command("greet")
@server_options()
@ENCODING
def serve_greet(options: ServeOptions, encoding: str) -> None:
    """welcome!, then hello, NAME! for each NAME, until exit."""
    try:
        service = GreetService(encoding)
    except LookupError as exc:
        raise encoding_problem(exc) from None
    run_server(service, options)


@serve_group.command("echo")
@server_options()
def serve_echo(options: ServeOptions) -> None:
    """Every message back to its sender (TCP, Unix and UDP)."""
    run_server(EchoService(), options)
