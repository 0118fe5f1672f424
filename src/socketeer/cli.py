"""The ``socketeer`` command line.  Nothing imports this module.

Exit codes: 0 success (and a server stopped by SIGINT/SIGTERM), 1 a runtime
failure (cannot bind, connection refused, timeout, the peer broke off),
2 a usage error (bad option, malformed endpoint), 130 interrupted client.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, NoReturn

import click

from . import __version__, loop, netcat
from .endpoint import Endpoint, Transport, parse_endpoint
from .errors import EndpointError, SocketeerError
from .framing import FRAMINGS, Framing
from .server import Server, ServerConfig, serve
from .service import TextCodec
from .services import SERVICES, make_service
from .workers import run_workers

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_ENDPOINT = "127.0.0.1:1234"


class EndpointType(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """An endpoint as users type it (see :mod:`socketeer.endpoint`)."""

    name = "endpoint"

    def __init__(self, default_transport: Transport = "tcp") -> None:
        self.default_transport: Transport = default_transport

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Endpoint:
        if isinstance(value, Endpoint):
            return value
        try:
            return parse_endpoint(str(value), self.default_transport)
        except EndpointError as exc:
            self.fail(str(exc), param, ctx)


class SizeType(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """A byte count: ``65536``, ``64K``, ``16M``, ``1G``."""

    name = "size"
    _UNITS: ClassVar[dict[str, int]] = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1:] if text[-1:] in self._UNITS else ""
        number = text[: len(text) - len(unit)]
        if not number.isdigit() or int(number) == 0:
            self.fail(f"{value!r} is not a size (examples: 65536, 64K, 16M)", param, ctx)
        return int(number) * self._UNITS[unit]


ENDPOINT = EndpointType()
SECONDS = click.FloatRange(min=0)
ENCODING = click.option(
    "--encoding", default="utf-8", show_default=True, help="Text encoding, e.g. gbk."
)


def _encoding_problem(exc: LookupError) -> click.BadParameter:
    return click.BadParameter(str(exc), param_hint="--encoding")


def _setup_logging(quiet: bool, level: str) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )


def _raise_fd_limit() -> None:
    """Let one process hold as many connections as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _announce(endpoints: Sequence[Endpoint], stream: Any = None) -> None:
    for endpoint in endpoints:
        click.echo(f"listening on {endpoint}", file=stream)
    (stream or sys.stdout).flush()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="socketeer")
def cli() -> None:
    """Socket servers and clients: greet, echo, and netcat modes.

    \b
    Endpoints: HOST:PORT, :PORT, [::1]:PORT, tcp://HOST:PORT, udp://HOST:PORT,
    unix:///path/to.sock.  Port 0 picks a free port.
    """


@cli.command("serve")
@click.argument("service", type=click.Choice(sorted(SERVICES)))
@click.argument("endpoints", nargs=-1, type=ENDPOINT)
@click.option(
    "--framing", type=click.Choice(FRAMINGS), help="Message framing (default: the service's)."
)
@ENCODING
@click.option(
    "--max-conns",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Connections per process; more get a one-line refusal.",
)
@click.option(
    "--idle-timeout",
    type=SECONDS,
    default=300.0,
    show_default=True,
    help="Close sessions silent this long (seconds; 0 = never).",
)
@click.option(
    "--max-message",
    type=SizeType(),
    default=None,
    help="Largest message (default: 64K for lines, 16M for frames).",
)
@click.option(
    "--grace",
    type=SECONDS,
    default=5.0,
    show_default=True,
    help="Seconds sessions get to finish after SIGINT/SIGTERM.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes sharing the port (SO_REUSEPORT).",
)
@click.option(
    "--no-uvloop", is_flag=True, help="Use asyncio's own event loop even if uvloop is installed."
)
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve_command(
    service: str,
    endpoints: tuple[Endpoint, ...],
    framing: Framing | None,
    encoding: str,
    max_conns: int,
    idle_timeout: float,
    max_message: int | None,
    grace: float,
    workers: int,
    no_uvloop: bool,
    quiet: bool,
    log_level: str,
) -> None:
    """Serve SERVICE (greet or echo) on every ENDPOINT (default 127.0.0.1:1234).

    Prints "listening on ENDPOINT" for each bound socket, then logs
    connections to stderr.  SIGINT/SIGTERM stop it gracefully (exit 0).
    """
    _setup_logging(quiet, log_level)
    try:
        chosen = make_service(service, encoding)
    except LookupError as exc:
        raise _encoding_problem(exc) from None
    config = ServerConfig(
        framing=framing,
        max_message_size=max_message,
        max_conns=max_conns,
        idle_timeout=idle_timeout or None,
        grace=grace,
    )
    where = list(endpoints) or [parse_endpoint(DEFAULT_ENDPOINT)]
    if not chosen.datagrams and any(e.transport == "udp" for e in where):
        raise click.BadParameter(f"{service} does not run over UDP", param_hint="ENDPOINTS")
    _raise_fd_limit()
    use_uvloop = not no_uvloop
    logging.getLogger("socketeer.server").debug("event loop: %s", loop.loop_name(use_uvloop))
    if workers > 1:
        code = run_workers(chosen, where, config, workers, _announce, use_uvloop)
        raise SystemExit(code)
    loop.run(serve(Server(chosen, where, config), on_ready=_announce), use_uvloop=use_uvloop)


@cli.command("connect")
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


@cli.command("listen")
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
            on_ready=lambda eps: _announce(eps, sys.stderr),
            on_event=on_event,
        )
    )


@cli.command("send")
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
        raise _encoding_problem(exc) from None
    netcat.send_messages(
        endpoint,
        messages,
        framing=framing,
        encoding=encoding,
        timeout=timeout,
        greeting_wait=greeting_wait,
        show=click.echo,
    )


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"socketeer: error: {message}", err=True)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line; every failure ends in one line on stderr and an exit code."""
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="socketeer",
            standalone_mode=False,
        )
    except click.exceptions.NoArgsIsHelpError as exc:
        # ``socketeer`` or ``socketeer serve`` alone: show the help, not an error line.
        click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message(), err=True)
        raise SystemExit(EXIT_USAGE) from None
    except click.UsageError as exc:
        hint = (
            f" (see 'socketeer {exc.ctx.info_name if exc.ctx and exc.ctx.parent else ''} --help')"
        )
        _fail(" ".join(exc.format_message().split()) + hint.replace("  ", " "), EXIT_USAGE)
    except click.ClickException as exc:
        _fail(exc.format_message(), EXIT_FAILURE)
    except (click.Abort, KeyboardInterrupt):
        raise SystemExit(EXIT_INTERRUPTED) from None
    except SocketeerError as exc:
        _fail(str(exc), EXIT_FAILURE)
    except BrokenPipeError:
        # stdout went away (``| head``): stop quietly, like other filters.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(EXIT_FAILURE) from None
    except OSError as exc:
        _fail(str(exc), EXIT_FAILURE)
    except Exception as exc:
        if os.environ.get("SOCKETEER_DEBUG"):
            raise
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (set SOCKETEER_DEBUG=1 for details)",
            EXIT_FAILURE,
        )
    raise SystemExit(EXIT_OK)
