"""Every Python example in the README runs, against a real server on a free port.

Client examples print what their ``# comments`` say; server examples print
``listening on ...``, answer a client and log the connection; and the ports
the README's servers use do not collide when a reader follows it in order.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shares import TOKEN, ServeShare
from socketeer import Connection, parse_endpoint
from support import WAIT, ServeInThread, read_line

README = Path(__file__).resolve().parent.parent / "README.md"


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.M | re.S)


PYTHON = code_blocks("python")
SERVERS = [code for code in PYTHON if "serve(" in code]
FILES_CLIENTS = [code for code in PYTHON if "FilesClient" in code]
CLIENTS = [code for code in PYTHON if code not in SERVERS + FILES_CLIENTS]
#: What to say to each example server, and what it must answer.
CONVERSATIONS = {
    "upper": (b"rose\n", {b"ROSE\n"}),
    "lookup": (b"localhost\n", {b"127.0.0.1\n", b"::1\n"}),
}


def ports(text: str) -> list[int]:
    return [int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", text)]


def run_python(code: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, timeout=WAIT, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_every_python_example_is_run_by_a_test() -> None:
    assert PYTHON
    assert len(SERVERS) == len(CONVERSATIONS)
    assert CLIENTS
    assert FILES_CLIENTS


def test_the_readmes_servers_do_not_take_each_others_ports() -> None:
    """Following the README in order, no example server finds its port taken."""
    served = [
        port
        for block in code_blocks("console") + code_blocks("sh")
        for line in block.splitlines()
        if "socketeer serve" in line
        for port in ports(line)
    ]
    examples = [port for code in SERVERS for port in set(ports(code))]
    assert len(set(examples)) == len(examples)
    assert not set(examples) & set(served)
    services: dict[int, set[str]] = {}
    for block in code_blocks("console") + code_blocks("sh"):
        for service, port in re.findall(r"socketeer serve (\w+) .*?127\.0\.0\.1:(\d+)", block):
            if port != "0":
                services.setdefault(int(port), set()).add(service)
    shared = {port: names for port, names in services.items() if len(names) > 1}
    assert not shared, f"one port, two services (address already in use): {shared}"


@pytest.mark.parametrize("code", CLIENTS)
def test_client_example_prints_what_its_comments_say(
    code: str, serve_in_thread: ServeInThread, tmp_path: Path
) -> None:
    _, (endpoint,) = serve_in_thread("greet")
    expected = re.findall(r"print\(.*\)\s+# (.*)", code)
    assert expected
    out = run_python(code.replace("127.0.0.1:1234", str(endpoint)), tmp_path)
    assert out.splitlines() == expected


@pytest.mark.parametrize("code", FILES_CLIENTS)
def test_files_example_lists_downloads_and_uploads(
    code: str, serve_share: ServeShare, tmp_path: Path
) -> None:
    share = serve_share()
    (share.root / "notes.txt").write_text("notes\n")
    (share.root / "photos").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "report.pdf").write_bytes(b"%PDF-1.7\n")
    assert f'token="{TOKEN}"' in code
    out = run_python(code.replace("127.0.0.1:9000", str(share.endpoint)), work)
    assert "notes.txt file 6" in out.splitlines()
    assert (work / "notes.txt").read_text() == "notes\n"
    assert (share.root / "photos" / "report.pdf").read_bytes() == b"%PDF-1.7\n"


@pytest.mark.parametrize("code", SERVERS)
def test_server_example_announces_answers_and_logs(code: str, tmp_path: Path) -> None:
    (name,) = re.findall(r"""name\s*=\s*"(\w+)\"""", code)
    said, answers = CONVERSATIONS[name]
    proc = subprocess.Popen(
        [sys.executable, "-c", re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:0", code)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = read_line(proc.stdout, time.monotonic() + WAIT).decode()
        assert line.startswith("listening on 127.0.0.1:"), line
        endpoint = parse_endpoint(line.split()[-1])
        with Connection.connect(endpoint, timeout=WAIT) as conn:
            conn.send(said)
            assert conn.recvuntil(b"\n") in answers
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err.decode()
    assert "INFO connection from 127.0.0.1:" in err.decode()
