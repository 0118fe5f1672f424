"""The server core over real loopback sockets: transports, limits, bad input, load."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from socketeer import Connection, Endpoint, Handler, LengthPrefixCodec, Service
from support import WAIT, ServeInThread, recv_all


def tcp(endpoint: Endpoint) -> socket.socket:
    sock = socket.create_connection((endpoint.connect_host, endpoint.port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def greet_lines(conn: Connection, names: list[str]) -> list[bytes]:
    replies = []
    for name in names:
        conn.sendline(name)
        replies.append(conn.recvline())
    return replies


def test_greet_line_session_like_nc(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet")
    with Connection.connect(endpoint, timeout=WAIT) as conn:
        assert conn.recvline() == b"welcome!"
        assert greet_lines(conn, ["rose", "think"]) == [b"hello, rose!", b"hello, think!"]
        conn.sendline("exit")
        assert conn.recv() == b""


def test_greet_raw_session_like_the_seed_client(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet")
    with tcp(endpoint) as sock:
        assert sock.recv(1024) == b"welcome!\n"
        for name in (b"rose", b"think", b"babala"):
            sock.send(name)
            assert sock.recv(1024) == b"hello, " + name + b"!"
        sock.send(b"exit")
        assert sock.recv(1024) == b""


def test_greet_telnet_gets_crlf_replies(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet")
    with tcp(endpoint) as sock:
        assert sock.recv(1024) == b"welcome!\n"
        sock.sendall(b"ann\r\n")
        assert sock.recv(1024) == b"hello, ann!\r\n"


def test_greet_end_of_stream_answers_last_line_then_closes(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet", framing="line")
    with tcp(endpoint) as sock:
        sock.sendall(b"a\nb\nlast")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"welcome!\nhello, a!\nhello, b!\nhello, last!\n"


def test_merged_lines_each_get_a_reply(serve_in_thread: ServeInThread) -> None:
    """The sticky-packet case: many lines in one write are still separate messages."""
    _, (endpoint,) = serve_in_thread("greet", framing="line")
    names = [f"n{i}" for i in range(200)]
    with tcp(endpoint) as sock:
        sock.sendall("".join(f"{n}\n" for n in names).encode() + b"exit\n")
        expected = b"welcome!\n" + b"".join(f"hello, {n}!\n".encode() for n in names)
        assert recv_all(sock) == expected


def test_length_framed_client(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet", framing="length")
    with Connection.connect(endpoint, timeout=WAIT, codec=LengthPrefixCodec()) as conn:
        assert conn.recv_message() == b"welcome!"
        conn.send_message("line one\nline two")
        assert conn.recv_message() == b"hello, line one\nline two!"
        conn.send_message("exit")
        with pytest.raises(Exception, match="closed the connection"):
            conn.recv_message()


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_greet_over_ipv4_and_ipv6(serve_in_thread: ServeInThread, host: str) -> None:
    if host == "[::1]" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    _, (endpoint,) = serve_in_thread("greet", [f"{host}:0"])
    assert endpoint.port != 0
    with Connection.connect(endpoint, timeout=WAIT) as conn:
        assert conn.recvline() == b"welcome!"
        assert greet_lines(conn, ["v6"]) == [b"hello, v6!"]


def test_one_server_many_transports(serve_in_thread: ServeInThread, tmp_path: Path) -> None:
    path = tmp_path / "greet.sock"
    _, endpoints = serve_in_thread("echo", ["127.0.0.1:0", f"unix://{path}", "udp://127.0.0.1:0"])
    tcp_ep, unix_ep, udp_ep = endpoints
    assert unix_ep.path == str(path)
    assert path.exists()
    for endpoint in (tcp_ep, unix_ep):
        with Connection.connect(endpoint, timeout=WAIT) as conn:
            conn.send(b"ping")
            assert conn.recvexactly(4) == b"ping"
    with Connection.connect(udp_ep, timeout=WAIT) as conn:
        big = bytes(range(256)) * 255 + b"x" * 227  # 65,507 bytes: the largest IPv4 datagram
        conn.send(big)
        assert conn.recv(70_000) == big
        conn.send(b"small")
        assert conn.recv() == b"small"


def test_unix_socket_removed_on_stop(serve_in_thread: ServeInThread, tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    threaded, _ = serve_in_thread("echo", [f"unix://{path}"])
    assert path.exists()
    threaded.call(lambda: None)
    import asyncio

    asyncio.run_coroutine_threadsafe(threaded.server.stop(0), threaded.loop).result(WAIT)
    assert not path.exists()


def test_frame_over_limit_gets_error_and_close_others_unaffected(
    serve_in_thread: ServeInThread,
) -> None:
    _, (endpoint,) = serve_in_thread("echo", framing="length", max_message_size=1024)
    with Connection.connect(endpoint, timeout=WAIT) as bystander, tcp(endpoint) as bad:
        bad.sendall((10**6).to_bytes(4, "big") + b"x" * 100)
        reply = recv_all(bad)
        codec = LengthPrefixCodec()
        (notice,) = codec.feed(reply)
        assert notice == b"error: frame of 1000000 bytes exceeds the limit of 1024 bytes"
        bystander.send_message(b"still here")
        assert bystander.recv_message() == b"still here"


def test_line_over_limit_answers_earlier_lines_first(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet", framing="line", max_message_size=100)
    with tcp(endpoint) as sock:
        sock.sendall(b"ok\n" + b"y" * 5000)
        reply = recv_all(sock)
        assert reply.startswith(b"welcome!\nhello, ok!\nerror: line of ")
        assert reply.endswith(b" bytes exceeds the limit of 100 bytes\n")


def test_garbage_bytes_do_not_hurt_the_server(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet", framing="length", max_message_size=4096)
    with tcp(endpoint) as garbage:
        garbage.sendall(b"\xff\xfe\x00garbage\x00" * 10)
        assert b"error: frame of" in recv_all(garbage)
    with Connection.connect(endpoint, timeout=WAIT) as conn:
        assert conn.recv_message() == b"welcome!"


def test_undecodable_text_is_answered_not_fatal(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet")
    with Connection.connect(endpoint, timeout=WAIT) as conn:
        conn.recvline()
        conn.send(b"\xff\xfe\x80name\n")
        assert conn.recvline() == b"hello, \xff\xfe\x80name!"
        assert greet_lines(conn, ["after"]) == [b"hello, after!"]


def test_gbk_encoding(serve_in_thread: ServeInThread) -> None:
    from socketeer.services import make_service

    _, (endpoint,) = serve_in_thread(make_service("greet", "gbk"))
    with Connection.connect(endpoint, timeout=WAIT, encoding="gbk") as conn:
        conn.recvline()
        conn.sendline("你好")
        assert conn.recvline().decode("gbk") == "hello, 你好!"


def test_idle_client_is_closed_with_a_notice(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet", idle_timeout=0.3)
    started = time.monotonic()
    with tcp(endpoint) as idle, Connection.connect(endpoint, timeout=WAIT) as busy:
        busy.recvline()
        for _ in range(6):  # keeps talking past the timeout
            assert greet_lines(busy, ["still"]) == [b"hello, still!"]
            time.sleep(0.1)
        assert recv_all(idle) == b"welcome!\nerror: idle for 0.3 seconds\n"
        assert 0.3 <= time.monotonic() - started < 3
        assert greet_lines(busy, ["alive"]) == [b"hello, alive!"]


def test_client_vanishing_mid_message(serve_in_thread: ServeInThread) -> None:
    threaded, (endpoint,) = serve_in_thread("echo", framing="length")
    for _ in range(20):
        with tcp(endpoint) as sock:
            sock.sendall((1000).to_bytes(4, "big") + b"half")
    with Connection.connect(endpoint, timeout=WAIT) as conn:
        conn.send_message(b"fine")
        assert conn.recv_message() == b"fine"
        deadline = time.monotonic() + WAIT
        while threaded.call(lambda: threaded.server.session_count) != 1:
            assert time.monotonic() < deadline, "aborted sessions were not released"
            time.sleep(0.01)


def test_max_conns_refuses_extra_clients_only(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet", max_conns=3)
    kept = [Connection.connect(endpoint, timeout=WAIT) for _ in range(3)]
    try:
        for conn in kept:
            assert conn.recvline() == b"welcome!"
        with tcp(endpoint) as extra:
            assert recv_all(extra) == b"error: server busy: 3 connections already open\n"
        for conn in kept:
            assert greet_lines(conn, ["ok"]) == [b"hello, ok!"]
    finally:
        for conn in kept:
            conn.close()
    # once they are gone there is room again
    deadline = time.monotonic() + WAIT
    while True:
        with tcp(endpoint) as again:
            first = again.recv(1024)
        if first == b"welcome!\n":
            break
        assert time.monotonic() < deadline


def test_a_client_that_never_reads_does_not_stall_others(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("echo", framing="raw")
    with tcp(endpoint) as hog, Connection.connect(endpoint, timeout=WAIT) as other:
        hog.setblocking(False)
        sent = 0
        chunk = b"z" * 65536
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sent < 64 * 1024 * 1024:
            try:
                sent += hog.send(chunk)
            except BlockingIOError:
                break  # both directions are full: the server stopped reading from us
        assert sent < 64 * 1024 * 1024, "the server kept buffering for a client that never reads"
        other.send(b"hello")
        assert other.recvexactly(5) == b"hello"


def test_stop_lets_sessions_finish_within_grace(serve_in_thread: ServeInThread) -> None:
    import asyncio

    threaded, (endpoint,) = serve_in_thread("greet")
    with Connection.connect(endpoint, timeout=WAIT) as conn:
        conn.recvline()
        stopping = asyncio.run_coroutine_threadsafe(threaded.server.stop(5.0), threaded.loop)
        time.sleep(0.2)
        assert not stopping.done()
        with pytest.raises(ConnectionRefusedError):  # no longer accepting
            tcp(endpoint).close()
        assert greet_lines(conn, ["during"]) == [b"hello, during!"]
        conn.sendline("exit")
        stopping.result(WAIT)
    assert threaded.server.session_count == 0


def test_stop_closes_sessions_after_grace_with_notice(serve_in_thread: ServeInThread) -> None:
    import asyncio

    threaded, (endpoint,) = serve_in_thread("greet")
    with Connection.connect(endpoint, timeout=WAIT) as conn:
        conn.recvline()
        started = time.monotonic()
        asyncio.run_coroutine_threadsafe(threaded.server.stop(0.3), threaded.loop).result(WAIT)
        assert 0.3 <= time.monotonic() - started < 3
        assert conn.recvline() == b"error: server is shutting down"
        assert conn.recv() == b""


def test_holds_1000_concurrent_greet_sessions(serve_in_thread: ServeInThread) -> None:
    threaded, (endpoint,) = serve_in_thread("greet")
    socks: list[socket.socket] = []
    try:
        for _ in range(1000):
            socks.append(tcp(endpoint))
        for sock in socks:
            assert sock.recv(64) == b"welcome!\n"
        assert threaded.call(lambda: threaded.server.session_count) == 1000
        for i, sock in enumerate(socks):
            sock.sendall(f"client{i}\n".encode())
        for i, sock in enumerate(socks):
            assert sock.recv(64) == f"hello, client{i}!\n".encode()
    finally:
        for sock in socks:
            sock.close()


def seed_style_client(endpoint: Endpoint, client: int) -> list[str]:
    """The seed 001 client shape: recv the greeting, then send a name / recv a reply, 20 times."""
    with tcp(endpoint) as sock:
        replies = [sock.recv(1024).decode()]
        for n in range(20):
            sock.send(f"c{client}-name{n}".encode())
            replies.append(sock.recv(1024).decode())
        sock.send(b"exit")
        assert sock.recv(1024) == b""
    return replies


def test_50_seed_style_clients_get_their_own_replies(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet")
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda c: seed_style_client(endpoint, c), range(50)))
    for client, replies in enumerate(results):
        assert replies == ["welcome!\n"] + [f"hello, c{client}-name{n}!" for n in range(20)]


class Fragile(Handler):
    """Fails on the message ``boom``, like a handler with a bug."""

    def received(self, message: bytes) -> Sequence[bytes]:
        if message == b"boom":
            raise RuntimeError("bug in a handler")
        return (message,)


class FragileService(Service):
    name = "fragile"
    default_framing = "line"

    def new_handler(self) -> Handler:
        return Fragile()


def test_a_failing_handler_closes_only_its_session(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread(FragileService())
    with Connection.connect(endpoint, timeout=WAIT) as other, tcp(endpoint) as victim:
        victim.sendall(b"fine\nboom\nnever\n")
        assert recv_all(victim) == b"fine\nerror: internal server error\n"
        other.sendline("ok")
        assert other.recvline() == b"ok"


def test_wildcard_port_is_dual_stack(serve_in_thread: ServeInThread) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    _, (endpoint,) = serve_in_thread("greet", [":0"])
    assert str(endpoint) == f":{endpoint.port}"
    for host in ("127.0.0.1", "[::1]"):
        with Connection.connect(f"{host}:{endpoint.port}", timeout=WAIT) as conn:
            assert conn.recvline() == b"welcome!"


def test_a_name_with_several_addresses_gets_one_port(serve_in_thread: ServeInThread) -> None:
    _, endpoints = serve_in_thread("echo", ["localhost:0"])
    hosts = {e.host for e in endpoints}
    assert len({e.port for e in endpoints}) == 1
    assert "127.0.0.1" in hosts
    for endpoint in endpoints:
        with Connection.connect(endpoint, timeout=WAIT) as conn:
            conn.send(b"x")
            assert conn.recv() == b"x"
