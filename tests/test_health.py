"""serve --health: /healthz and /metrics, asked with curl; and --config files."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import (
    WAIT,
    ServeProcess,
    ServerProcess,
    assert_one_line_error,
    read_line,
    run_cli,
    wait_until,
)

curl_needed = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def health_endpoint(server: ServerProcess) -> str:
    assert server.proc.stdout is not None
    line = read_line(server.proc.stdout, time.monotonic() + WAIT).decode()
    assert line.startswith("health on "), line
    return line.removeprefix("health on ").strip()


def curl(url: str) -> tuple[int, str]:
    result = subprocess.run(
        ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", url],
        capture_output=True,
        timeout=WAIT,
        check=True,
    )
    body, _, code = result.stdout.decode().rpartition("\n")
    return int(code), body


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@curl_needed
def test_healthz_and_metrics_count_what_happened(serve_process: ServeProcess) -> None:
    server = serve_process(
        "serve", "greet", "127.0.0.1:0", "--health", "127.0.0.1:0", "--deny", "127.0.0.2"
    )
    where = health_endpoint(server)
    port = server.endpoints[0].port
    assert port is not None
    assert curl(f"http://{where}/healthz") == (200, "ok\n")
    with socket.create_connection(("127.0.0.1", port), WAIT) as s:
        s.sendall(b"ann\nbob\n")
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    with socket.create_connection(("127.0.0.1", port), WAIT, source_address=("127.0.0.2", 0)) as s:
        assert s.recv(10) == b""
    code, text = curl(f"http://{where}/metrics")
    assert code == 200
    got = samples(text)
    greet = (("service", "greet"),)
    assert got[("socketeer_connections_total", greet)] == 1
    assert got[("socketeer_connections_refused_total", (("reason", "access"), *greet))] == 1
    assert got[("socketeer_messages_total", greet)] == 2
    # as TCP counts: the end of stream (FIN) takes one byte of sequence space
    assert got[("socketeer_received_bytes_total", greet)] - len(b"ann\nbob\n") in (0, 1)
    sent = got[("socketeer_sent_bytes_total", greet)]
    assert sent - len(b"welcome!\nhello, ann!\nhello, bob!\n") in (0, 1)
    assert got[("socketeer_connections_open", greet)] == 0
    assert curl(f"http://{where}/nothing")[0] == 404


@curl_needed
def test_healthz_says_503_while_draining(serve_process: ServeProcess) -> None:
    server = serve_process(
        "serve", "greet", "127.0.0.1:0", "--health", "127.0.0.1:0", "--grace", "30"
    )
    where = health_endpoint(server)
    port = server.endpoints[0].port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), WAIT) as s:
        assert s.recv(100) == b"welcome!\n"
        server.proc.send_signal(signal.SIGTERM)
        # the session keeps the server in its grace period: draining, not gone
        wait_until(lambda: curl(f"http://{where}/healthz")[0] == 503, "503")
        assert curl(f"http://{where}/healthz") == (503, "draining\n")
    assert server.proc.wait(WAIT) == 0


def test_health_with_workers_is_a_usage_error() -> None:
    result = run_cli("serve", "greet", "127.0.0.1:0", "--health", "127.0.0.1:0", "--workers", "2")
    assert_one_line_error(result, 2, "")
    assert "run --health with one worker" in result.stderr.decode()


def test_a_config_file_sets_options_and_the_command_line_wins(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    config = tmp_path / "socketeer.toml"
    config.write_text(
        'endpoints = ["127.0.0.1:0"]\n'
        "max-conns-per-ip = 1\n"
        'deny = ["127.0.0.2"]\n'
        'encoding = "latin-1"\n'
    )
    server = serve_process("serve", "greet", "--config", str(config), "--max-conns-per-ip", "2")
    port = server.endpoints[0].port
    assert port is not None
    with (
        socket.create_connection(("127.0.0.1", port), WAIT) as one,
        socket.create_connection(("127.0.0.1", port), WAIT) as two,
    ):
        assert one.recv(100) == b"welcome!\n"
        assert two.recv(100) == b"welcome!\n", "the command line's 2, not the file's 1"
    with socket.create_connection(("127.0.0.1", port), WAIT, source_address=("127.0.0.2", 0)) as s:
        assert s.recv(10) == b""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max-conns = 'x'\n", "'x' is not a valid integer"),
        ("colour = 1\n", "'colour' is not an option of 'greet'"),
        ("= broken\n", "is not TOML"),
    ],
)
def test_a_bad_config_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = run_cli("serve", "greet", "--config", str(config))
    assert_one_line_error(result, 2, "")
    assert message in result.stderr.decode()
