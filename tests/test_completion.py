"""Shell completion, enabled the way the README says, completes commands and services."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: A line of each shell's completion script, which asks the program in that shell's way.
SCRIPT_MARKS = {
    "bash": "_SOCKETEER_COMPLETE=bash_complete",
    "zsh": "#compdef socketeer",
    "fish": "_SOCKETEER_COMPLETE=fish_complete",
}


@pytest.fixture
def path_with_socketeer(tmp_path: Path) -> str:
    """A PATH on which ``socketeer`` is this checkout's command, as after installing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    command = bin_dir / "socketeer"
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m socketeer "$@"\n')
    command.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def readme_completion_commands() -> dict[str, str]:
    """Each shell's documented way to produce its completion script, from the README."""
    text = (ROOT / "README.md").read_text()
    found = re.findall(r"_SOCKETEER_COMPLETE=(\w+)_source socketeer", text)
    return {shell: f"_SOCKETEER_COMPLETE={shell}_source socketeer" for shell in found}


def complete(words: str, cword: int, path: str) -> list[str]:
    """Run the bash completion protocol directly: what the script asks the program."""
    env = {
        **os.environ,
        "PATH": path,
        "COMP_WORDS": words,
        "COMP_CWORD": str(cword),
        "_SOCKETEER_COMPLETE": "bash_complete",
    }
    result = subprocess.run(
        ["socketeer"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_readme_enables_completion_for_bash_zsh_and_fish(path_with_socketeer: str) -> None:
    commands = readme_completion_commands()
    assert set(commands) == set(SCRIPT_MARKS)
    for shell, command in commands.items():
        result = subprocess.run(
            ["sh", "-c", command],
            env={**os.environ, "PATH": path_with_socketeer},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert SCRIPT_MARKS[shell] in result.stdout, shell


def test_protocol_completes_subcommands_and_services(path_with_socketeer: str) -> None:
    assert complete("socketeer se", 1, path_with_socketeer) == ["plain,send", "plain,serve"]
    assert complete("socketeer serve ", 2, path_with_socketeer) == [
        "plain,chat",
        "plain,echo",
        "plain,files",
        "plain,greet",
        "plain,tftp",
    ]
    assert "plain,--framing" in complete("socketeer serve echo --fr", 3, path_with_socketeer)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_after_sourcing_the_readme_line(path_with_socketeer: str) -> None:
    """What a bash user gets on Tab, after the README's line in ~/.bashrc."""
    script = (
        'eval "$(_SOCKETEER_COMPLETE=bash_source socketeer)"\n'
        "COMP_WORDS=(socketeer serve ''); COMP_CWORD=2\n"
        "_socketeer_completion socketeer\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        env={**os.environ, "PATH": path_with_socketeer},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["chat", "echo", "files", "greet", "tftp"]
