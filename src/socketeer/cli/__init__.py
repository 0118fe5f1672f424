"""The ``socketeer`` command line.  Nothing imports this package.

Exit codes: 0 success (and a server stopped by SIGINT/SIGTERM), 1 a runtime
failure (cannot bind, connection refused, timeout, the peer broke off),
2 a usage error (bad option, malformed endpoint), 130 interrupted client,
141 the reader of stdout went away (``| head``), as for ``cat``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from .. import __version__
from ..errors import SocketeerError
from ..visible import visible

__all__ = ["cli", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: The exit status of ``get ... -`` whose reader went away (128 + SIGPIPE, as for ``cat``).
EXIT_BROKEN_PIPE = 141

#: Each command and the module defining it: a command imports only what it needs, so
#: ``get`` starts without the chat's terminal or the servers.  ``serve`` takes every
#: module that adds a service to it.
COMMANDS = {
    "serve": (".serve", ".serve_files", ".tftp", ".chat"),
    "chat": (".chat",),
    "connect": (".netcat",),
    "listen": (".netcat",),
    "send": (".netcat",),
    "ls": (".files",),
    "get": (".files",),
    "put": (".files",),
    "mkdir": (".files",),
    "rm": (".files",),
    "passwd": (".login",),
}
_ATTRIBUTES = {"serve": "serve_group", "passwd": "passwd_command"}


class _LazyGroup(click.Group):
    """A group whose commands are imported when they are run (or listed in ``--help``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            modules = [importlib.import_module(name, __name__) for name in COMMANDS[cmd_name]]
            attribute = _ATTRIBUTES.get(cmd_name, f"{cmd_name}_command")
            self.add_command(getattr(modules[0], attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="socketeer")
def cli() -> None:
    """Socket servers and clients, from the command line.

    \b
    serve greet|echo|files|chat|tftp  run a server ('socketeer serve SERVICE --help')
    connect, listen, send        netcat modes: a socket to stdin and stdout
    ls, get, put, mkdir, rm      list, download, upload, delete on a files server
    chat                         join a chat server
    passwd                       make an account's entry for a users file (--users)

    \b
    Endpoints: HOST:PORT, :PORT, [::1]:PORT, tcp://HOST:PORT, udp://HOST:PORT,
    unix:///path/to.sock, tls://HOST:PORT.  Port 0 picks a free port.
    """


def _fail(message: str, code: int) -> NoReturn:
    # The message may carry a server's or a file's text: nothing in it reaches the terminal raw.
    click.echo(f"socketeer: error: {visible(message)}", err=True)
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
        where = exc.ctx.command_path if exc.ctx else "socketeer"
        hint = f" (see '{where} --help')"
        _fail(" ".join(exc.format_message().split()) + hint, EXIT_USAGE)
    except click.ClickException as exc:
        _fail(exc.format_message(), EXIT_FAILURE)
    except (click.Abort, KeyboardInterrupt):
        raise SystemExit(EXIT_INTERRUPTED) from None
    except SocketeerError as exc:
        _fail(str(exc), EXIT_FAILURE)
    except BrokenPipeError:
        # stdout went away (``| head``): stop quietly, like other filters.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(EXIT_BROKEN_PIPE) from None
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
