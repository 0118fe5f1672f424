"""``socketeer serve SERVICE``: one subcommand per service, sharing the server's options."""

from __future__ import annotations

import functools
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .. import loop
from ..access import AccessError, AccessSources, parse_network
from ..datagram import DatagramLimits
from ..endpoint import Endpoint, parse_endpoint
from ..framing import DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_LINE_LENGTH, FRAMINGS, Framing
from ..logs import announce_browser
from ..server import Server, ServerConfig, serve
from ..service import Service
from ..services import EchoService, GreetService
from ..services.chat import ChatSettings
from ..services.files.connection import MAX_CONTROL_BEFORE_HELLO, MAX_REQUEST_SIZE
from ..services.tftp.packets import MAX_BLKSIZE
from ..workers import run_workers
from .config import CONFIG
from .params import ENCODING, ENDPOINT, SECONDS, SizeType, announce, encoding_problem, setup_logging
from .tls import SERVER_TLS_OPTIONS, announce_fingerprint, server_tls

__all__ = [
    "SERVICE_DEFAULTS",
    "ServeOptions",
    "ServiceDefaults",
    "run_server",
    "serve_group",
    "server_options",
    "size_text",
]

DEFAULT_ENDPOINT = "127.0.0.1:1234"


def size_text(size: int) -> str:
    """A byte count the way ``--max-message`` takes it: ``64K``, ``16M``, ``1000``."""
    for unit, scale in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


@dataclass(frozen=True)
class ServiceDefaults:
    """Where the ``serve`` commands differ: each service's defaults, in one place.

    The commands' help and the README's limits table are checked against it.
    """

    #: The framing when ``--framing`` is not given; None: the protocol fixes it.
    framing: Framing | None
    #: ``--idle-timeout`` when not given (seconds; 0 = never).
    idle_timeout: float
    #: What ``--max-message`` limits when not given, in words.
    max_message: str
    #: Whether the service runs over UDP (so ``--udp-rate`` and ``--udp-burst`` apply).
    datagrams: bool


_STREAM_MESSAGES = (
    f"{size_text(DEFAULT_MAX_LINE_LENGTH)} (line and auto framing), "
    f"{size_text(DEFAULT_MAX_FRAME_SIZE)} (raw, length)"
)
SERVICE_DEFAULTS: dict[str, ServiceDefaults] = {
    "greet": ServiceDefaults(GreetService.default_framing, 300.0, _STREAM_MESSAGES, True),
    "echo": ServiceDefaults(EchoService.default_framing, 300.0, _STREAM_MESSAGES, True),
    "files": ServiceDefaults(
        None,
        300.0,
        f"{size_text(MAX_REQUEST_SIZE)} a request "
        f"({size_text(MAX_CONTROL_BEFORE_HELLO)} before the hello)",
        False,
    ),
    "chat": ServiceDefaults(None, 0.0, f"{size_text(ChatSettings.max_line_length)} a line", False),
    "tftp": ServiceDefaults(None, 0.0, f"{size_text(MAX_BLKSIZE + 4)} a packet", True),
}


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
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    allow_file: tuple[Path, ...] = ()
    deny_file: tuple[Path, ...] = ()
    proxy_protocol: bool = False
    health: Endpoint | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None

    @property
    def access(self) -> AccessSources:
        """Where the allow and deny lists come from."""
        return AccessSources(self.allow, self.deny, self.allow_file, self.deny_file)


class CidrType(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """A network (``10.0.0.0/8``) or one address, checked as it is typed."""

    name = "cidr"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            parse_network(str(value))
        except AccessError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


_RULES_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.argument("endpoints", nargs=-1, type=ENDPOINT),
    CONFIG,
    click.option(
        "--allow",
        type=CidrType(),
        multiple=True,
        help="Take clients only from this network (CIDR; repeatable).",
    ),
    click.option(
        "--deny",
        type=CidrType(),
        multiple=True,
        help="Refuse clients from this network (CIDR; repeatable); wins over --allow.",
    ),
    click.option(
        "--allow-file",
        type=_RULES_FILE,
        multiple=True,
        help="--allow each CIDR in this file (one a line, # comments; reread on SIGHUP).",
    ),
    click.option(
        "--deny-file",
        type=_RULES_FILE,
        multiple=True,
        help="--deny each CIDR in this file (one a line, # comments; reread on SIGHUP).",
    ),
    click.option(
        "--proxy-protocol",
        is_flag=True,
        help="Connections start with a PROXY header (v1 or v2) from a load balancer.",
    ),
    click.option(
        "--health",
        type=ENDPOINT,
        default=None,
        help="Serve GET /healthz and /metrics (Prometheus) over HTTP here.",
    ),
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
        help="Largest message (default: the service's).",
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
    *SERVER_TLS_OPTIONS,
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


def run_server(
    service: Service,
    options: ServeOptions,
    *,
    use_uvloop: bool = True,
    browsable: bool = False,
) -> None:
    """Serve ``service`` as ``options`` say until SIGINT/SIGTERM.

    ``use_uvloop=False`` for services that need asyncio's own loop (zero-copy
    ``sendfile``); ``--no-uvloop`` turns it off for any service.  Once listening it
    prints where, the TLS fingerprint, and (``browsable``) the address to open
    in a browser.
    """
    setup_logging(options.quiet, options.log_level)
    where = list(options.endpoints) or [parse_endpoint(DEFAULT_ENDPOINT)]
    tls = server_tls(where, options.tls_cert, options.tls_key, options.tls_client_ca)
    config = ServerConfig(
        framing=options.framing,
        max_message_size=options.max_message,
        max_conns=options.max_conns,
        max_conns_per_ip=options.max_conns_per_ip,
        backlog=options.backlog,
        udp_limits=DatagramLimits(rate=options.udp_rate, burst=options.udp_burst),
        idle_timeout=options.idle_timeout or None,
        grace=options.grace,
        access=options.access,
        proxy_protocol=options.proxy_protocol,
        health=options.health,
        tls=tls,
    )
    try:
        options.access.load()
    except AccessError as exc:
        raise click.UsageError(str(exc)) from None
    if options.health is not None:
        if options.health.transport == "udp":
            raise click.BadParameter("HTTP runs over TCP or a Unix socket", param_hint="--health")
        if options.workers > 1:
            raise click.BadParameter(
                "one process answers for its own counts: run --health with one worker",
                param_hint="--health",
            )
    if not service.datagrams and any(e.transport == "udp" for e in where):
        raise click.BadParameter(f"{service.name} does not run over UDP", param_hint="ENDPOINTS")
    _raise_fd_limit()
    # uvloop 0.23's TLS stalls handshakes that negotiate ALPN or fail: TLS runs on asyncio's.
    use_uvloop = use_uvloop and not options.no_uvloop and tls is None
    logging.getLogger("socketeer.server").debug("event loop: %s", loop.loop_name(use_uvloop))

    server = Server(service, where, config)

    def ready(endpoints: list[Endpoint]) -> None:
        announce(endpoints)
        announce_fingerprint(tls)
        if browsable:
            announce_browser(endpoints)
        for endpoint in server.health_endpoints:
            click.echo(f"health on {endpoint}")

    if options.workers > 1:
        code = run_workers(service, where, config, options.workers, ready, use_uvloop)
        raise SystemExit(code)
    loop.run(serve(server, on_ready=ready), use_uvloop=use_uvloop)


class _ServeGroup(click.Group):
    """``serve``: each service's command gets its own defaults and help from SERVICE_DEFAULTS."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(cmd, name)
        defaults = SERVICE_DEFAULTS.get(name or cmd.name or "")
        if defaults is not None:
            _describe(cmd, defaults)


def _describe(command: click.Command, defaults: ServiceDefaults) -> None:
    """Make the shared server options of ``command`` true for its service."""
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        if param.name == "idle_timeout":
            param.default = defaults.idle_timeout
        elif param.name == "max_message":
            param.help = f"Largest message; default: {defaults.max_message}."
        elif param.name == "framing":
            param.help = f"Message framing (default: {defaults.framing})."
        elif param.name in ("udp_rate", "udp_burst"):
            param.hidden = not defaults.datagrams


@click.group("serve", cls=_ServeGroup)
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
