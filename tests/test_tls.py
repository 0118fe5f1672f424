"""TLS over real loopback sockets: trust, bad clients, admission, end of stream, files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from shares import TOKEN
from socketeer import AsyncConnection, Connection, ServerConfig
from socketeer.errors import TLSError
from socketeer.known_hosts import KnownHosts
from socketeer.services.files import FilesService
from socketeer.services.files.client import FilesClient
from socketeer.tls import ClientTLS, alpn
from support import WAIT, ServeInThread, ThreadedServer, recv_all, wait_until
from tls_support import Certificates, make_certificates


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "certs")


def greet_over_tls(
    serve_in_thread: ServeInThread, certs: Certificates, *extra: str, **config: object
) -> tuple[ThreadedServer, str]:
    server, endpoints = serve_in_thread(
        "greet", ["tls://127.0.0.1:0", *extra], tls=certs.server(), **config
    )
    return server, str(endpoints[0])


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# talking over TLS -----------------------------------------------------------------------


def test_greet_over_tls_with_the_blocking_and_the_asyncio_client(
    serve_in_thread: ServeInThread, certs: Certificates
) -> None:
    _, where = greet_over_tls(serve_in_thread, certs)
    with Connection.connect(where, timeout=WAIT, tls=certs.client()) as conn:
        assert conn.recvline() == b"welcome!"
        conn.sendline("alice")
        assert conn.recvline() == b"hello, alice!"
        assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[attr-defined]

    async def talk() -> tuple[bytes, str | None]:
        tls = certs.client(alpn=(alpn("greet"),))
        async with await AsyncConnection.connect(where, timeout=WAIT, tls=tls) as conn:
            await conn.recvline()
            await conn.sendline("bob")
            chosen = conn.writer.get_extra_info("ssl_object").selected_alpn_protocol()
            return await conn.recvline(), chosen

    assert asyncio.run(talk()) == (b"hello, bob!", "socketeer-greet/1")


def test_one_server_listens_in_plain_text_and_tls_at_once(
    serve_in_thread: ServeInThread, certs: Certificates
) -> None:
    _, endpoints = serve_in_thread(
        "greet", ["127.0.0.1:0", "tls://127.0.0.1:0", "tls://[::1]:0"], tls=certs.server()
    )
    plain, secured, secured6 = endpoints
    assert not plain.tls
    assert secured.tls
    assert secured6.tls
    assert str(secured6).startswith("tls://[::1]:")
    for endpoint in endpoints:
        with Connection.connect(endpoint, timeout=WAIT, tls=certs.client()) as conn:
            conn.recvline()
            conn.sendline("x")
            assert conn.recvline() == b"hello, x!"


# trust ------------------------------------------------------------------------------------


def test_an_unknown_certificate_is_refused_with_its_fingerprint(
    serve_in_thread: ServeInThread, certs: Certificates
) -> None:
    _, where = greet_over_tls(serve_in_thread, certs)
    with pytest.raises(TLSError) as info:
        Connection.connect(where, timeout=WAIT, tls=ClientTLS())
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert f"its sha256 fingerprint is {certs.fingerprint}" in message
    assert f"--tls-fingerprint {certs.fingerprint}" in message


@pytest.mark.parametrize(
    "typed", [str.upper, str.lower, lambda fp: fp.replace(":", ""), lambda fp: fp.lower()[:]]
)
def test_a_pinned_fingerprint_is_trusted_in_any_spelling(
    serve_in_thread: ServeInThread, certs: Certificates, typed: object
) -> None:
    _, where = greet_over_tls(serve_in_thread, certs)
    assert callable(typed)
    with Connection.connect(
        where, timeout=WAIT, tls=ClientTLS(fingerprint=typed(certs.fingerprint))
    ) as conn:
        assert conn.recvline() == b"welcome!"


def test_a_wrong_pinned_fingerprint_is_refused_even_with_a_trusted_authority(
    serve_in_thread: ServeInThread, certs: Certificates
) -> None:
    _, where = greet_over_tls(serve_in_thread, certs)
    with pytest.raises(TLSError, match="not the pinned 00:11"):
        Connection.connect(where, timeout=WAIT, tls=certs.client(fingerprint="0011" * 16))


def test_accepting_once_remembers_and_a_changed_certificate_is_refused_loudly(
    serve_in_thread: ServeInThread, certs: Certificates, tmp_path: Path
) -> None:
    server, where = greet_over_tls(serve_in_thread, certs)
    known = tmp_path / "known_hosts"
    questions: list[str] = []

    def ask(question: str) -> bool:
        questions.append(question)
        return True

    with Connection.connect(where, timeout=WAIT, tls=ClientTLS(known_hosts=known, ask=ask)):
        pass
    assert len(questions) == 1
    assert certs.fingerprint in questions[0]
    port = where.rsplit(":", 1)[1]
    assert KnownHosts(known).get(f"127.0.0.1:{port}") == certs.fingerprint
    # Asked once: the next connection trusts what was remembered, without a question.
    with Connection.connect(where, timeout=WAIT, tls=ClientTLS(known_hosts=known, ask=ask)) as c:
        assert c.recvline() == b"welcome!"
    assert len(questions) == 1
    # The same host and port with another certificate: refused, never asked.
    server.stop()
    other = make_certificates(tmp_path / "other")
    _, again = serve_in_thread(
        "greet", [f"tls://127.0.0.1:{port}"], tls=other.server(), reuse_port=False
    )
    with pytest.raises(TLSError) as info:
        Connection.connect(again[0], timeout=WAIT, tls=ClientTLS(known_hosts=known, ask=ask))
    message = str(info.value)
    assert message.startswith("REFUSED: the certificate of 127.0.0.1:")
    assert "CHANGED" in message
    assert certs.fingerprint in message
    assert other.fingerprint in message
    assert len(questions) == 1


def test_declining_the_question_refuses_and_remembers_nothing(
    serve_in_thread: ServeInThread, certs: Certificates, tmp_path: Path
) -> None:
    _, where = greet_over_tls(serve_in_thread, certs)
    known = tmp_path / "known_hosts"
    with pytest.raises(TLSError, match="not trusted"):
        Connection.connect(
            where, timeout=WAIT, tls=ClientTLS(known_hosts=known, ask=lambda q: False)
        )
    assert not known.exists()


# the wrong kind of client or server -------------------------------------------------------


def test_a_tls_client_on_a_plain_port_is_told_the_server_does_not_speak_tls(
    serve_in_thread: ServeInThread,
) -> None:
    _, endpoints = serve_in_thread("greet", ["127.0.0.1:0"])
    where = f"tls://127.0.0.1:{endpoints[0].port}"
    with pytest.raises(TLSError, match="the server does not speak TLS"):
        Connection.connect(where, timeout=WAIT, tls=ClientTLS(fingerprint="00" * 32))

    async def connect() -> None:
        await AsyncConnection.connect(where, timeout=WAIT, tls=ClientTLS(fingerprint="00" * 32))

    with pytest.raises(TLSError, match="the server does not speak TLS"):
        asyncio.run(connect())


@pytest.mark.parametrize(
    "sent",
    [
        b"alice\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        os.urandom(4096),
        b"\x16\x03\x01" + bytes(300),
    ],
    ids=["text", "http", "random", "broken-hello"],
)
def test_a_client_that_does_not_speak_tls_costs_one_log_line(
    serve_in_thread: ServeInThread,
    certs: Certificates,
    caplog: pytest.LogCaptureFixture,
    sent: bytes,
) -> None:
    caplog.set_level(logging.INFO, "socketeer")
    server, where = greet_over_tls(serve_in_thread, certs)
    port = int(where.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as bad:
        bad_peer = f"127.0.0.1:{bad.getsockname()[1]}"
        bad.sendall(sent)
        assert recv_all(bad) == b""  # closed, and nothing said in plain text
    with Connection.connect(where, timeout=WAIT, tls=certs.client()) as conn:
        conn.recvline()
        conn.sendline("carol")
        assert conn.recvline() == b"hello, carol!"
    wait_until(lambda: server.server.session_count == 0, "both connections to close")
    about_bad = [r.getMessage() for r in caplog.records if bad_peer in r.getMessage()]
    assert len(about_bad) == 1, about_bad
    assert about_bad[0].startswith(f"TLS handshake with {bad_peer} failed: ")


def test_a_handshake_that_never_finishes_is_cut_off_and_counts_toward_max_conns(
    serve_in_thread: ServeInThread, certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    server, endpoints = serve_in_thread(
        "greet", ["tls://127.0.0.1:0"], tls=certs.server(handshake_timeout=0.5), max_conns=1
    )
    port = endpoints[0].port
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as silent:
        wait_until(lambda: server.server.session_count == 1, "the silent client to be admitted")
        # The pending handshake holds the only place: the next client is turned away.
        with pytest.raises(TLSError, match="closed the connection during the TLS handshake"):
            Connection.connect(endpoints[0], timeout=WAIT, tls=certs.client())
        started = time.monotonic()
        assert recv_all(silent) == b""
        assert 0.3 < time.monotonic() - started < WAIT
    # The server logs once its handshake task sees the failure: the client may know first.
    wait_until(
        lambda: any("not finished within 0.5 seconds" in m for m in warnings(caplog)),
        "the failure to be logged",
    )
    wait_until(lambda: server.server.session_count == 0, "the place to be free again")
    with Connection.connect(endpoints[0], timeout=WAIT, tls=certs.client()) as conn:
        assert conn.recvline() == b"welcome!"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_old_tls_versions_are_refused(
    serve_in_thread: ServeInThread, certs: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    _, where = greet_over_tls(serve_in_thread, certs)
    port = int(where.rsplit(":", 1)[1])
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw,
        pytest.raises(ssl.SSLError),
    ):
        old.wrap_socket(raw, server_hostname="localhost")
    # The server logs once its handshake task sees the failure: the client may know first.
    wait_until(
        lambda: any("no TLS version in common" in m for m in warnings(caplog)),
        "the failure to be logged",
    )


# mutual TLS ---------------------------------------------------------------------------------


def test_mutual_tls_requires_a_client_certificate_signed_by_the_client_ca(
    serve_in_thread: ServeInThread,
    certs: Certificates,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, endpoints = serve_in_thread(
        "greet", ["tls://127.0.0.1:0"], tls=certs.server(client_ca=certs.ca)
    )
    chain, key = certs.client_certificate(tmp_path)
    with Connection.connect(endpoints[0], timeout=WAIT, tls=certs.client(cert=chain, key=key)) as c:
        assert c.recvline() == b"welcome!"
    stranger = make_certificates(tmp_path / "stranger")
    other_chain, other_key = stranger.client_certificate(tmp_path, "stranger")
    for tls in (certs.client(), certs.client(cert=other_chain, key=other_key)):
        # TLS 1.3: the client learns it on its first read (the server closes).
        with (
            pytest.raises(OSError, match=r"closed|reset"),
            Connection.connect(endpoints[0], timeout=WAIT, tls=tls) as c,
        ):
            c.recvline()
    wait_until(lambda: len(warnings(caplog)) == 2, "both refusals to be logged")
    assert "no client certificate was presented" in warnings(caplog)[0]
    assert "certificate could not be verified" in warnings(caplog)[1]


# end of stream --------------------------------------------------------------------------------


def tls_half_close(port: int, sent: bytes) -> bytes:
    """Send ``sent``, then close_notify while still reading (TLS 1.3 allows it); return all
    that arrives until the server's own close_notify.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:

        def pump() -> bool:
            sock.sendall(outgoing.read())
            data = sock.recv(65536)
            if not data:
                incoming.write_eof()
                return False
            incoming.write(data)
            return True

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
        while not received.endswith(b"\n"):  # the greeting first, as a client reading it would
            try:
                received += tls.read(65536)
            except ssl.SSLWantReadError:
                pump()
        tls.write(sent)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.unwrap()  # close_notify out; the peer's not yet in
        sock.sendall(outgoing.read())
        while True:
            try:
                chunk = tls.read(65536)
            except ssl.SSLWantReadError:
                if not pump():
                    break
                continue
            except ssl.SSLZeroReturnError:
                break
            if not chunk:
                break
            received += chunk
    return received


def test_close_notify_is_greets_end_of_stream_and_everything_sent_is_answered(
    serve_in_thread: ServeInThread, certs: Certificates
) -> None:
    _, where = greet_over_tls(serve_in_thread, certs, framing="line")
    port = int(where.rsplit(":", 1)[1])
    assert tls_half_close(port, b"alice\nbob") == b"welcome!\nhello, alice!\nhello, bob!\n"


# files ------------------------------------------------------------------------------------------


@pytest.fixture
def files_over_tls(
    tmp_path: Path, certs: Certificates
) -> Iterator[tuple[ThreadedServer, Path, str]]:
    root = tmp_path / "share"
    root.mkdir()
    service = FilesService(root, allow_upload=True, token=TOKEN, partial_ttl=0)
    threaded = ThreadedServer(
        service, ["tls://127.0.0.1:0"], ServerConfig(idle_timeout=None, tls=certs.server())
    )
    (endpoint,) = threaded.start()
    yield threaded, root, str(endpoint)
    threaded.stop()


def test_concurrent_tls_transfers_are_verified_end_to_end(
    files_over_tls: tuple[ThreadedServer, Path, str], certs: Certificates, tmp_path: Path
) -> None:
    _, root, where = files_over_tls
    sources = {f"f{n}.bin": os.urandom(3 * 1024 * 1024 + n) for n in range(4)}
    for name, data in sources.items():
        (root / name).write_bytes(data)
    (tmp_path / "up").mkdir()
    failures: list[BaseException] = []

    def transfer(name: str) -> None:
        try:
            tls = certs.client(alpn=(alpn("files"),))
            with FilesClient.connect(where, token=TOKEN, timeout=WAIT, tls=tls) as client:
                result = client.download(name, tmp_path / f"got-{name}")
                assert result.hash == "blake3"
                assert result.digest == blake3.blake3(sources[name]).hexdigest()
                upload = tmp_path / "up" / name
                upload.write_bytes(sources[name][::-1])
                client.upload(upload, f"back-{name}")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=transfer, args=(name,)) for name in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert not failures, failures
    for name, data in sources.items():
        assert (tmp_path / f"got-{name}").read_bytes() == data
        assert (root / f"back-{name}").read_bytes() == data[::-1]


def test_the_plain_download_over_tls_ends_its_name_with_a_newline(
    files_over_tls: tuple[ThreadedServer, Path, str],
) -> None:
    _, root, where = files_over_tls
    (root / "notes.txt").write_bytes(b"x" * 300_000)
    port = int(where.rsplit(":", 1)[1])
    context = ClientTLS(fingerprint="00" * 32).context(verify=False)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        conn.sendall(b"notes.txt\n")
        data = recv_all(conn)  # until the server's close_notify, after the file
    assert data == b"x" * 300_000
