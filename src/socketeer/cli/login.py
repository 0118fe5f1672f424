"""Accounts on the command line: ``--users`` for servers, ``--user`` for clients, ``passwd``.

A client's password never comes from the command line, where other users
see it (``ps``): it is read from ``$SOCKETEER_PASSWORD``, or asked for on
the terminal.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..passwords import DEFAULT_LOG_N, hash_password
from ..visible import visible
from .params import USER_META

if TYPE_CHECKING:  # the accounts (and the chat's names) load only where they are used
    from ..accounts import Accounts

__all__ = ["PASSWORD_ENV", "USER", "USERS", "credentials", "passwd_command"]

PASSWORD_ENV = "SOCKETEER_PASSWORD"
#: The longest password ``passwd`` reads from stdin.
MAX_PASSWORD = 4096


def _load_users(ctx: click.Context, param: click.Parameter, value: Path | None) -> Accounts | None:
    if value is None:
        return None
    from ..accounts import UsersFileError, read_users

    try:
        return read_users(value)
    except UsersFileError as exc:
        raise click.BadParameter(visible(str(exc)), ctx, param) from None


USERS: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--users",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_load_users,
    default=None,
    metavar="FILE",
    help="Accounts (TOML; see docs/accounts.md): clients log in with --user.",
)
USER: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--user",
    default=None,
    metavar="NAME",
    help=f"Log in as NAME (or USER@HOST:PORT); password from ${PASSWORD_ENV} or asked for.",
)


def credentials(user: str | None) -> tuple[str | None, str | None]:
    """The user to log in as (``--user``, or ``USER@`` in the endpoint) and the password.

    The password is ``$SOCKETEER_PASSWORD``, or asked for on the terminal;
    with neither, a usage error.
    """
    ctx = click.get_current_context()
    user = user or ctx.meta.get(USER_META)
    if not user:
        return None, None
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not _has_terminal():
            raise click.UsageError(
                f"a password for {visible(user)} is needed: set ${PASSWORD_ENV} "
                "(there is no terminal to ask on)"
            )
        password = getpass.getpass(f"password for {visible(user)}: ")
    return user, password


def _has_terminal() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


@click.command("passwd")
@click.argument("name", required=False)
@click.option(
    "--cost",
    type=click.IntRange(10, 20),
    default=DEFAULT_LOG_N,
    show_default=True,
    help="scrypt's cost as a power of two (each step doubles time and memory).",
)
def passwd_command(name: str | None, cost: int) -> None:
    """Print a users-file entry for NAME (default: your login name) with a new password.

    \b
    On a terminal it asks for the password twice; otherwise it reads one
    line from stdin:
      socketeer passwd alice >> users.toml
      printf '%s\\n' "$PW" | socketeer passwd alice >> users.toml
    Add the account's rights below its entry (see docs/accounts.md).
    """
    from ..accounts import account_name_problem, users_entry

    name = name or _login_name()
    problem = account_name_problem(name)
    if problem:
        raise click.BadParameter(f'"{visible(name)}": {problem}', param_hint="NAME")
    if sys.stdin.isatty():
        password = getpass.getpass(f"new password for {name}: ")
        if getpass.getpass("again: ") != password:
            raise click.UsageError("the two passwords differ")
    else:
        line = sys.stdin.readline(MAX_PASSWORD + 2)
        password = line.removesuffix("\n").removesuffix("\r")
        if len(password) > MAX_PASSWORD:
            raise click.UsageError(f"a password has at most {MAX_PASSWORD} characters")
    if not password:
        raise click.UsageError("a password cannot be empty")
    click.echo(users_entry(name, hash_password(password, log_n=cost)), nl=False)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise click.BadParameter("say whose password it is", param_hint="NAME") from None
