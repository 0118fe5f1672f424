"""``--config FILE``: a command's options from a TOML file; options on the command line win.

The keys are the options' long names, with or without the leading dashes
(``max-conns = 100``, ``allow = ["10.0.0.0/8"]``, ``proxy-protocol = true``),
plus ``endpoints`` (a list) and the command's own arguments by name
(``directory`` for ``serve files``).  The file's values become the
command's defaults (click's ``default_map``), so anything given on the
command line replaces them.  An unknown key, a file that cannot be read or
is not TOML is a usage error (exit 2) naming the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import click

__all__ = ["CONFIG", "load_config"]


def _names(command: click.Command) -> dict[str, str]:
    """Each key a file may use for ``command``, to the parameter's name."""
    names: dict[str, str] = {}
    for param in command.params:
        if param.name is None or param.name in ("config", "help"):
            continue
        names[param.name] = param.name
        names[param.name.replace("_", "-")] = param.name
        for option in getattr(param, "opts", []):
            if option.startswith("--"):
                names[option[2:]] = param.name
    return names


def load_config(path: Path, command: click.Command) -> dict[str, Any]:
    """The ``default_map`` for ``command`` from the TOML file at ``path``."""
    try:
        with path.open("rb") as file:
            table = tomllib.load(file)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path}: {exc.strerror}", param_hint="--config"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path} is not TOML: {exc}", param_hint="--config") from None
    names = _names(command)
    defaults: dict[str, Any] = {}
    for key, value in table.items():
        name = names.get(key.removeprefix("--"))
        if name is None:
            raise click.BadParameter(
                f"{path}: {key!r} is not an option of '{command.name}'", param_hint="--config"
            )
        defaults[name] = value
    return defaults


def _apply(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.default_map = {**(ctx.default_map or {}), **load_config(value, ctx.command)}


CONFIG = click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=_apply,
    help="Read options from this TOML file (the same names; the command line wins).",
)
