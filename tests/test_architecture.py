"""Guards on the layering: the protocol core stays sans-IO, and nothing imports the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import socketeer

PACKAGE_DIR = Path(socketeer.__file__).resolve().parent

SANS_IO = [
    "socketeer.framing",
    "socketeer.endpoint",
    "socketeer.errors",
    "socketeer.service",
    "socketeer.visible",
    "socketeer.host",
    "socketeer.addresses",
    "socketeer.access",
    "socketeer.proxy",
    "socketeer.stats",
    "socketeer.idle",
    "socketeer.services.files.buffers",
    "socketeer.http.rawbody",
    "socketeer.ratelimit",
    "socketeer.datagram",
    "socketeer.services.tftp.packets",
    "socketeer.services.tftp.transfer",
    "socketeer.services.tftp.client",
    "socketeer.throttle",
    "socketeer.accounts",
    "socketeer.passwords",
    "socketeer.recent_logins",
    "socketeer.transcode",
    "socketeer.conversation",
    "socketeer.quantity",
    "socketeer.services.greet",
    "socketeer.services.echo",
    "socketeer.services.files.messages",
    "socketeer.services.files.connection",
    "socketeer.services.files.plain",
    "socketeer.services.files.paths",
    "socketeer.services.files.hashes",
    "socketeer.services.chat.backoff",
    "socketeer.services.chat.network",
    "socketeer.services.chat.commands",
    "socketeer.services.chat.events",
    "socketeer.services.chat.history",
    "socketeer.services.chat.incoming",
    "socketeer.services.chat.lines",
    "socketeer.services.chat.logins",
    "socketeer.services.chat.names",
    "socketeer.services.chat.opening",
    "socketeer.services.chat.websocket",
    "socketeer.services.chat.offers",
    "socketeer.services.chat.protocol",
    "socketeer.services.chat.rendering",
    "socketeer.services.chat.room",
    "socketeer.http.access",
    "socketeer.http.detect",
    "socketeer.http.listing",
    "socketeer.http.origins",
    "socketeer.http.targets",
    "socketeer.http.validators",
    "socketeer.known_hosts",
    "socketeer.state",
    "socketeer.services.chat.state",
]
# Modules that do I/O, wait on a clock or run an event loop.
IO_MODULES = {"asyncio", "socket", "ssl", "selectors", "time"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path:
    path = PACKAGE_DIR.parent.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imported_modules(source: str, importer: str, is_package: bool = False) -> set[str]:
    """Every module ``importer``'s source imports, anywhere in it, with full dotted names.

    ``from X import Y`` counts as importing X and, since Y may be a submodule, X.Y.
    Relative imports are resolved against ``importer``.
    """
    package = importer if is_package else importer.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            found.add(origin)
            found.update(f"{origin}.{alias.name}" for alias in node.names)
    return found


def imports_of(name: str) -> set[str]:
    path = module_path(name)
    return imported_modules(path.read_text(), name, path.name == "__init__.py")


def top_levels(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_import_collector_sees_every_form() -> None:
    source = """
import os, time
import asyncio.subprocess as sp
from socket import socket
from . import cli
from .cli import main
from .. import loop
def later():
    import selectors
"""
    found = imported_modules(source, "socketeer.services.x")
    assert top_levels(found) >= {"os", "time", "asyncio", "socket", "selectors"}
    assert "socketeer.services.cli" in found
    assert "socketeer.services.cli.main" in found
    assert "socketeer.loop" in found
    assert "socketeer.cli" in imported_modules("from . import cli", "socketeer", is_package=True)
    assert "socketeer.cli" in imported_modules("from .cli import main", "socketeer.workers")


@pytest.mark.parametrize("name", SANS_IO)
def test_sans_io_modules_do_no_io(name: str) -> None:
    assert module_path(name).is_file()
    forbidden = top_levels(imports_of(name)) & IO_MODULES
    assert not forbidden, f"{name} imports {sorted(forbidden)}"


@pytest.mark.parametrize("name", SANS_IO)
def test_sans_io_modules_import_only_sans_io_socketeer_modules(name: str) -> None:
    """A sans-IO module importing, say, socketeer.session would pull asyncio in with it."""
    internal = {m for m in imports_of(name) if m.split(".")[0] == "socketeer"}
    modules = {m for m in internal if module_path(m).is_file()}
    assert modules <= set(SANS_IO) - {name}


def all_modules() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def in_cli(name: str) -> bool:
    return name == "socketeer.cli" or name.startswith("socketeer.cli.")


def test_package_is_where_expected() -> None:
    names = {module_name(path) for path in all_modules()}
    assert {*SANS_IO, "socketeer", "socketeer.cli", "socketeer.__main__"} <= names


@pytest.mark.parametrize(
    "path",
    [p for p in all_modules() if p.name != "__main__.py" and not in_cli(module_name(p))],
    ids=module_name,
)
def test_nothing_imports_the_cli(path: Path) -> None:
    name = module_name(path)
    found = imported_modules(path.read_text(), name, path.name == "__init__.py")
    assert not {m for m in found if in_cli(m)}


def test_main_module_runs_the_cli() -> None:
    main = PACKAGE_DIR / "__main__.py"
    assert "socketeer.cli" in imported_modules(main.read_text(), "socketeer.__main__")


@pytest.mark.parametrize("name", SANS_IO)
def test_importing_a_sans_io_module_loads_no_event_loop(name: str) -> None:
    """Run in a fresh interpreter: the package's own imports count too."""
    watched = sorted(IO_MODULES)
    probe = (
        f"import sys; before = set(sys.modules); import {name}; "
        f"print(sorted(m for m in {watched!r} if m in sys.modules and m not in before))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "[]", f"importing {name} loads {result.stdout.strip()}"
