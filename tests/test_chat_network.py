"""The chat's sans-IO core as one node of several: what it tells the network, asks it, hears."""

from __future__ import annotations

from socketeer.services.chat import ChatProtocol, ChatSettings
from socketeer.services.chat.commands import Join, Nick, Offer, Online
from socketeer.services.chat.events import Joined, Left, Notice, Private, Renamed, Said
from socketeer.services.chat.network import ChatNetwork, OfferAnswer, RoomEvent, Roster
from socketeer.services.chat.offers import OfferDesk
from socketeer.services.chat.protocol import Addressed, Ask
from socketeer.services.chat.rendering import deliveries
from socketeer.services.chat.room import Member
from socketeer.services.chat.state import MemoryState

NOW = 1_700_000_000.0


class FakeNetwork(ChatNetwork):
    """Records what the protocol tells it; its questions are answered by the test."""

    def __init__(self, node: str = "") -> None:
        self.node = node
        #: Notices passed on for members of other nodes.
        self.tells: list[tuple[str, Notice]] = []
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

    def tell(self, key: str, notice: Notice) -> None:
        self.tells.append((key, notice))

    async def claim(self, nick: str) -> bool:
        raise AssertionError("the protocol never awaits")

    async def roster(self) -> Roster:
        raise AssertionError("the protocol never awaits")

    async def whisper(self, message: Private) -> Private | None:
        raise AssertionError("the protocol never awaits")


class Node:
    """One node's ChatProtocol with a fake network; members are names."""

    def __init__(self, name: str = "", desk: OfferDesk | None = None) -> None:
        self.network = FakeNetwork(name)
        rules = ChatSettings(rate=0)
        self.chat: ChatProtocol[str] = ChatProtocol(
            rules, MemoryState(rules.history), network=self.network, offers=desk
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

    def answer(self, ask: Ask[str], answer: bool | Roster | Private | str | None) -> None:
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


def offering_nodes() -> tuple[Node, Node, OfferDesk]:
    """Node n1 with a drop box and alice, node n2 with bob; alice's offer to bob is ready."""
    desk = OfferDesk(token=lambda: "0" * 32)
    desk.prefix = "n1-"
    desk.files = "n1.example:6668"
    one, two = Node("n1", desk), Node("n2")
    one.named("alice")
    two.named("bob")
    one.send("alice", "/offer Bob 10 notes.txt\n")
    (ask,) = one.asks()
    assert ask.command == Offer("Bob", 10, "notes.txt")  # not here: asked of the network
    one.answer(ask, "bob")
    (upload,) = one.take("alice")
    assert upload.startswith("- -!- offer n1-1: upload notes.txt (10 bytes) for bob, then")
    one.send("alice", "/offered n1-1\n")
    ((_, offer),) = desk.take_jobs()[1:]
    one.deliver(one.chat.tell(desk.checked(offer, "ab" * 32, 10, NOW, NOW)))
    assert one.take("alice") == [
        "- -!- offer n1-1: bob is offered notes.txt; waiting for an answer"
    ]
    ((key, notice),) = one.network.tells  # bob is not here: passed on
    assert (key, notice.code) == ("bob", "offer")
    one.network.tells.clear()
    two.deliver(two.chat.told("n1", key, notice))
    (told,) = two.take("bob")
    assert told.startswith("- -!- alice offers you notes.txt (10 bytes): /accept n1-1 or")
    assert told.endswith("fetch it with: socketeer get n1.example:6668 " + "0" * 32 + "/notes.txt")
    return one, two, desk


def test_an_offer_crosses_nodes_and_the_answers_go_back_to_its_node() -> None:
    one, two, desk = offering_nodes()
    two.send("bob", "/accept\n")  # the latest offer bob was told of, held on n1
    (ask,) = two.asks()
    accept = OfferAnswer("n1", "bob", "accept", "n1-1")
    assert ask.command == accept
    two.answer(ask, True)
    assert two.take("bob") == []
    one.deliver(one.chat.forwarded(accept, NOW))
    assert one.take("alice") == ["- -!- offer n1-1: bob accepted notes.txt"]
    ((key, accepted),) = one.network.tells
    assert (key, accepted.code, accepted.data["path"]) == ("bob", "offer-accepted", offer_path())
    one.network.tells.clear()
    two.send("bob", "/received n1-1\n")
    (ask,) = two.asks()
    received_answer = OfferAnswer("n1", "bob", "received", "n1-1")
    assert ask.command == received_answer
    two.answer(ask, True)
    one.deliver(one.chat.forwarded(received_answer, NOW))
    assert one.take("alice") == ["- -!- offer n1-1: bob received notes.txt"]
    assert len(desk) == 0
    ((key, received),) = one.network.tells
    two.deliver(two.chat.told("n1", key, received))
    assert two.take("bob") == ["- -!- offer n1-1: notes.txt is yours; it is gone from the drop box"]
    assert two.chat.node_gone("n1", NOW) == []  # settled: nothing left to expire


def offer_path() -> str:
    return "0" * 32 + "/notes.txt"


def test_an_offer_expires_for_its_recipient_when_its_node_is_gone() -> None:
    _, two, _ = offering_nodes()
    two.deliver(two.chat.node_gone("n1", NOW))
    assert two.take("bob") == [
        "- -!- offer n1-1: notes.txt from alice expired (the server it was on is gone)"
    ]
    two.send("bob", "/accept\n")  # nothing left (and no drop box on this node)
    assert two.take("bob") == ["- -!- error: there is no offer for you"]


def test_an_answer_to_a_gone_node_expires_the_offer_and_one_out_of_reach_may_be_retried() -> None:
    _, two, _ = offering_nodes()
    two.send("bob", "/decline n1-1\n")
    (ask,) = two.asks()
    two.answer(ask, None)
    assert two.take("bob") == [
        "- -!- error: the server holding offer n1-1 is out of reach; try again later"
    ]
    two.send("bob", "/decline\n")
    (ask,) = two.asks()
    assert ask.command == OfferAnswer("n1", "bob", "decline", "n1-1")
    two.answer(ask, False)
    assert two.take("bob") == [
        "- -!- offer n1-1: notes.txt from alice expired (the server it was on is gone)"
    ]


def test_an_offer_to_a_nickname_online_nowhere_is_refused() -> None:
    desk = OfferDesk()
    one = Node("n1", desk)
    one.named("alice")
    one.send("alice", "/offer zed 10 x\n")
    one.answer(one.asks()[0], None)
    assert one.take("alice") == [
        '- -!- error: no one called "zed" is online; files go to members who are online'
    ]
    assert len(desk) == 0
