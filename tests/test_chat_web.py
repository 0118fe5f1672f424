"""The chat for browsers: the page over HTTP, WebSocket members beside nc and ``socketeer chat``.

The greeting's hold is driven with the fake clock (``hosts.FakeHost``); the
rest runs against real servers on loopback, with a wsproto client over a
plain socket (``ws_client.py``), nc and ``socketeer chat``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

from hosts import FakeHost, start
from socketeer.http.detect import could_be_request_line
from socketeer.services.chat import ChatService, ChatSettings
from socketeer.services.chat import web as chat_web
from socketeer.services.chat.opening import GREETING_HOLD, MAX_OPENING, Kind, Opening
from socketeer.services.chat.web import WebChatSession
from socketeer.services.chat.websocket import LineFrames, text_frame
from support import WAIT, ServeInThread, ServeProcess, recv_all, socketeer_command
from test_chat_cli import Talker
from tls_support import make_certificates
from ws_client import Rejected, WsClient

needs_nc = pytest.mark.skipif(shutil.which("nc") is None, reason="netcat-openbsd not installed")
pytestmark = pytest.mark.usefixtures("no_errors_logged")


@pytest.fixture
def talkers() -> Iterator[list[Talker]]:
    started: list[Talker] = []
    yield started
    for talker in started:
        talker.stop()


@pytest.fixture
def sockets() -> Iterator[list[WsClient]]:
    opened: list[WsClient] = []
    yield opened
    for client in opened:
        client.shut()


def frame(opcode: Opcode, payload: bytes, fin: bool = True) -> bytes:
    """A masked frame as a client sends it, whatever it says."""
    proto = FrameProtocol(client=True, extensions=[])
    return bytes(proto._serialize_frame(opcode, payload, fin))


# who connected: the greeting's hold -------------------------------------------------------


def test_a_client_that_says_nothing_is_greeted_once_the_hold_is_over() -> None:
    async def main() -> None:
        host = FakeHost()
        session = ChatService().new_session(host)
        assert isinstance(session, WebChatSession)
        transport = start(session)
        await asyncio.sleep(0)
        assert transport.take() == b"", "no greeting before the hold is over"
        session.hold_over()  # a timer firing early changes nothing
        await asyncio.sleep(0)
        assert transport.take() == b""
        host.clock.advance(GREETING_HOLD)
        session.hold_over()
        await asyncio.sleep(0)
        assert b"choose a nickname" in transport.take()
        session.data_received(b"alice\n")
        await asyncio.sleep(0)
        assert b"you joined #lobby" in transport.take()

    asyncio.run(main())


def test_a_client_that_speaks_first_is_greeted_and_heard_at_once() -> None:
    async def main() -> None:
        host = FakeHost()
        session = ChatService().new_session(host)
        transport = start(session)
        session.data_received(b"alice\nhello\n")
        await asyncio.sleep(0)
        said = transport.take()
        assert said.index(b"choose a nickname") < said.index(b"you joined #lobby")
        assert b"<alice> hello" in said

    asyncio.run(main())


def test_an_http_request_line_is_never_greeted() -> None:
    async def main() -> None:
        host = FakeHost()
        session = ChatService().new_session(host)
        assert isinstance(session, WebChatSession)
        transport = start(session)
        session.data_received(b"GET / HTT")
        host.clock.advance(1.0)
        session.hold_over()
        session.data_received(b"P/1.1\r\nHost: x\r\n\r\n")
        for _ in range(20):
            await asyncio.sleep(0)
        answer = transport.take()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"choose a nickname" not in answer
        session.connection_lost(None)

    asyncio.run(main())


def test_opening_decides_by_first_bytes_and_by_time() -> None:
    assert Opening(0.0).feed(b"alice") is Kind.LINES  # cannot start a request line
    assert Opening(0.0).feed(b"GET /x HTTP/1.1\r\n") is Kind.HTTP
    assert Opening(0.0).feed(b"GET stuff\n") is Kind.LINES  # a nickname called "GET stuff"
    waiting = Opening(0.0)
    assert waiting.feed(b"GE") is None
    assert waiting.waited(10.0) is None, "half a request line is waited for, not greeted"
    quiet = Opening(0.0)
    assert quiet.waited(GREETING_HOLD / 2) is None
    assert quiet.waited(GREETING_HOLD) is Kind.LINES
    long = Opening(0.0)
    assert long.feed(b"GET /" + b"a" * MAX_OPENING) is Kind.LINES


@given(st.binary(max_size=64), st.lists(st.integers(0, 64), max_size=5))
def test_opening_decides_the_same_in_any_pieces(data: bytes, cuts: list[int]) -> None:
    whole = Opening(0.0)
    expected = whole.feed(data)
    pieces = Opening(0.0)
    got = None
    start_at = 0
    for cut in sorted(min(c, len(data)) for c in cuts):
        got = pieces.feed(data[start_at:cut])
        start_at = cut
    got = pieces.feed(data[start_at:])
    assert got == expected
    if got is None:
        assert could_be_request_line(data)


def test_line_frames_are_one_text_message_a_line() -> None:
    frames = LineFrames()
    data = b"a\n" + b"b" * 200 + b"\n"
    assert frames(data) == text_frame(b"a") + text_frame(b"b" * 200)
    assert text_frame(b"b" * 200)[:4] == b"\x81\x7e\x00\xc8"
    assert frames(bytes(data)) is frames(data), "a delivery is framed once"


# browsers, nc and socketeer chat in one room ---------------------------------------------


def chat_server(serve_process: ServeProcess, *args: str) -> tuple[str, int]:
    server = serve_process("serve", "chat", "127.0.0.1:0", *args)
    endpoint = server.endpoints[0]
    assert endpoint.host is not None
    return endpoint.host, endpoint.port


def test_serve_chat_prints_the_browser_address(serve_process: ServeProcess) -> None:
    server = serve_process("serve", "chat", "127.0.0.1:0")
    assert server.proc.stdout is not None
    line = server.proc.stdout.readline().decode()
    assert line == f"open http://127.0.0.1:{server.endpoints[0].port}/ in a browser\n"


def test_the_page_and_its_assets(serve_process: ServeProcess) -> None:
    host, port = chat_server(serve_process, "--max-message", "300")
    page = subprocess.run(
        ["curl", "-si", f"http://{host}:{port}/"], capture_output=True, timeout=WAIT, check=True
    ).stdout.decode()
    head, _, body = page.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200")
    assert "content-security-policy: default-src 'none'; script-src 'self'" in head
    assert "x-content-type-options: nosniff" in head
    assert 'data-max-line="300"' in body
    assert '<script src="/.socketeer/chat.js"' in body
    for name, kind in (("chat.js", "text/javascript"), ("chat.css", "text/css")):
        asset = subprocess.run(
            ["curl", "-si", f"http://{host}:{port}/.socketeer/{name}"],
            capture_output=True,
            timeout=WAIT,
            check=True,
        ).stdout.decode()
        assert asset.startswith("HTTP/1.1 200")
        assert f"content-type: {kind}" in asset
    missing = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{host}:{port}/nope"],
        capture_output=True,
        timeout=WAIT,
    )
    assert missing.stdout == b"404"


@needs_nc
def test_websocket_nc_and_socketeer_chat_members_talk_in_one_room(
    serve_process: ServeProcess, talkers: list[Talker], sockets: list[WsClient]
) -> None:
    host, port = chat_server(serve_process)
    web = WsClient(host, port)
    sockets.append(web)
    assert "choose a nickname" in web.expect("choose a nickname")[0]
    web.send("wendy")
    web.expect("you joined #lobby")
    nc = Talker(["nc", "-N", host, str(port)])
    talkers.append(nc)
    nc.expect("choose a nickname")
    nc.say("nick")
    nc.expect("you joined #lobby")
    cli = Talker(socketeer_command("chat", f"{host}:{port}", "--nick", "carol"))
    talkers.append(cli)
    cli.expect("you joined")
    js = WsClient(host, port)
    sockets.append(js)
    js.send("/format json")
    js.send("jason")
    assert js.expect_json(type="notice", code="joined")["nicks"] == [
        "carol",
        "jason",
        "nick",
        "wendy",
    ]

    web.send("hi from a browser")
    for talker in (nc, cli):
        assert talker.expect("hi from a browser")[-1] == "#lobby <wendy> hi from a browser"
    assert web.expect("hi from a browser")[-1].endswith("#lobby <wendy> hi from a browser")
    said = js.expect_json(type="said", nick="wendy")
    assert said["text"] == "hi from a browser"
    nc.say("and from nc")
    assert web.expect("and from nc")[-1].endswith("#lobby <nick> and from nc")
    assert js.expect_json(type="said", nick="nick")["text"] == "and from nc"
    cli.say("/msg wendy psst")
    assert web.expect("psst")[-1].endswith("@wendy <carol> psst")
    js.send("/msg nick <img src=x onerror=alert(1)>")
    assert nc.expect("onerror")[-1] == "@nick <jason> <img src=x onerror=alert(1)>"
    web.send("/quit")
    assert web.wait_closed() == 1000
    assert nc.expect("wendy quit")[-1] == "#lobby -!- wendy quit"


def test_a_websocket_joins_with_history_and_leaves_when_it_closes(
    serve_process: ServeProcess, sockets: list[WsClient]
) -> None:
    host, port = chat_server(serve_process)
    first = WsClient(host, port)
    sockets.append(first)
    first.send("ann")
    first.send("remember this")
    first.expect("remember this")
    second = WsClient(host, port)
    sockets.append(second)
    second.send("ben")
    assert second.expect("you joined")[-2].endswith("#lobby <ann> remember this")
    second.close()
    assert second.wait_closed() == 1000
    assert first.expect("ben disconnected")[-1].endswith("#lobby -!- ben disconnected")


# limits and hostile WebSockets -----------------------------------------------------------


def test_a_message_over_the_limit_closes_1009(
    serve_process: ServeProcess, sockets: list[WsClient]
) -> None:
    host, port = chat_server(serve_process, "--max-message", "100")
    client = WsClient(host, port)
    sockets.append(client)
    client.send("x" * 100)  # the limit itself is a line (a nickname too long, but a line)
    client.expect("cannot be a nickname")
    client.send("y" * 101)
    assert client.wait_closed() == 1009
    assert client.close_reason == "message over 100 bytes"


def test_a_message_growing_over_the_limit_in_fragments_closes_1009(
    serve_process: ServeProcess, sockets: list[WsClient]
) -> None:
    host, port = chat_server(serve_process, "--max-message", "100")
    client = WsClient(host, port)
    sockets.append(client)
    client.send_raw(frame(Opcode.TEXT, b"a" * 60, fin=False))
    client.send_raw(frame(Opcode.CONTINUATION, b"a" * 60, fin=False))
    assert client.wait_closed() == 1009


def test_fragments_forever_are_closed(serve_process: ServeProcess, sockets: list[WsClient]) -> None:
    host, port = chat_server(serve_process)
    client = WsClient(host, port)
    sockets.append(client)
    endless = frame(Opcode.TEXT, b"", fin=False) + frame(Opcode.CONTINUATION, b"", fin=False) * 100
    client.send_raw(endless)
    assert client.wait_closed() == 1008
    assert client.close_reason is not None
    assert "frames" in client.close_reason


def test_a_binary_message_closes_1003(serve_process: ServeProcess, sockets: list[WsClient]) -> None:
    host, port = chat_server(serve_process)
    client = WsClient(host, port)
    sockets.append(client)
    client.send_raw(frame(Opcode.BINARY, b"\x00\x01"))
    assert client.wait_closed() == 1003


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\x81\x02hi", 1002),  # a client's frame must be masked
        (b"\x89\x7e\x00\xc8", 1002),  # a control frame over 125 bytes
        (frame(Opcode.PING, b"", fin=False), 1002),  # a fragmented control frame
        (frame(Opcode.TEXT, b"\xff\xfe"), 1007),  # text that is not UTF-8
    ],
)
def test_protocol_violations_close_with_their_code(
    serve_process: ServeProcess, sockets: list[WsClient], raw: bytes, code: int
) -> None:
    host, port = chat_server(serve_process)
    client = WsClient(host, port)
    sockets.append(client)
    client.send("vic")
    client.expect("you joined")
    client.send_raw(raw)
    assert client.wait_closed() == code


def test_a_flood_of_pings_gets_pongs_and_the_member_keeps_talking(
    serve_process: ServeProcess, sockets: list[WsClient]
) -> None:
    host, port = chat_server(serve_process)
    client = WsClient(host, port)
    sockets.append(client)
    client.send("pinger")
    client.expect("you joined")
    flood = b"".join(frame(Opcode.PING, str(n).encode()) for n in range(20_000))
    client.send_raw(flood)
    client.send("still here")
    client.expect("still here")
    assert client.pongs, "pings are answered"
    assert len(client.pongs) < 20_000, "pings that arrive together get one pong"
    assert client.pongs[-1] == b"19999"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n", 400),
        (
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n"
            "Sec-WebSocket-Version: 8\r\n",
            426,
        ),
        ("Connection: keep-alive\r\n", 400),
    ],
)
def test_a_malformed_upgrade_is_refused(
    serve_process: ServeProcess, headers: str, status: int
) -> None:
    host, port = chat_server(serve_process)
    with socket.create_connection((host, port), WAIT) as sock:
        sock.sendall(f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        answer = recv_all(sock)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer


def test_a_websocket_from_another_sites_page_is_refused(serve_process: ServeProcess) -> None:
    host, port = chat_server(serve_process)
    with pytest.raises(Rejected) as refused:
        WsClient(host, port, headers=[("Origin", "http://evil.example")])
    assert refused.value.status == 403
    WsClient(host, port, headers=[("Origin", f"http://{host}:{port}")]).shut()


def upgrade_status(sock: socket.socket, host: str, origin: str) -> int:
    """The status a raw upgrade request from a page of ``origin`` gets."""
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n" not in head:
        data = sock.recv(4096)
        assert data, head
        head += data
    return int(head.split()[1])


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_websocket_origin_is_the_server_s_only_in_scheme_host_and_port(
    serve_in_thread: ServeInThread, tmp_path: Path, tls: bool
) -> None:
    certs = make_certificates(tmp_path / "certs")
    options = {"tls": certs.server()} if tls else {}
    listen = "tls://127.0.0.1:0" if tls else "127.0.0.1:0"
    _, (endpoint,) = serve_in_thread(
        ChatService(ChatSettings()), [listen], idle_timeout=None, **options
    )
    host = f"127.0.0.1:{endpoint.port}"
    own, other = ("https", "http") if tls else ("http", "https")
    context = ssl.create_default_context(cafile=str(certs.ca))
    expected = {
        f"{own}://{host}": 101,
        f"{own.upper()}://127.0.0.1:{endpoint.port}": 101,
        f"{other}://{host}": 403,  # the same host and port over the other scheme
        f"ws://{host}": 403,
        f"wss://{host}": 403,
        f"ftp://{host}": 403,
        f"{own}://127.0.0.1:{endpoint.port + 1}": 403,
        f"{own}://127.0.0.1": 403,
        f"{own}://{host}/": 403,  # not an origin: a URL
        f"{own}://user@{host}": 403,
        "null": 403,
    }
    for origin, status in expected.items():
        raw = socket.create_connection(("127.0.0.1", endpoint.port), WAIT)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw as sock:
            sock.settimeout(WAIT)
            assert upgrade_status(sock, host, origin) == status, origin


def test_a_handshake_that_never_completes_is_closed(
    serve_in_thread: ServeInThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_web, "HTTP_IDLE", 0.3)
    monkeypatch.setattr(chat_web, "HEAD_TIMEOUT", 0.3)
    _, (endpoint,) = serve_in_thread(ChatService(ChatSettings()), idle_timeout=None)
    address = (endpoint.host, endpoint.port)
    with (
        socket.create_connection(address, WAIT) as head,
        socket.create_connection(address, WAIT) as line,
    ):
        head.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        line.sendall(b"GET /w")
        started = time.monotonic()
        assert recv_all(head).startswith(b"HTTP/1.1 408 ")
        assert recv_all(line) == b""
        assert time.monotonic() - started < WAIT


def test_a_page_then_a_websocket_on_one_connection(serve_process: ServeProcess) -> None:
    host, port = chat_server(serve_process)
    with socket.create_connection((host, port), WAIT) as sock:
        sock.sendall(
            f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            + frame(Opcode.TEXT, b"keepalive")
        )
        sock.settimeout(WAIT)
        seen = b""
        while b"you joined #lobby" not in seen:
            data = sock.recv(65536)
            assert data, seen
            seen += data
    assert seen.startswith(b"HTTP/1.1 200 OK")
    assert b"HTTP/1.1 101 " in seen
    assert b"you are now known as keepalive" in seen


def test_json_lines_decode_as_the_chat_says(
    serve_process: ServeProcess, sockets: list[WsClient]
) -> None:
    host, port = chat_server(serve_process)
    client = WsClient(host, port)
    sockets.append(client)
    client.send("/format json")
    client.send("jo")
    client.send("/help")
    help_event = client.expect_json(type="notice", code="help")
    assert "\n" in help_event["text"], "a notice of several lines is one JSON message"
    client.send("/rooms")
    assert client.expect_json(type="notice", code="rooms")["rooms"] == [
        {"room": "#lobby", "count": 1}
    ]
    json.dumps(help_event)
