"""The chat client library: connect, send, receive parsed lines, reconnect with backoff."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest

from socketeer import ConnectError, ConnectionClosed, Endpoint, LocalProtocolError
from socketeer.services.chat import (
    Backoff,
    ChatClient,
    ChatEvent,
    ChatLine,
    ChatService,
    ChatSettings,
    Connected,
    Disconnected,
    parse_line,
)
from socketeer.services.chat.client import NotAChatServer
from support import WAIT, ServeInThread, recv_all


async def next_line(events: AsyncIterator[ChatEvent], fragment: str) -> ChatEvent:
    """The first event whose text holds ``fragment``."""
    async with asyncio.timeout(WAIT):
        async for event in events:
            if fragment in str(event):
                return event
    raise AssertionError(f"events ended before {fragment!r}")


def test_two_clients_talk_and_track_their_nick_and_room(serve_in_thread: ServeInThread) -> None:
    _, (endpoint,) = serve_in_thread(ChatService())

    async def main() -> None:
        alice = ChatClient(endpoint, "alice")
        bob = ChatClient(str(endpoint), "bob")
        await alice.connect()
        alice_events = alice.events()
        await next_line(alice_events, "you joined")
        assert (alice.nick, alice.room, alice.connected) == ("alice", "#lobby", True)
        await bob.connect()
        bob_events = bob.events()
        await next_line(bob_events, "you joined")
        await alice.send("hello bob")
        line = await next_line(bob_events, "hello bob")
        assert isinstance(line, ChatLine)
        assert (line.place, line.kind, line.nick, line.text) == (
            "#lobby",
            "said",
            "alice",
            "hello bob",
        )
        await bob.send("/nick robert")
        await next_line(bob_events, "you are now known as")
        await bob.send("/join dev")
        await next_line(bob_events, "you joined #dev")
        assert (bob.nick, bob.room, bob.rooms) == ("robert", "#dev", ["#lobby", "#dev"])
        await bob.send("/switch lobby")
        await next_line(bob_events, "you now talk in #lobby")
        assert (bob.room, bob.rooms) == ("#lobby", ["#lobby", "#dev"])
        await bob.send("/leave")
        await next_line(bob_events, "you left #lobby")
        assert (bob.room, bob.rooms) == ("#dev", ["#dev"])
        await bob.send("/leave")
        await next_line(bob_events, "you left")
        assert (bob.room, bob.rooms) == (None, [])
        with pytest.raises(LocalProtocolError):
            await bob.send("two\nlines")
        await bob.close("bye all")
        renamed = await next_line(alice_events, "robert")
        assert str(renamed).endswith(" #lobby -!- bob is now known as robert")
        left = await next_line(alice_events, "robert")
        assert str(left).endswith(" #lobby -!- robert left #lobby")
        await alice.close()
        with pytest.raises(ConnectionClosed):
            await alice.send("too late")

    asyncio.run(main())


def test_reconnects_with_backoff_to_a_server_on_the_same_port(
    serve_in_thread: ServeInThread,
) -> None:
    first, (endpoint,) = serve_in_thread(ChatService())

    async def main() -> None:
        client = ChatClient(endpoint, "fay", backoff=Backoff(initial=0.05, maximum=0.2))
        await client.connect()
        events = client.events()
        await next_line(events, "you joined")
        await client.send("/join den")
        await next_line(events, "you joined #den")
        await asyncio.to_thread(stop, first)
        drop = await next_line(events, "closed the connection")
        assert isinstance(drop, Disconnected)
        assert drop.retry_in is not None
        assert 0.04 <= drop.retry_in <= 0.06
        assert not client.connected
        with pytest.raises(ConnectionClosed):
            await client.send("anyone?")
        retry = await next_line(events, "refused")  # nobody listens for a moment
        assert isinstance(retry, Disconnected)
        assert retry.retry_in is not None
        assert retry.retry_in > drop.retry_in
        await asyncio.to_thread(serve_in_thread, ChatService(), [str(endpoint)])
        back = await next_line(events, "Connected")
        assert back == Connected(str(endpoint))
        await next_line(events, "you joined #den")  # the room is joined again
        assert client.room == "#den"
        await client.close()

    asyncio.run(main())


def test_a_reconnect_restores_every_room_without_passing_through_the_lobby(
    serve_in_thread: ServeInThread,
) -> None:
    first, (endpoint,) = serve_in_thread(ChatService(ChatSettings(rate=0)))

    async def main() -> None:
        client = ChatClient(endpoint, "fay", backoff=Backoff(initial=0.05, maximum=0.2))
        await client.connect()
        events = client.events()
        for command, reply in (
            ("/join den", "you joined #den"),
            ("/join ops", "you joined #ops"),
            ("/switch den", "you now talk in #den"),
            ("/leave lobby", "you left #lobby"),
        ):
            await client.send(command)
            await next_line(events, reply)
        assert (client.room, client.rooms) == ("#den", ["#den", "#ops"])
        await asyncio.to_thread(stop, first)
        await next_line(events, "closed the connection")
        _, (again,) = await asyncio.to_thread(
            serve_in_thread, ChatService(ChatSettings(rate=0)), [str(endpoint)]
        )
        watcher = ChatClient(again, "watcher")
        await watcher.connect()
        watching = watcher.events()
        await next_line(watching, "you joined #lobby")
        await next_line(events, "Connected")
        seen = [str(await next_line(events, "you joined")) for _ in range(2)]
        assert [line.split(" ", 1)[1] for line in seen] == [
            "#ops -!- you joined #ops; 1 here: fay",
            "#den -!- you joined #den; 1 here: fay",
        ]
        assert (client.room, client.rooms) == ("#den", ["#den", "#ops"])
        await client.send("back in den")
        await next_line(events, "#den <fay> back in den")
        await watcher.send("/who lobby")
        assert str(await next_line(watching, "in #lobby")).endswith("1 in #lobby: watcher")
        for room in ("ops", "den"):
            await client.send(f"/leave {room}")
            await next_line(events, f"you left #{room}")
        assert (client.room, client.rooms) == (None, [])
        await client.send("/nick fay2")
        await next_line(events, "you are now known as fay2")
        await watcher.send("/online")
        assert str(await next_line(watching, "online")).endswith(
            "2 online: fay2 (no room), watcher (#lobby)"
        )
        await client.close()
        await watcher.close()

    asyncio.run(main())


def test_a_client_that_left_every_room_stays_out_after_a_reconnect(
    serve_in_thread: ServeInThread,
) -> None:
    first, (endpoint,) = serve_in_thread(ChatService())

    async def main() -> None:
        client = ChatClient(endpoint, "hal", backoff=Backoff(initial=0.05, maximum=0.2))
        await client.connect()
        events = client.events()
        await client.send("/leave")
        await next_line(events, "you left #lobby")
        await asyncio.to_thread(stop, first)
        await next_line(events, "closed the connection")
        await asyncio.to_thread(serve_in_thread, ChatService(), [str(endpoint)])
        await next_line(events, "Connected")
        await next_line(events, "you are now known as hal")
        await client.send("/who lobby")
        assert str(await next_line(events, "in #lobby")).endswith("0 in #lobby: ")
        assert (client.room, client.rooms) == (None, [])
        await client.close()

    asyncio.run(main())


def test_the_client_keeps_to_the_servers_rate_so_no_line_is_dropped(
    serve_in_thread: ServeInThread,
) -> None:
    _, (endpoint,) = serve_in_thread(ChatService(ChatSettings(rate=20, burst=3)))

    async def main() -> None:
        client = ChatClient(endpoint, "ivy")
        await client.connect()
        events = client.events()
        await next_line(events, "you joined")
        for number in range(12):
            await client.send(f"line {number}")
        for number in range(12):
            await next_line(events, f"<ivy> line {number}")
        await client.close()

    asyncio.run(main())


def stop(threaded: object) -> None:
    server = threaded.server  # type: ignore[attr-defined]
    loop = threaded.loop  # type: ignore[attr-defined]
    asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(WAIT)


def test_without_reconnect_a_drop_ends_the_events(serve_in_thread: ServeInThread) -> None:
    threaded, (endpoint,) = serve_in_thread(ChatService())

    async def main() -> None:
        client = ChatClient(endpoint, "gus", reconnect=False)
        await client.connect()
        events = client.events()
        await next_line(events, "you joined")
        await asyncio.to_thread(stop, threaded)
        rest = [event async for event in events]
        assert rest[-1] == Disconnected(f"{endpoint} closed the connection", None)

    asyncio.run(main())


def test_connect_errors_and_bad_nicks() -> None:
    with pytest.raises(ValueError, match="cannot be a nickname"):
        ChatClient("127.0.0.1:1", "two words")

    async def main() -> None:
        client = ChatClient(Endpoint("tcp", "127.0.0.1", 1), "x")
        with pytest.raises(ConnectError, match=r"cannot connect to 127\.0\.0\.1:1\b"):
            await client.connect()

    asyncio.run(main())


def test_the_client_follows_its_nick_and_room_by_code_not_by_wording() -> None:
    """A server whose notices are worded in another language: the client still keeps up."""
    received: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def reply(code: str, text: str, error: bool = False, **data: object) -> None:
            fields: dict[str, object] = {"type": "error" if error else "notice", "time": 1.7e9}
            fields |= {"place": "-", "code": code, "text": text, **data}
            writer.write(json.dumps(fields).encode() + b"\n")

        async def line() -> None:
            received.append((await reader.readline()).decode().rstrip("\n"))

        writer.write(b"12:00:00 - -!- bienvenue\n")
        await line()
        reply("format", "format json", format="json")
        await line()
        reply("nick-taken", "pris", error=True, nick="zoe", holder="zoe")
        await line()
        reply("nick", "te voila zoe_", nick="zoe_")
        reply("joined", "salle", room="#salon", nicks=["zoe_"], count=1)
        await writer.drain()
        await reader.read()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            client = ChatClient(f"127.0.0.1:{port}", "zoe", reconnect=False)
            await client.connect()
            events = client.events()
            async with asyncio.timeout(WAIT):
                shown = [str(await anext(events)) for _ in range(3)]
            assert (client.nick, client.room) == ("zoe_", "#salon")
            await client.close()
        assert received == ["/format json", "/nick zoe", "/nick zoe_"]
        assert shown[0].endswith(" - -!- error: pris"), "the prompt for a nickname is answered"
        assert [line.split(" ", 1)[1] for line in shown[1:]] == [
            "- -!- te voila zoe_",
            "- -!- salle",
        ]

    asyncio.run(main())


def test_a_full_chat_server_refuses_in_a_chat_line(serve_in_thread: ServeInThread) -> None:
    """So the client takes it for the chat server it is, and retries."""
    _, (endpoint,) = serve_in_thread(ChatService(), max_conns=1)
    with socket.create_connection((endpoint.host, endpoint.port), timeout=WAIT) as member:
        assert b"welcome" in member.recv(1000)
        with socket.create_connection((endpoint.host, endpoint.port), timeout=WAIT) as refused:
            line = recv_all(refused).decode()
    assert parse_line(line).text == "error: server busy: 1 connections already open"


def test_a_stranger_in_the_chat_servers_place_ends_the_events(
    serve_in_thread: ServeInThread,
) -> None:
    threaded, (endpoint,) = serve_in_thread(ChatService())

    async def main() -> None:
        client = ChatClient(endpoint, "ida", backoff=Backoff(initial=0.05, maximum=0.2))
        await client.connect()
        events = client.events()
        await next_line(events, "you joined")
        await asyncio.to_thread(stop, threaded)
        await asyncio.to_thread(serve_in_thread, "greet", [str(endpoint)])
        with pytest.raises(NotAChatServer, match=r"is not a chat server \(it said 'welcome!'\)"):
            await next_line(events, "never")

    asyncio.run(main())
