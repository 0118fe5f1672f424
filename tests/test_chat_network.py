"""The chat's sans-IO core as one node of several: what it tells the network, asks it, hears."""

from __future__ import annotations

from socketeer.services.chat import ChatProtocol, ChatSettings
from socketeer.services.chat.commands import Join, Nick, Online
from socketeer.services.chat.events import Joined, Left, Private, Renamed, Said
from socketeer.services.chat.network import ChatNetwork, RoomEvent, Roster
from socketeer.services.chat.protocol import Addressed, Ask
from socketeer.services.chat.rendering import deliveries
from socketeer.services.chat.room import Member
from socketeer.services.chat.state import MemoryState

NOW = 1_700_000_000.0


class FakeNetwork(ChatNetwork):
    """Records what the protocol tells it; its questions are answered by the test."""

    def __init__(self) -> None:
        self.rooms: set[str] = set()
        self.published: list[tuple[str, RoomEvent]] = []
        self.present_: dict[str, list[str]] = {}
        self.released_: list[str] = []

    def opened(self, room: str) -> None:
        self.rooms.add(room)

    def closed(self, room: str) -> None:
        self.rooms.discard(room)

    def publish(self, room: str, event: RoomEvent) -> None:
        self.published.append((room, event))

    def present(self, nick: str, rooms: list[str]) -> None:
        self.present_[nick] = rooms

    def released(self, nick: str) -> None:
        self.released_.append(nick)
        self.present_.pop(nick, None)

    async def claim(self, nick: str) -> bool:
        raise AssertionError("the protocol never awaits")

    async def roster(self) -> Roster:
        raise AssertionError("the protocol never awaits")

    async def whisper(self, message: Private) -> Private | None:
        raise AssertionError("the protocol never awaits")


class Node:
    """One node's ChatProtocol with a fake network; members are names."""

    def __init__(self) -> None:
        self.network = FakeNetwork()
        rules = ChatSettings(rate=0)
        self.chat: ChatProtocol[str] = ChatProtocol(
            rules, MemoryState(rules.history), network=self.network
        )
        self.members: dict[str, Member[str]] = {}
        self.received: dict[str, list[str]] = {}

    def deliver(self, events: list[Addressed[str]]) -> None:
        for peers, data in deliveries(events):
            for peer in peers:
                self.received.setdefault(peer, []).extend(
                    line[9:] for line in data.decode().splitlines()
                )

    def connect(self, peer: str) -> None:
        member, events = self.chat.connect(peer, NOW, NOW)
        self.members[peer] = member
        self.deliver(events)
        self.take(peer)

    def send(self, peer: str, text: str) -> None:
        self.deliver(self.chat.receive(self.members[peer], text.encode(), NOW, NOW))

    def asks(self) -> list[Ask[str]]:
        return self.chat.take_asks()

    def answer(self, ask: Ask[str], answer: bool | Roster | Private | None) -> None:
        self.deliver(self.chat.answered(ask, answer, NOW, NOW))

    def take(self, peer: str) -> list[str]:
        return self.received.pop(peer, [])

    def named(self, peer: str, roster: Roster | None = None) -> None:
        """Connect ``peer`` and let it have its name, with ``roster`` elsewhere."""
        self.connect(peer)
        self.send(peer, f"{peer}\n")
        (claim,) = self.asks()
        self.answer(claim, True)
        (join,) = self.asks()
        self.answer(join, roster or [])
        self.take(peer)


def test_a_nickname_is_claimed_from_the_network_and_later_lines_wait_for_it() -> None:
    node = Node()
    node.connect("a")
    node.send("a", "alice\nhello\n")
    assert node.take("a") == []
    (claim,) = node.asks()
    assert claim.command == Nick("alice")
    node.answer(claim, True)
    assert node.take("a") == ["- -!- you are now known as alice"]
    (join,) = node.asks()
    assert join.command == Join("#lobby")
    node.answer(join, [("bob", ["#lobby", "#dev"]), ("carol", ["#dev"])])
    assert node.take("a") == [
        "#lobby -!- you joined #lobby; 2 here: alice, bob",
        "#lobby <alice> hello",
    ]
    assert node.network.present_ == {"alice": ["#lobby"]}
    said = [event for _, event in node.network.published if isinstance(event, Said)]
    assert [(e.nick, e.text) for e in said] == [("alice", "hello")]


def test_a_nickname_held_on_another_node_is_refused() -> None:
    node = Node()
    node.connect("a")
    node.send("a", "bob\n")
    (claim,) = node.asks()
    node.answer(claim, False)
    assert node.take("a") == ['- -!- error: the nickname "bob" is taken; choose another']
    assert node.chat.member_count == 0


def test_listings_count_the_other_nodes() -> None:
    node = Node()
    node.named("alice")
    node.send("alice", "/online\n")
    (online,) = node.asks()
    assert online.command == Online()
    node.answer(online, [("bob", ["#lobby", "#dev"])])
    assert node.take("alice") == ["- -!- 2 online: alice (#lobby), bob (#lobby, #dev)"]
    node.send("alice", "/rooms\n")
    (rooms,) = node.asks()
    node.answer(rooms, [("bob", ["#lobby", "#dev"])])
    assert node.take("alice") == ["- -!- rooms: #dev (1), #lobby (2)"]
    node.send("alice", "/who dev\n")
    (who,) = node.asks()
    node.answer(who, [("bob", ["#lobby", "#dev"])])
    assert node.take("alice") == ["#dev -!- 1 in #dev: bob"]


def test_events_from_other_nodes_reach_the_rooms_members_and_history() -> None:
    node = Node()
    node.named("alice")
    node.deliver(node.chat.remote(next(iter(node.network.rooms)), Said(NOW, "#lobby", "bob", "hi")))
    node.deliver(node.chat.remote("dev", Said(NOW, "#dev", "bob", "elsewhere")))
    assert node.take("alice") == ["#lobby <bob> hi"]
    node.deliver(node.chat.private(Private(NOW, "bob", "ALICE", "psst")))
    assert node.take("alice") == ["@ALICE <bob> psst"]
    node.named("dave", [("bob", ["#lobby"])])
    node.connect("e")
    node.send("e", "erin\n")
    node.answer(node.asks()[0], True)
    node.answer(node.asks()[0], [])
    assert "#lobby <bob> hi" in node.take("e")


def test_a_nickname_lost_in_an_outage_renames_its_member_here() -> None:
    node = Node()
    node.named("bob")
    node.named("alice")
    node.take("bob")
    node.deliver(node.chat.nick_lost("bob", "bob_2", NOW))
    assert node.take("bob") == [
        '- -!- error: "bob" was taken on another server while the chat was cut off;'
        " you are now known as bob_2"
    ]
    assert node.take("alice") == ["#lobby -!- bob is now known as bob_2"]
    assert node.network.released_ == ["bob"]
    assert node.network.present_["bob_2"] == ["#lobby"]
    assert ("#lobby", Renamed(NOW, "#lobby", "bob", "bob_2")) in [
        (event.room, event) for _, event in node.network.published
    ]


def test_leaving_releases_the_nickname_and_tells_the_other_nodes() -> None:
    node = Node()
    node.named("alice")
    node.send("alice", "/join dev\n")
    node.answer(node.asks()[0], [])
    assert "dev" in {room.lstrip("#") for room in node.network.rooms}
    node.send("alice", "/quit\n")
    assert node.network.released_ == ["alice"]
    kinds = [type(event) for _, event in node.network.published]
    assert kinds[-2:] == [Left, Left]
    assert Joined in kinds
    assert len(node.network.rooms) == 1  # #dev is no longer in use here
