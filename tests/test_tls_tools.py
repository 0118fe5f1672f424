"""TLS against tools nobody here wrote: openssl s_client/s_server, socat, ncat."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from support import WAIT, ServeProcess, ServerProcess, read_line, run_cli
from tls_support import Certificates, make_certificates

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "certs")


def serve_tls(serve_process: ServeProcess, *args: str) -> tuple[ServerProcess, int, str]:
    """``socketeer serve ARGS tls://127.0.0.1:0``: the process, its port, its fingerprint line."""
    process = serve_process("serve", *args, "tls://127.0.0.1:0")
    assert process.proc.stdout is not None
    line = read_line(process.proc.stdout, time.monotonic() + WAIT).decode().strip()
    return process, process.endpoints[0].port, line


def run(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, input=data, capture_output=True, timeout=WAIT, check=False)


def test_the_printed_fingerprint_is_openssls_and_survives_a_restart(
    serve_process: ServeProcess, state_home: Path
) -> None:
    first, _, line = serve_tls(serve_process, "greet")
    assert line.startswith("tls fingerprint sha256 ")
    (cert,) = (state_home / "socketeer" / "tls").glob("*.crt")
    shown = run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)], b"")
    assert shown.stdout.decode().strip() == "sha256 Fingerprint=" + line.split()[-1]
    first.stop()
    _, _, again = serve_tls(serve_process, "greet")
    assert again == line


def test_openssl_s_client_talks_to_greet_and_chat(
    serve_process: ServeProcess, certs: Certificates
) -> None:
    tls = ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]
    _, port, _ = serve_tls(serve_process, "greet", *tls)
    client = ["openssl", "s_client", "-quiet", "-connect", f"127.0.0.1:{port}"]
    greet = run([*client, "-CAfile", str(certs.ca), "-alpn", "socketeer-greet/1"], b"ann\nexit\n")
    assert b"welcome!\nhello, ann!\n" in greet.stdout, greet.stderr
    _, port, _ = serve_tls(serve_process, "chat", *tls)
    chat = run(
        [
            "openssl",
            "s_client",
            "-quiet",
            "-connect",
            f"127.0.0.1:{port}",
            "-CAfile",
            str(certs.ca),
        ],
        b"/nick bea\n/quit\n",
    )
    assert b"bea" in chat.stdout, chat.stderr


def test_old_protocol_versions_from_openssl_are_refused(serve_process: ServeProcess) -> None:
    process, port, _ = serve_tls(serve_process, "greet")
    for version in ("-tls1", "-tls1_1"):
        old = run(
            [
                "openssl",
                "s_client",
                version,
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
                "-connect",
                f"127.0.0.1:{port}",
            ],
            b"",
        )
        assert b"welcome!" not in old.stdout
    modern = run(["openssl", "s_client", "-quiet", "-connect", f"127.0.0.1:{port}"], b"exit\n")
    assert b"welcome!" in modern.stdout
    process.stop()
    assert process.stderr().count("no TLS version in common") == 2


@pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat")
def test_socat_openssl_against_echo(serve_process: ServeProcess) -> None:
    _, port, line = serve_tls(serve_process, "echo", "--framing", "line")
    fp = line.split()[-1]
    echoed = run(["socat", "-T2", "-", f"OPENSSL:127.0.0.1:{port},verify=0"], b"over socat\n")
    assert echoed.stdout == b"over socat\n", echoed.stderr
    # socketeer's own client pins the same certificate.
    sent = run_cli("send", f"tls://127.0.0.1:{port}", "pinned", "--tls-fingerprint", fp.lower())
    assert sent.stdout == b"pinned\n", sent.stderr


@pytest.mark.skipif(shutil.which("ncat") is None, reason="needs ncat")
def test_ncat_ssl_against_greet(serve_process: ServeProcess) -> None:
    _, port, _ = serve_tls(serve_process, "greet")
    talked = run(["ncat", "--ssl", "127.0.0.1", str(port)], b"cat\nexit\n")
    assert talked.stdout.startswith(b"welcome!\nhello, cat!\n"), talked.stderr


def test_socketeer_clients_against_openssl_s_server(certs: Certificates, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            "openssl",
            "s_server",
            "-quiet",
            "-rev",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(certs.cert),
            "-key",
            str(certs.key),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "openssl s_server did not start"
                time.sleep(0.05)
        where = f"tls://127.0.0.1:{port}"
        sent = run_cli(
            "send",
            where,
            "stressed",
            "--framing",
            "line",
            "--greeting-wait",
            "0",
            "--tls-ca",
            str(certs.ca),
        )
        assert sent.stdout == b"desserts\n", sent.stderr
        refused = run_cli("send", where, "x", "--greeting-wait", "0")
        assert refused.returncode == 1
        err = refused.stderr.decode()
        assert err.count("\n") == 1
        assert f"--tls-fingerprint {certs.fingerprint}" in err
        wrong = run_cli("send", where, "x", "--tls-fingerprint", "AB" * 32)
        assert wrong.returncode == 1
        assert "not the pinned AB:AB" in wrong.stderr.decode()
    finally:
        server.kill()
        server.wait(WAIT)


def test_get_refuses_an_unknown_server_without_a_terminal_and_pins_on_request(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "disk.txt").write_bytes(b"encrypted network disk\n")
    _, port, line = serve_tls(serve_process, "files", str(share))
    fp = line.split()[-1]
    where = f"tls://127.0.0.1:{port}"
    refused = run_cli("get", where, "disk.txt", "-")
    assert refused.returncode == 1
    err = refused.stderr.decode()
    assert err.count("\n") == 1, err
    assert f"its sha256 fingerprint is {fp}" in err
    assert "Traceback" not in err
    got = run_cli("get", where, "disk.txt", "-", "--tls-fingerprint", fp.replace(":", ""))
    assert got.stdout == b"encrypted network disk\n", got.stderr
    plain = run_cli("ls", f"127.0.0.1:{port}")
    assert plain.returncode == 1
    assert "if it speaks TLS, use tls://" in plain.stderr.decode()
