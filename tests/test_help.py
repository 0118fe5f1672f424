"""Help texts and the README say what each command really does, with its real defaults."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from shares import TOKEN, ServeShare
from socketeer.cli import cli
from socketeer.cli.serve import SERVICE_DEFAULTS, ServiceDefaults, serve_group, size_text
from socketeer.framing import DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_LINE_LENGTH
from socketeer.service import Service
from socketeer.services import ChatService, EchoService, GreetService
from socketeer.services.chat import ChatSettings
from socketeer.services.files import FilesService
from socketeer.services.files.connection import MAX_REQUEST_SIZE
from socketeer.services.tftp.service import TftpService
from support import run_cli

README = Path(__file__).resolve().parent.parent / "README.md"
SERVICE_CLASSES: dict[str, type[Service]] = {
    "greet": GreetService,
    "echo": EchoService,
    "files": FilesService,
    "chat": ChatService,
    "tftp": TftpService,
}


def help_text(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def option(command: click.Command, name: str) -> click.Option:
    (found,) = [p for p in command.params if isinstance(p, click.Option) and p.name == name]
    return found


def test_top_level_help_names_every_command() -> None:
    described = help_text().split("Options:")[0]
    for service in serve_group.commands:
        assert re.search(rf"serve \S*\b{service}\b", described), service
    for name in cli.commands:
        assert re.search(rf"\b{name}\b", described), name
    assert "netcat modes" in described


@pytest.mark.parametrize("name", sorted(serve_group.commands))
def test_serve_help_is_true_for_the_service(name: str) -> None:
    defaults = SERVICE_DEFAULTS[name]
    command = serve_group.commands[name]
    service = SERVICE_CLASSES[name]
    assert option(command, "idle_timeout").default == defaults.idle_timeout
    assert option(command, "udp_rate").hidden is not service.datagrams
    assert defaults.datagrams is service.datagrams
    framing = [p for p in command.params if p.name == "framing"]
    if defaults.framing is None:
        assert not framing, "the protocol fixes the framing"
    else:
        assert defaults.framing == service.default_framing
    said = option(command, "max_message").help
    assert said == f"Largest message; default: {defaults.max_message}.", "from SERVICE_DEFAULTS"
    shown = " ".join(help_text("serve", name).split())
    assert f"default: {defaults.max_message.split()[0]}" in shown  # the size in force
    assert "udp" not in shown.lower() or service.datagrams
    assert "for files requests" not in shown


def test_the_default_message_limits_are_the_ones_in_force() -> None:
    assert SERVICE_DEFAULTS["greet"].max_message.startswith(size_text(DEFAULT_MAX_LINE_LENGTH))
    assert size_text(DEFAULT_MAX_FRAME_SIZE) in SERVICE_DEFAULTS["echo"].max_message
    assert SERVICE_DEFAULTS["files"].max_message.startswith(f"{size_text(MAX_REQUEST_SIZE)} ")
    assert SERVICE_DEFAULTS["chat"].max_message == (
        f"{size_text(ChatSettings.max_line_length)} a line"
    )


def limits_table(defaults: dict[str, ServiceDefaults]) -> str:
    rows = [
        "| service | `--framing` | `--idle-timeout` | `--max-message` | over UDP |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, d in defaults.items():
        idle = f"{d.idle_timeout:g}" + (" (never)" if not d.idle_timeout else "")
        rows.append(
            f"| {name} | {d.framing or 'its own protocol'} | {idle} | {d.max_message} "
            f"| {'yes' if d.datagrams else 'no'} |"
        )
    return "\n".join(rows)


def test_readme_limits_table_is_the_commands_defaults() -> None:
    text = README.read_text()
    marker = "<!-- limits: generated from socketeer.cli.serve.SERVICE_DEFAULTS"
    assert marker in text
    table = text.split(marker, 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]
    expected = limits_table(SERVICE_DEFAULTS)
    assert table == expected, f"README's limits table should read:\n{expected}"


@pytest.mark.parametrize("command", ["ls", "get"])
def test_read_commands_say_what_the_token_does_there(command: str) -> None:
    shown = " ".join(help_text(command).split())
    assert "Write token" not in shown
    assert "Reading needs none" in shown


def test_a_wrong_token_is_refused_even_for_a_read(serve_share: ServeShare) -> None:
    """What the read commands' help says about --token."""
    share = serve_share()
    assert run_cli("ls", str(share.endpoint)).returncode == 0
    assert run_cli("ls", "--token", TOKEN, str(share.endpoint)).returncode == 0
    wrong = run_cli("ls", "--token", "wrong", str(share.endpoint))
    assert wrong.returncode == 1
    assert "wrong token" in wrong.stderr.decode()


def test_a_bad_size_is_quoted_plainly() -> None:
    result = run_cli("serve", "echo", "--max-message", "lots")
    assert result.returncode == 2
    assert '"lots" is not a size' in result.stderr.decode()
