"""The client library, blocking and async, against real servers on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from socketeer import (
    AsyncConnection,
    ConnectError,
    Connection,
    ConnectionClosed,
    FrameTooLarge,
    LengthPrefixCodec,
    LineCodec,
    LocalProtocolError,
    Timeout,
)
from support import WAIT, ServeInThread

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, WAIT))


def refused_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


def test_read_shapes(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("echo")
    with Connection.connect(str(endpoint), timeout=WAIT) as conn:
        conn.send(b"one\r\ntwo\nprompt> 12345rest")
        assert conn.recvline() == b"one"
        assert conn.recvline() == b"two"
        assert conn.recvuntil(b"> ") == b"prompt> "
        assert conn.recvexactly(5) == b"12345"
        assert conn.recvexactly(4) == b"rest"


def test_messages_over_any_codec(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("echo", framing="length")
    with Connection.connect(endpoint, timeout=WAIT, codec=LengthPrefixCodec()) as conn:
        for size in (0, 1, 70_000, 1_000_000):
            conn.send_message(b"m" * size)
        assert [len(conn.recv_message()) for _ in range(4)] == [0, 1, 70_000, 1_000_000]
    _, (line_ep,) = serve_in_thread("greet", framing="line")
    with Connection.connect(line_ep, timeout=WAIT, codec=LineCodec()) as conn:
        assert conn.recv_message() == b"welcome!"
        conn.send_message("liz")
        assert conn.recv_message() == b"hello, liz!"


def test_timeout_is_a_clear_error(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("echo")
    with Connection.connect(endpoint, timeout=0.2) as conn:
        started = time.monotonic()
        with pytest.raises(Timeout, match=r"no data from 127\.0\.0\.1:\d+ within 0\.2 seconds"):
            conn.recv()
        assert time.monotonic() - started < 2


def test_refused_names_the_endpoint() -> None:
    port = refused_port()
    with pytest.raises(
        ConnectError, match=f"cannot connect to 127.0.0.1:{port}: connection refused"
    ):
        Connection.connect(f"127.0.0.1:{port}", timeout=WAIT)


def test_closed_before_enough_bytes_keeps_the_partial(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet", framing="line")
    with Connection.connect(endpoint, timeout=WAIT) as conn:
        conn.sendline("exit")
        with pytest.raises(ConnectionClosed) as caught:
            conn.recvexactly(100)
        assert caught.value.partial == b"welcome!\n"
        assert conn.recv() == b""


def test_recvuntil_is_bounded(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("echo")
    with Connection.connect(endpoint, timeout=WAIT) as conn:
        conn.send(b"x" * 5000)
        with pytest.raises(FrameTooLarge):
            conn.recvuntil(b"\n", limit=1000)


def test_udp_connection(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet", ["udp://127.0.0.1:0"])
    with Connection.connect(endpoint, timeout=WAIT) as conn:
        conn.send(b"hello")
        assert conn.recv() == b"hello, hello!"


def test_unix_connection(serve_in_thread: ServeInThread, tmp_path: Path) -> None:
    _, (endpoint,) = serve_in_thread("greet", [f"unix://{tmp_path}/c.sock"])
    with Connection.connect(endpoint, timeout=WAIT) as conn:
        assert conn.recvline() == b"welcome!"


def test_async_connection(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet")

    async def talk() -> list[bytes]:
        async with await AsyncConnection.connect(endpoint, timeout=WAIT) as conn:
            got = [await conn.recvline()]
            await conn.sendline("async")
            got.append(await conn.recvuntil(b"!"))
            got.append(await conn.recvexactly(1))
            await conn.send(b"exit\n")
            got.append(await conn.recv())
            return got

    assert run(talk()) == [b"welcome!", b"hello, async!", b"\n", b""]


def test_async_messages_and_errors(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("echo", framing="length")

    async def talk() -> None:
        async with await AsyncConnection.connect(endpoint, timeout=0.3) as conn:
            await conn.send_message(b"abc")
            assert await conn.recv_message() == b"abc"
            with pytest.raises(Timeout):
                await conn.recv_message()
        with pytest.raises(ConnectError, match="connection refused"):
            await AsyncConnection.connect(f"127.0.0.1:{refused_port()}", timeout=WAIT)
        with pytest.raises(LocalProtocolError):
            await AsyncConnection.connect("udp://127.0.0.1:9", timeout=WAIT)

    run(talk())


def test_async_closed_keeps_partial(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("greet", framing="line")

    async def talk() -> bytes:
        async with await AsyncConnection.connect(endpoint, timeout=WAIT) as conn:
            await conn.sendline("exit")
            try:
                await conn.recvexactly(50)
            except ConnectionClosed as exc:
                return exc.partial
            raise AssertionError("expected ConnectionClosed")

    assert run(talk()) == b"welcome!\n"


def test_errors_name_what_was_awaited_in_words(serve_in_thread: ServeInThread) -> None:
    """No Python reprs (``b'\\n'``) and no ``1 seconds`` in what people read."""
    _, (endpoint,) = serve_in_thread("echo")
    with Connection.connect(endpoint, timeout=1) as conn:
        conn.send(b"x")
        with pytest.raises(Timeout) as waited:
            conn.recvline()
        assert str(waited.value) == f"no line ending from {endpoint} within 1 second"
        conn.shutdown_write()
        with pytest.raises(ConnectionClosed) as closed:
            conn.recvuntil(b"> ")
        assert str(closed.value) == (
            f'{endpoint} closed the connection before the delimiter "> " arrived (1 byte received)'
        )


def test_async_errors_name_what_was_awaited_in_words(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread("echo")

    async def talk() -> str:
        async with await AsyncConnection.connect(endpoint, timeout=1) as conn:
            await conn.send(b"x\r")
            conn.shutdown_write()
            with pytest.raises(ConnectionClosed) as closed:
                await conn.recvuntil(b"\r\n")
            return str(closed.value)

    assert run(talk()) == (
        f"{endpoint} closed the connection before a line ending arrived (2 bytes received)"
    )
