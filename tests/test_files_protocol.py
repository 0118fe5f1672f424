"""The files protocol without sockets: messages, the state machine, plain downloads, paths.

Two :class:`FilesConnection` objects talk to each other in memory (like h11's
``ConnectionPair``); whole conversations are replayed whole, one byte at a
time, at every chunk size and at arbitrary splits, and must mean the same
thing every time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socketeer.errors import LocalProtocolError, RemoteProtocolError
from socketeer.framing import ReceiveBuffer
from socketeer.services.files import connection as connection_module
from socketeer.services.files.connection import (
    CLIENT,
    CLOSED,
    MAX_CONTROL_BEFORE_HELLO,
    MAX_REQUEST_SIZE,
    NEED_DATA,
    SERVER,
    Data,
    Event,
    FilesConnection,
    Role,
    check_hello,
    frame,
)
from socketeer.services.files.messages import (
    MAX_CONTROL_SIZE,
    MESSAGES,
    PROTOCOL_NAME,
    VERSION,
    Delete,
    Done,
    Entry,
    EntryType,
    Error,
    FileHeader,
    Get,
    Hello,
    List,
    Listing,
    Message,
    Mkdir,
    Ok,
    Put,
    Ready,
    Stat,
    StatReply,
    Welcome,
    decode,
    encode,
)
from socketeer.services.files.paths import (
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    PathRefused,
    is_partial,
    partial_name,
    split_remote,
)
from socketeer.services.files.plain import MAX_PLAIN_REQUEST, PlainRequest, is_protocol_opening

# =================================================================== messages

ENTRY_TYPES: tuple[EntryType, ...] = ("file", "dir", "link", "other")

#: Text as a client may send it: any Unicode, and names that were not UTF-8 on disk.
names = st.one_of(
    st.text(max_size=12),
    st.binary(max_size=12).map(lambda raw: raw.decode("utf-8", "surrogateescape")),
)
counts = st.integers(min_value=0, max_value=2**64)
mtimes = st.floats(-(2.0**63), 2.0**63, exclude_min=True, exclude_max=True)  # a time_t
digests = st.none() | st.binary(min_size=32, max_size=32).map(bytes.hex)
entries = st.builds(Entry, names, st.sampled_from(ENTRY_TYPES), counts, mtimes)

MESSAGE_STRATEGIES: dict[type[Message], st.SearchStrategy[Message]] = {
    Hello: st.builds(
        Hello,
        version=counts,
        protocol=names,
        token=st.none() | names,
        client=names,
        hashes=st.lists(names, max_size=3).map(tuple),
    ),
    List: st.builds(List, path=names, recursive=st.booleans()),
    Stat: st.builds(Stat, path=names),
    Get: st.builds(
        Get,
        path=names,
        offset=counts,
        hash=st.booleans(),
        size=st.none() | counts,
        mtime=st.none() | mtimes,
    ),
    Put: st.builds(
        Put,
        path=names,
        size=counts,
        mtime=st.none() | mtimes,
        hash=st.booleans(),
        force=st.booleans(),
        follows=st.booleans(),
    ),
    Mkdir: st.builds(Mkdir, path=names, parents=st.booleans()),
    Delete: st.builds(Delete, path=names, recursive=st.booleans()),
    Done: st.builds(Done, sha256=digests, blake3=digests),
    Error: st.builds(
        Error,
        code=names,
        message=names,
        supported=st.lists(st.integers(0, 10), max_size=3).map(tuple),
    ),
    Welcome: st.builds(
        Welcome,
        version=counts,
        server=names,
        writable=st.booleans(),
        hash=names,
        pipeline=counts,
    ),
    Listing: st.builds(
        Listing, path=names, entries=st.lists(entries, max_size=4).map(tuple), more=st.booleans()
    ),
    StatReply: st.builds(StatReply, entry=entries),
    FileHeader: st.builds(
        FileHeader, size=counts, mtime=mtimes, offset=counts, length=counts, same=st.booleans()
    ),
    Ready: st.builds(Ready, offset=counts),
    Ok: st.builds(Ok, skipped=st.booleans()),
}
any_message = st.one_of(*MESSAGE_STRATEGIES.values())


def test_every_message_type_has_a_strategy() -> None:
    assert set(MESSAGE_STRATEGIES) == set(MESSAGES.values())


@pytest.mark.parametrize("cls", MESSAGE_STRATEGIES, ids=lambda cls: cls.op)
def test_each_message_type_round_trips_with_its_defaults(cls: type[Message]) -> None:
    message = cls()
    assert decode(encode(message)) == message
    assert json.loads(encode(message))["op"] == cls.op


@settings(max_examples=300)
@given(message=any_message)
def test_every_message_round_trips(message: Message) -> None:
    body = encode(message)
    assert body.isascii()  # surrogate-escaped names travel as \udcXX escapes
    assert decode(body) == message


@settings(max_examples=300)
@given(message=any_message)
def test_every_message_is_written_as_json_dumps_writes_it(message: Message) -> None:
    members = {"op": message.op, **dataclasses.asdict(message)}
    expected = json.dumps(members, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    assert encode(message) == expected.encode("ascii")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b' {"op":"ok"} ', Ok()),
        (b'{"op":"ok"}\n', Ok()),
        ('{"op":"ok","skipped":true}'.encode("utf-16"), Ok(skipped=True)),
    ],
)
def test_json_that_socketeer_does_not_write_is_read_all_the_same(
    body: bytes, message: Message
) -> None:
    assert decode(body) == message


def test_a_listing_carries_its_entries_in_order() -> None:
    listing = Listing("docs", (Entry("a.txt", "file", 3, 1.5), Entry("caf\udce9", "dir", 0, 2.0)))
    body = json.loads(encode(listing))
    assert [e["name"] for e in body["entries"]] == ["a.txt", "caf\udce9"]
    assert decode(encode(listing)) == listing


def test_missing_fields_take_their_defaults() -> None:
    assert decode(b'{"op":"get"}') == Get(path="", offset=0, hash=True)
    assert decode(b'{"op":"put","path":"a","size":3}') == Put("a", 3, None, True, False)


def test_unknown_fields_are_ignored() -> None:
    body = b'{"op":"list","path":"a","colour":"blue","later":{"x":[1,2]}}'
    assert decode(body) == List("a")


@pytest.mark.parametrize("mtime", ["1e19", "-1e19", "1e300", "9223372036854775808"])
def test_an_mtime_no_file_can_have_is_the_peers_fault(mtime: str) -> None:
    # os.utime would raise OverflowError once the whole upload had arrived.
    with pytest.raises(RemoteProtocolError, match="bad 'mtime'"):
        decode(b'{"op":"put","path":"a","size":1,"mtime":%s}' % mtime.encode())
    with pytest.raises(RemoteProtocolError, match="bad 'mtime'"):
        decode(b'{"op":"file","size":1,"mtime":%s,"offset":0,"length":1}' % mtime.encode())


def test_the_widest_mtime_a_file_can_have_is_read() -> None:
    assert decode(b'{"op":"put","path":"a","size":1,"mtime":1e18}') == Put("a", 1, 1e18)


def test_an_integer_mtime_reads_as_a_float() -> None:
    message = decode(b'{"op":"file","size":1,"mtime":1700000000,"offset":0,"length":1}')
    assert isinstance(message, FileHeader)
    assert message.mtime == 1700000000.0
    assert isinstance(message.mtime, float)


def _obj(op: str, **fields: object) -> bytes:
    return json.dumps({"op": op, **fields}).encode()


MALFORMED = [
    pytest.param(b"", id="empty"),
    pytest.param(b"{", id="bad-json"),
    pytest.param(b"\xff\xfe{}", id="not-utf8"),
    pytest.param(b"[]", id="array"),
    pytest.param(b'"list"', id="string"),
    pytest.param(b"1", id="number"),
    pytest.param(b"null", id="null"),
    pytest.param(b"{}", id="no-op"),
    pytest.param(_obj("format-disk"), id="unknown-op"),
    pytest.param(b'{"op":1}', id="op-not-a-string"),
    pytest.param(b'{"op":null}', id="op-null"),
    pytest.param(_obj("list", path=1), id="path-not-a-string"),
    pytest.param(_obj("list", path=None), id="path-null"),
    pytest.param(_obj("get", offset=-1), id="negative-offset"),
    pytest.param(_obj("put", size=-5), id="negative-size"),
    pytest.param(_obj("file", length=-1), id="negative-length"),
    pytest.param(_obj("ready", offset=-1), id="negative-ready-offset"),
    pytest.param(_obj("hello", version=-1), id="negative-version"),
    pytest.param(_obj("put", size=1.5), id="size-float"),
    pytest.param(_obj("put", size="5"), id="size-string"),
    pytest.param(_obj("put", size=True), id="size-bool"),
    pytest.param(_obj("get", hash="yes"), id="bool-string"),
    pytest.param(_obj("get", hash=1), id="bool-int"),
    pytest.param(_obj("hello", token=5), id="token-int"),
    pytest.param(_obj("done", sha256=[]), id="sha256-list"),
    pytest.param(_obj("put", mtime="now"), id="mtime-string"),
    pytest.param(_obj("put", mtime=True), id="mtime-bool"),
    pytest.param(b'{"op":"put","mtime":NaN}', id="mtime-nan"),
    pytest.param(b'{"op":"put","mtime":Infinity}', id="mtime-infinity"),
    pytest.param(b'{"op":"file","mtime":-Infinity}', id="mtime-minus-infinity"),
    pytest.param(b'{"op":"put","mtime":1e400}', id="mtime-overflowing-float"),
    pytest.param(b'{"op":"put","mtime":1' + b"0" * 400 + b"}", id="mtime-400-digits"),
    pytest.param(_obj("error", supported=1), id="supported-not-a-list"),
    pytest.param(_obj("error", supported=[1, "2"]), id="supported-string"),
    pytest.param(_obj("error", supported=[True]), id="supported-bool"),
    pytest.param(_obj("listing", entries={}), id="entries-not-a-list"),
    pytest.param(_obj("listing", entries=["a"]), id="entry-not-an-object"),
    pytest.param(
        _obj("listing", entries=[{"name": "a", "type": "fifo", "size": 0, "mtime": 0}]),
        id="entry-unknown-type",
    ),
    pytest.param(
        _obj("listing", entries=[{"name": "a", "type": "file", "size": -1, "mtime": 0}]),
        id="entry-negative-size",
    ),
    pytest.param(
        _obj("listing", entries=[{"name": "a", "type": "file", "size": 0}]),
        id="entry-without-mtime",
    ),
    pytest.param(
        b'{"op":"entry","entry":{"name":"a","type":"file","size":0,"mtime":NaN}}',
        id="entry-mtime-nan",
    ),
    pytest.param(_obj("entry", entry=[]), id="entry-a-list"),
    pytest.param(
        _obj("entry", entry={"name": 3, "type": "file", "size": 0, "mtime": 0}), id="entry-name-int"
    ),
    pytest.param(b"[" * 100_000, id="deeply-nested"),
    pytest.param(b'{"op":"list","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="deep-field"),
]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_messages_are_the_peers_fault(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="message"):
        decode(body)


@settings(max_examples=500)
@given(body=st.binary(max_size=64))
def test_decoding_arbitrary_bytes_raises_only_remote_protocol_error(body: bytes) -> None:
    try:
        message = decode(body)
    except RemoteProtocolError:
        return
    assert isinstance(message, Message)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
#: Objects shaped like a listing's entries, right or nearly.
entry_like = st.fixed_dictionaries(
    {},
    optional={
        "name": json_scalars,
        "type": st.sampled_from(ENTRY_TYPES) | json_scalars,
        "size": json_scalars,
        "mtime": json_scalars,
    },
)
json_values = st.recursive(
    json_scalars | entry_like,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
FIELD_NAMES = sorted({f.name for cls in MESSAGES.values() for f in dataclass_fields(cls)})


@settings(max_examples=150, deadline=None)
@given(
    op=st.sampled_from(sorted(MESSAGES)),
    fields=st.dictionaries(
        st.sampled_from(FIELD_NAMES) | st.text(max_size=4), json_values, max_size=4
    ),
)
def test_decoding_arbitrary_fields_raises_only_remote_protocol_error(
    op: str, fields: dict[str, object]
) -> None:
    body = json.dumps({**fields, "op": op}).encode()
    try:
        message = decode(body)
    except RemoteProtocolError:
        return
    assert type(message) is MESSAGES[op]


# ========================================================== two connections in memory


@dataclass(frozen=True)
class Says:
    """``by`` sends a control message."""

    by: Role
    message: Message


@dataclass(frozen=True)
class Streams:
    """``by`` sends raw file bytes (reported with ``sent_raw``)."""

    by: Role
    data: bytes


Step = Says | Streams
Splitter = Callable[[bytes], Sequence[bytes]]


def whole(data: bytes) -> list[bytes]:
    return [data] if data else []


def every(size: int) -> Splitter:
    return lambda data: [data[i : i + size] for i in range(0, len(data), size)]


def peer_of(role: Role) -> Role:
    return SERVER if role is CLIENT else CLIENT


def drain(conn: FilesConnection) -> list[Event]:
    """Every event ``conn`` can produce from what it has received."""
    events: list[Event] = []
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
        if event is CLOSED:
            break
    return events


def merged(events: Sequence[Event]) -> list[Event]:
    """``events`` with adjacent raw chunks joined (how they are split is not meaningful)."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + event.data)
        else:
            out.append(event)
    return out


class ConnectionPair:
    """A client and a server connection wired together in memory.

    Bytes each side sends wait until the other side acts next (or
    :meth:`flush`): that is when a real peer would have read them.  They are
    then delivered in the pieces ``split`` makes, and every event is kept.
    """

    def __init__(self, split: Splitter = whole) -> None:
        self.conn = {CLIENT: FilesConnection(CLIENT), SERVER: FilesConnection(SERVER)}
        self.split = split
        self.pending = {CLIENT: bytearray(), SERVER: bytearray()}  # bytes on the way to a role
        self.seen: dict[Role, list[Event]] = {CLIENT: [], SERVER: []}

    @property
    def client(self) -> FilesConnection:
        return self.conn[CLIENT]

    @property
    def server(self) -> FilesConnection:
        return self.conn[SERVER]

    def deliver(self, to: Role) -> list[Event]:
        """Let ``to`` read what was sent to it; return the events that made."""
        events: list[Event] = []
        for piece in self.split(bytes(self.pending[to])):
            self.conn[to].receive_data(piece)
            events += drain(self.conn[to])
        self.pending[to].clear()
        self.seen[to] += events
        return events

    def flush(self) -> None:
        self.deliver(CLIENT)
        self.deliver(SERVER)

    def act(self, step: Step) -> None:
        self.deliver(step.by)
        conn = self.conn[step.by]
        if isinstance(step, Says):
            self.pending[peer_of(step.by)] += conn.send(step.message)
        else:
            conn.sent_raw(len(step.data))
            self.pending[peer_of(step.by)] += step.data

    def play(self, script: Sequence[Step]) -> ConnectionPair:
        for step in script:
            self.act(step)
        self.flush()
        return self


def sent_by(role: Role, script: Sequence[Step]) -> list[Event]:
    """The events the peer of ``role`` should see: exactly what ``role`` sent."""
    return merged(
        [s.message if isinstance(s, Says) else Data(s.data) for s in script if s.by is role]
    )


def client_says(message: Message) -> Says:
    return Says(CLIENT, message)


def server_says(message: Message) -> Says:
    return Says(SERVER, message)


HANDSHAKE: list[Step] = [
    client_says(Hello(token="secret", client="tests")),
    server_says(Welcome(server="socketeer test", writable=True)),
]
CONTENT = b"hello, world\n"
SHA = hashlib.sha256(CONTENT).hexdigest()
ENTRY = Entry("notes.txt", "file", len(CONTENT), 1_700_000_000.25)

CONVERSATION: list[Step] = [
    *HANDSHAKE,
    client_says(List("")),
    server_says(Listing("", (Entry("docs", "dir", 0, 1.0), ENTRY))),
    client_says(Stat("notes.txt")),
    server_says(StatReply(ENTRY)),
    client_says(Stat("missing")),
    server_says(Error("not-found", "missing: no such file or directory")),
    client_says(Mkdir("docs/new", parents=True)),
    server_says(Ok()),
    client_says(Delete("docs")),
    server_says(Error("not-empty", "docs: directory not empty")),
    # a download: header, raw bytes in two sends, the hash
    client_says(Get("notes.txt")),
    server_says(FileHeader(len(CONTENT), ENTRY.mtime, 0, len(CONTENT))),
    Streams(SERVER, CONTENT[:5]),
    Streams(SERVER, CONTENT[5:]),
    server_says(Done(SHA)),
    # an empty download (a resume of a complete file)
    client_says(Get("notes.txt", offset=len(CONTENT), hash=False)),
    server_says(FileHeader(len(CONTENT), ENTRY.mtime, len(CONTENT), 0)),
    server_says(Done(None)),
    # a download that changed while it was sent
    client_says(Get("log")),
    server_says(FileHeader(3, 2.0, 0, 3)),
    Streams(SERVER, b"abc"),
    server_says(Error("changed", "log: changed while sent")),
    # an upload resumed at byte 5
    client_says(Put("up/notes.txt", len(CONTENT), ENTRY.mtime)),
    server_says(Ready(5)),
    Streams(CLIENT, CONTENT[5:9]),
    Streams(CLIENT, CONTENT[9:]),
    client_says(Done(SHA)),
    server_says(Ok()),
    # an upload the server already holds
    client_says(Put("notes.txt", len(CONTENT), ENTRY.mtime)),
    server_says(Ok(skipped=True)),
    # an upload whose whole file is already in the partial
    client_says(Put("whole.txt", 4, None, hash=False)),
    server_says(Ready(4)),
    client_says(Done(None)),
    server_says(Ok()),
    # an upload refused before any byte, and one refused at the end
    client_says(Put("busy.txt", 2)),
    server_says(Error("busy", "busy.txt: another upload of this file is running")),
    client_says(Put("bad.txt", 2, force=True)),
    server_says(Ready(0)),
    Streams(CLIENT, b"xy"),
    client_says(Done("0" * 64)),
    server_says(Error("mismatch", "bad.txt: SHA-256 mismatch")),
]


def test_a_whole_conversation_means_what_was_sent() -> None:
    pair = ConnectionPair().play(CONVERSATION)
    assert merged(pair.seen[CLIENT]) == sent_by(SERVER, CONVERSATION)
    assert merged(pair.seen[SERVER]) == sent_by(CLIENT, CONVERSATION)
    assert pair.client.idle
    assert pair.server.idle
    assert pair.client.buffered() == pair.server.buffered() == 0


def longest_flight(script: Sequence[Step]) -> int:
    """The most bytes one side sends before the other acts."""
    longest = current = 0
    sender: Role | None = None
    for step in script:
        if step.by is not sender:
            sender, current = step.by, 0
        current += len(frame(step.message)) if isinstance(step, Says) else len(step.data)
        longest = max(longest, current)
    return longest


def test_every_chunk_size_gives_the_same_events() -> None:
    expected = ConnectionPair().play(CONVERSATION).seen
    for size in range(1, longest_flight(CONVERSATION) + 2):
        seen = ConnectionPair(every(size)).play(CONVERSATION).seen
        assert merged(seen[CLIENT]) == merged(expected[CLIENT]), f"chunks of {size} bytes"
        assert merged(seen[SERVER]) == merged(expected[SERVER]), f"chunks of {size} bytes"


def test_one_byte_at_a_time_gives_the_same_messages() -> None:
    seen = ConnectionPair(every(1)).play(CONVERSATION).seen
    # Raw bytes arrive one per event; the messages are whole and in order.
    assert [e for e in seen[CLIENT] if not isinstance(e, Data)] == [
        s.message for s in CONVERSATION if isinstance(s, Says) and s.by is SERVER
    ]
    assert all(len(e.data) == 1 for e in seen[CLIENT] if isinstance(e, Data))


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_arbitrary_splits_give_the_same_events(data: st.DataObject) -> None:
    def split(stream: bytes) -> list[bytes]:
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6))
        points = [0, *sorted(cuts), len(stream)]
        return [stream[a:b] for a, b in pairwise(points) if b > a]

    seen = ConnectionPair(split).play(CONVERSATION).seen
    assert merged(seen[CLIENT]) == sent_by(SERVER, CONVERSATION)
    assert merged(seen[SERVER]) == sent_by(CLIENT, CONVERSATION)


# ------------------------------------------------------------------ the handshake


def test_hello_then_welcome_makes_both_sides_idle() -> None:
    pair = ConnectionPair()
    pair.act(client_says(Hello()))
    assert pair.client.state == "waiting for welcome"
    assert not pair.client.idle
    assert pair.deliver(SERVER) == [Hello(VERSION, PROTOCOL_NAME, None, "")]
    pair.act(server_says(Welcome(writable=False)))
    assert pair.deliver(CLIENT) == [Welcome(VERSION, "", False)]
    assert pair.client.idle
    assert pair.server.idle


def test_check_hello_accepts_this_protocol_and_version() -> None:
    assert check_hello(Hello()) is None
    assert check_hello(Hello(token="t", client="anything")) is None


@pytest.mark.parametrize(
    "hello",
    [
        pytest.param(Hello(version=VERSION + 1), id="newer-version"),
        pytest.param(Hello(version=0), id="older-version"),
        pytest.param(Hello(protocol="socketeer-chat"), id="other-protocol"),
        pytest.param(Hello(version=VERSION + 1, protocol="ftp"), id="both"),
    ],
)
def test_a_hello_the_server_cannot_speak_is_refused(hello: Hello) -> None:
    refusal = check_hello(hello)
    assert refusal is not None
    assert refusal.code == "version"
    assert refusal.supported == (VERSION,)
    assert refusal.message

    pair = ConnectionPair().play([client_says(hello), server_says(refusal)])
    assert pair.seen[CLIENT] == [refusal]
    # The conversation is over, for both sides.
    with pytest.raises(LocalProtocolError):
        pair.client.send(List())
    with pytest.raises(LocalProtocolError):
        pair.server.send(Welcome())
    pair.client.receive_data(b"")
    assert pair.client.next_event() is CLOSED


# --------------------------------------------------------------- simple requests


@pytest.mark.parametrize(
    ("request_", "reply"),
    [
        pytest.param(List("docs"), Listing("docs", (ENTRY,)), id="list"),
        pytest.param(List(""), Listing("", ()), id="list-empty"),
        pytest.param(Stat("notes.txt"), StatReply(ENTRY), id="stat"),
        pytest.param(Mkdir("a/b", parents=True), Ok(), id="mkdir"),
        pytest.param(Delete("a", recursive=True), Ok(), id="delete"),
        pytest.param(Delete("a"), Error("not-empty", "a: directory not empty"), id="error"),
        pytest.param(Get("nope"), Error("not-found", "nope: no such file"), id="get-error"),
        pytest.param(Put("ro", 1), Error("read-only", "read-only"), id="put-error"),
    ],
)
def test_a_request_and_its_reply(request_: Message, reply: Message) -> None:
    pair = ConnectionPair().play(HANDSHAKE)
    pair.act(client_says(request_))
    assert pair.deliver(SERVER) == [request_]
    assert pair.server.request == request_
    assert pair.client.request == request_
    assert not pair.client.idle
    pair.act(server_says(reply))
    assert pair.deliver(CLIENT) == [reply]
    assert pair.client.idle
    assert pair.server.idle
    assert pair.client.request is None
    assert pair.server.request is None


# ------------------------------------------------------------------ downloads


def test_a_download_reports_its_raw_bytes_on_both_sides() -> None:
    pair = ConnectionPair().play([*HANDSHAKE, client_says(Get("f"))])
    pair.act(server_says(FileHeader(size=10, mtime=1.0, offset=0, length=10)))
    pair.flush()
    assert pair.client.receiving_raw
    assert not pair.server.receiving_raw
    assert pair.client.raw_remaining == pair.server.raw_remaining == 10

    pair.act(Streams(SERVER, b"0123"))
    assert pair.server.raw_remaining == 6
    assert pair.deliver(CLIENT) == [Data(b"0123")]
    assert pair.client.raw_remaining == 6

    # The rest is read straight from the socket, bypassing the machine.
    pair.server.sent_raw(6)
    pair.client.received_raw(6)
    assert pair.client.raw_remaining == pair.server.raw_remaining == 0
    assert not pair.client.receiving_raw
    assert pair.client.state == pair.server.state == "waiting for the end of the file"

    pair.act(server_says(Done("ab" * 32)))
    assert pair.deliver(CLIENT) == [Done("ab" * 32)]
    assert pair.client.idle
    assert pair.server.idle


def test_a_download_of_nothing_goes_straight_to_done() -> None:
    pair = ConnectionPair().play([*HANDSHAKE, client_says(Get("empty"))])
    pair.act(server_says(FileHeader(size=0, mtime=1.0, offset=0, length=0)))
    assert pair.deliver(CLIENT) == [FileHeader(0, 1.0, 0, 0)]
    assert not pair.client.receiving_raw
    assert pair.client.state == "waiting for the end of the file"
    # A server that reports the zero bytes it sent may still end the file.
    pair.server.sent_raw(0)
    pair.act(server_says(Done(hashlib.sha256(b"").hexdigest())))
    assert pair.deliver(CLIENT) == [Done(hashlib.sha256(b"").hexdigest())]
    assert pair.client.idle
    assert pair.server.idle


def test_header_and_file_bytes_arriving_together() -> None:
    pair = ConnectionPair().play([*HANDSHAKE, client_says(Get("f"))])
    data = pair.server.send(FileHeader(5, 1.0, 0, 5))
    pair.server.sent_raw(5)
    data += b"abcde" + pair.server.send(Done(None))
    pair.client.receive_data(data)
    assert drain(pair.client) == [FileHeader(5, 1.0, 0, 5), Data(b"abcde"), Done(None)]
    assert pair.client.idle


def test_raw_bytes_already_buffered_cannot_be_reported_as_read_from_the_socket() -> None:
    pair = ConnectionPair().play([*HANDSHAKE, client_says(Get("f"))])
    pair.client.receive_data(frame(FileHeader(5, 1.0, 0, 5)) + b"ab")
    assert pair.client.next_event() == FileHeader(5, 1.0, 0, 5)
    assert pair.client.buffered() == 2
    with pytest.raises(LocalProtocolError):
        pair.client.received_raw(3)
    assert pair.client.next_event() == Data(b"ab")
    pair.client.received_raw(3)
    assert pair.client.state == "waiting for the end of the file"


# -------------------------------------------------------------------- uploads


def test_an_upload_from_the_servers_offset() -> None:
    pair = ConnectionPair().play([*HANDSHAKE, client_says(Put("p", size=10, mtime=3.0))])
    pair.act(server_says(Ready(offset=4)))
    assert pair.deliver(CLIENT) == [Ready(4)]
    assert pair.client.raw_remaining == pair.server.raw_remaining == 6
    assert pair.server.receiving_raw
    assert not pair.client.receiving_raw

    pair.act(Streams(CLIENT, b"456789"))
    assert pair.client.raw_remaining == 0
    assert pair.client.state == "waiting for the upload's result"
    pair.act(client_says(Done("cd" * 32)))
    assert pair.deliver(SERVER) == [Data(b"456789"), Done("cd" * 32)]
    pair.act(server_says(Ok()))
    assert pair.deliver(CLIENT) == [Ok()]
    assert pair.client.idle
    assert pair.server.idle


def test_an_upload_read_straight_from_the_socket() -> None:
    pair = ConnectionPair().play([*HANDSHAKE, client_says(Put("p", size=3)), server_says(Ready())])
    pair.client.sent_raw(3)
    pair.server.received_raw(1)
    assert pair.server.raw_remaining == 2
    pair.server.received_raw(2)
    assert pair.server.state == "waiting for the upload's result"
    pair.act(client_says(Done(None)))
    assert pair.deliver(SERVER) == [Done(None)]


def test_an_upload_the_server_already_holds_ends_without_data() -> None:
    pair = ConnectionPair().play([*HANDSHAKE, client_says(Put("p", 3, 1.0))])
    pair.act(server_says(Ok(skipped=True)))
    assert pair.deliver(CLIENT) == [Ok(skipped=True)]
    assert pair.client.idle
    assert pair.client.raw_remaining == 0
    with pytest.raises(LocalProtocolError):
        pair.client.sent_raw(1)


def test_an_upload_offset_beyond_the_file_is_refused_on_both_sides() -> None:
    pair = ConnectionPair().play([*HANDSHAKE, client_says(Put("p", size=3))])
    with pytest.raises(LocalProtocolError, match="offset"):
        pair.server.send(Ready(4))
    pair.client.receive_data(frame(Ready(4)))
    with pytest.raises(RemoteProtocolError, match="offset"):
        pair.client.next_event()


# ------------------------------------------------------- what may not be sent now

Case = tuple[list[Step], Step]

OUT_OF_ORDER_SENDS = [
    pytest.param([], client_says(List()), id="request-before-hello"),
    pytest.param([], client_says(Done()), id="done-before-hello"),
    pytest.param([], server_says(Welcome()), id="welcome-before-hello"),
    pytest.param([client_says(Hello())], client_says(Hello()), id="hello-twice"),
    pytest.param([client_says(Hello())], client_says(List()), id="request-before-welcome"),
    pytest.param(HANDSHAKE, client_says(Hello()), id="hello-after-welcome"),
    pytest.param(HANDSHAKE, client_says(Welcome()), id="client-sends-welcome"),
    pytest.param(HANDSHAKE, client_says(Ok()), id="client-sends-a-reply"),
    pytest.param(HANDSHAKE, server_says(Listing()), id="reply-without-request"),
    pytest.param(HANDSHAKE, server_says(List()), id="server-sends-a-request"),
    pytest.param(HANDSHAKE, client_says(Done()), id="done-without-transfer"),
    pytest.param(HANDSHAKE, Streams(CLIENT, b"x"), id="raw-without-transfer"),
    pytest.param(HANDSHAKE, Streams(SERVER, b"x"), id="server-raw-without-transfer"),
    pytest.param([*HANDSHAKE, client_says(List())], client_says(Stat()), id="two-requests"),
    pytest.param([*HANDSHAKE, client_says(List())], server_says(FileHeader()), id="file-for-list"),
    pytest.param([*HANDSHAKE, client_says(List())], server_says(Done()), id="done-for-list"),
    pytest.param([*HANDSHAKE, client_says(Get())], server_says(Ready()), id="ready-for-get"),
    pytest.param([*HANDSHAKE, client_says(Put())], server_says(FileHeader()), id="file-for-put"),
    pytest.param([*HANDSHAKE, client_says(Get())], server_says(Welcome()), id="welcome-for-get"),
    pytest.param(
        [*HANDSHAKE, client_says(Get()), server_says(FileHeader(length=3))],
        server_says(Done()),
        id="done-before-the-files-bytes",
    ),
    pytest.param(
        [*HANDSHAKE, client_says(Get()), server_says(FileHeader(length=3))],
        Streams(SERVER, b"abcd"),
        id="more-raw-than-announced",
    ),
    pytest.param(
        [*HANDSHAKE, client_says(Get()), server_says(FileHeader(length=3))],
        Streams(CLIENT, b"a"),
        id="client-raw-during-download",
    ),
    pytest.param(
        [*HANDSHAKE, client_says(Get()), server_says(FileHeader(length=3))],
        client_says(List()),
        id="request-during-download",
    ),
    pytest.param(
        [*HANDSHAKE, client_says(Put(size=3)), server_says(Ready())],
        client_says(Done()),
        id="done-before-the-uploads-bytes",
    ),
    pytest.param(
        [*HANDSHAKE, client_says(Put(size=3)), server_says(Ready())],
        server_says(Ok()),
        id="result-before-the-uploads-bytes",
    ),
    pytest.param(
        [*HANDSHAKE, client_says(Put(size=3)), server_says(Ready()), Streams(CLIENT, b"abc")],
        server_says(Ok()),
        id="result-before-done",
    ),
    pytest.param(
        [*HANDSHAKE, client_says(Put(size=3)), server_says(Ready())],
        Streams(SERVER, b"a"),
        id="server-raw-during-upload",
    ),
]


@pytest.mark.parametrize(("prelude", "step"), OUT_OF_ORDER_SENDS)
def test_sending_out_of_order_is_our_fault(prelude: list[Step], step: Step) -> None:
    pair = ConnectionPair().play(prelude)
    state = pair.conn[step.by].state
    with pytest.raises(LocalProtocolError):
        pair.act(step)
    assert pair.conn[step.by].state == state  # nothing changed


# --------------------------------------------------- what may not be received now

OUT_OF_ORDER_RECEIVES = [
    pytest.param([], SERVER, frame(List()), id="request-before-hello"),
    pytest.param([], SERVER, frame(Welcome()), id="welcome-from-a-client"),
    pytest.param([], CLIENT, frame(Welcome()), id="welcome-before-hello"),
    pytest.param([], SERVER, b"GET / HTTP/1.1\r\n\r\n", id="http-request"),
    pytest.param([client_says(Hello())], SERVER, frame(Hello()), id="hello-twice"),
    pytest.param(HANDSHAKE, SERVER, frame(Hello()), id="hello-after-welcome"),
    pytest.param(HANDSHAKE, SERVER, frame(List()) + frame(Stat()), id="two-requests-at-once"),
    pytest.param(HANDSHAKE, SERVER, frame(Done()), id="done-without-transfer"),
    pytest.param(HANDSHAKE, SERVER, frame(Ok()), id="reply-from-a-client"),
    pytest.param(HANDSHAKE, CLIENT, frame(Ok()), id="reply-without-request"),
    pytest.param(HANDSHAKE, CLIENT, frame(Welcome()), id="second-welcome"),
    pytest.param(HANDSHAKE, CLIENT, frame(Get()), id="request-from-the-server"),
    pytest.param(HANDSHAKE, CLIENT, b"hello, world\n", id="raw-data-without-header"),
    pytest.param(HANDSHAKE, CLIENT, b"\x00\x00\x00\x05hello", id="raw-data-in-a-frame"),
    pytest.param(
        [*HANDSHAKE, client_says(List())], CLIENT, frame(FileHeader()), id="file-for-list"
    ),
    pytest.param([*HANDSHAKE, client_says(List())], CLIENT, frame(Done()), id="done-for-list"),
    pytest.param([*HANDSHAKE, client_says(Get())], CLIENT, frame(Ready()), id="ready-for-get"),
    pytest.param([*HANDSHAKE, client_says(Put())], CLIENT, frame(FileHeader()), id="file-for-put"),
    pytest.param(
        [*HANDSHAKE, client_says(Put(size=3))], CLIENT, frame(Ready(4)), id="offset-past-the-end"
    ),
    pytest.param(
        [*HANDSHAKE, client_says(Get()), server_says(FileHeader(length=3))],
        SERVER,
        frame(Done()),
        id="client-done-during-download",
    ),
    pytest.param(
        [*HANDSHAKE, client_says(Get()), server_says(FileHeader(length=3))],
        SERVER,
        frame(List()),
        id="request-during-download",
    ),
    pytest.param(
        [*HANDSHAKE, client_says(Get()), server_says(FileHeader(length=3))],
        CLIENT,
        b"abc" + b"defgh",
        id="more-raw-than-announced",
    ),
    pytest.param(
        [*HANDSHAKE, client_says(Put(size=3)), server_says(Ready())],
        SERVER,
        b"abc" + b"\x00\x00\x00\x02{}",
        id="more-upload-bytes-than-announced",
    ),
    pytest.param(
        [*HANDSHAKE, client_says(Put(size=3)), server_says(Ready())],
        CLIENT,
        frame(Ok()),
        id="result-during-upload",
    ),
    pytest.param(
        [client_says(Hello(version=9)), server_says(Error("version", "no", (1,)))],
        CLIENT,
        frame(Welcome()),
        id="anything-after-a-refusal",
    ),
]


@pytest.mark.parametrize(("prelude", "to", "data"), OUT_OF_ORDER_RECEIVES)
def test_receiving_out_of_order_is_the_peers_fault(
    prelude: list[Step], to: Role, data: bytes
) -> None:
    pair = ConnectionPair().play(prelude)
    pair.conn[to].receive_data(data)
    with pytest.raises(RemoteProtocolError):
        drain(pair.conn[to])


def test_bytes_past_a_download_are_read_as_the_next_message() -> None:
    pair = ConnectionPair().play(
        [*HANDSHAKE, client_says(Get()), server_says(FileHeader(length=3))]
    )
    pair.client.receive_data(b"abc" + frame(Done(None)))
    assert drain(pair.client) == [Data(b"abc"), Done(None)]
    assert pair.client.idle

    pair = ConnectionPair().play(
        [*HANDSHAKE, client_says(Get()), server_says(FileHeader(length=3))]
    )
    pair.client.receive_data(b"abcdefgh")
    assert pair.client.next_event() == Data(b"abc")
    with pytest.raises(RemoteProtocolError):
        pair.client.next_event()


# -------------------------------------------------------------- size limits


def test_a_control_frame_over_the_limit_is_refused_at_its_header() -> None:
    conn = FilesConnection(SERVER)
    conn.receive_data((MAX_CONTROL_SIZE + 1).to_bytes(4, "big"))  # no body at all
    with pytest.raises(RemoteProtocolError, match="limit"):
        conn.next_event()


def test_the_control_limit_is_inclusive() -> None:
    body = encode(Hello(client=""))
    limit = len(body) + 10
    exact = encode(Hello(client="x" * 10))
    assert len(exact) == limit

    conn = FilesConnection(SERVER, max_control=limit)
    conn.receive_data(frame(Hello(client="x" * 10)))
    assert conn.next_event() == Hello(client="x" * 10)

    conn = FilesConnection(SERVER, max_control=limit)
    conn.receive_data(frame(Hello(client="x" * 11))[:4])
    with pytest.raises(RemoteProtocolError, match="limit"):
        conn.next_event()


def header(length: int) -> bytes:
    return length.to_bytes(4, "big")


@pytest.mark.parametrize("pieces", [1, 64], ids=["with-its-header", "after-its-header"])
def test_a_huge_frame_before_hello_is_refused_at_its_header_keeping_nothing(pieces: int) -> None:
    # A stranger announces 16 MiB and sends 1 MiB of it: none of it is kept.
    conn = FilesConnection(SERVER, max_control=MAX_CONTROL_SIZE)
    body = bytes(1024 * 1024)
    conn.receive_data(header(MAX_CONTROL_SIZE) + body[: len(body) // pieces])
    assert conn.buffered() < MAX_CONTROL_BEFORE_HELLO
    for start in range(len(body) // pieces, len(body), len(body) // pieces):
        conn.receive_data(body[start : start + len(body) // pieces])
        assert conn.buffered() == 0
    with pytest.raises(RemoteProtocolError, match="over the 65536-byte limit before hello"):
        conn.next_event()
    with pytest.raises(RemoteProtocolError):  # and it stays refused
        conn.next_event()


def test_the_limit_before_hello_holds_until_the_welcome_is_sent() -> None:
    big = Hello(client="x" * MAX_CONTROL_BEFORE_HELLO)  # a hello over 64 KiB
    conn = FilesConnection(SERVER, max_control=MAX_CONTROL_SIZE)
    conn.receive_data(frame(big)[:4])
    with pytest.raises(RemoteProtocolError, match="before hello"):
        conn.next_event()

    # A request sent along with the hello is still a stranger's.
    conn = FilesConnection(SERVER, max_control=MAX_CONTROL_SIZE)
    conn.receive_data(frame(Hello()) + header(MAX_CONTROL_BEFORE_HELLO + 1))
    assert conn.next_event() == Hello()
    with pytest.raises(RemoteProtocolError, match="before hello"):
        conn.next_event()


def test_after_the_welcome_the_larger_limit_applies() -> None:
    pair = ConnectionPair().play(HANDSHAKE)
    request = List("x" * (MAX_CONTROL_BEFORE_HELLO * 2))
    pair.server.receive_data(frame(request))
    assert pair.server.next_event() == request

    pair = ConnectionPair().play(HANDSHAKE)  # the server's default: requests are small
    pair.server.receive_data(header(MAX_REQUEST_SIZE + 1))
    assert pair.server.buffered() == 0
    with pytest.raises(RemoteProtocolError, match=f"over the {MAX_REQUEST_SIZE}-byte limit$"):
        pair.server.next_event()


def test_a_frame_of_exactly_the_limit_before_hello_is_read() -> None:
    body = encode(Hello(client=""))
    hello = Hello(client="x" * (MAX_CONTROL_BEFORE_HELLO - len(body)))
    assert len(encode(hello)) == MAX_CONTROL_BEFORE_HELLO
    conn = FilesConnection(SERVER)
    conn.receive_data(frame(hello))
    assert conn.next_event() == hello


def test_the_limit_before_hello_is_never_above_the_limit_after() -> None:
    conn = FilesConnection(SERVER, max_control=100)
    assert conn.max_control_before_hello == 100
    with pytest.raises(ValueError, match="4-byte"):
        FilesConnection(SERVER, max_control=2**32)


def test_a_client_takes_a_large_listing_only_after_its_welcome() -> None:
    listing = Listing("", tuple(Entry(f"file-{i:06}", "file", i, 1.0) for i in range(30_000)))
    assert len(encode(listing)) > MAX_REQUEST_SIZE
    pair = ConnectionPair()
    pair.conn[CLIENT] = FilesConnection(CLIENT, max_control=MAX_CONTROL_SIZE)
    pair.play([*HANDSHAKE, client_says(List())])
    pair.client.receive_data(frame(listing))
    assert pair.client.next_event() == listing

    # A "server" that answers a hello with megabytes is refused at once.
    client = FilesConnection(CLIENT, max_control=MAX_CONTROL_SIZE)
    client.send(Hello())
    client.receive_data(frame(listing)[:100_000])
    assert client.buffered() == 0
    with pytest.raises(RemoteProtocolError, match="before hello"):
        client.next_event()


@pytest.mark.parametrize(
    ("prelude", "what"),
    [
        pytest.param([client_says(Hello())], "waiting for welcome", id="before-the-welcome"),
        pytest.param([*HANDSHAKE, client_says(List())], "waiting for a reply", id="before-a-reply"),
        pytest.param(HANDSHAKE, "idle", id="behind-a-request"),
        pytest.param(
            [*HANDSHAKE, client_says(Get()), server_says(FileHeader(length=10))],
            "file bytes",
            id="during-a-download",
        ),
    ],
)
def test_a_client_talking_out_of_turn_is_refused_before_it_fills_memory(
    prelude: list[Step], what: str
) -> None:
    # The server is busy answering; a client that keeps sending is not buffered forever.
    pair = ConnectionPair().play(prelude)
    chunk = bytes(64 * 1024)  # zeros: when read as frames, empty ones
    for _ in range(64):
        pair.server.receive_data(chunk)
        assert pair.server.buffered() <= 2 * (4 + pair.server.control_limit)
    with pytest.raises(RemoteProtocolError, match=f"out of turn \\({what}\\)"):
        pair.server.next_event()


def test_one_message_sent_early_is_still_read_in_turn() -> None:
    # A client may send its first request right behind its hello.
    pair = ConnectionPair()
    pair.server.receive_data(frame(Hello()) + frame(List("a")))
    assert pair.server.next_event() == Hello()
    pair.server.send(Welcome())
    assert pair.server.next_event() == List("a")


# ----------------------------------------------------- reassembly stays linear

BIG_LISTING = Listing("", tuple(Entry(f"name-{i:05}", "file", i, 2.5) for i in range(2_000)))


def reply_reader() -> FilesConnection:
    """A client waiting for the answer to ``list``, taking listings up to 16 MiB."""
    pair = ConnectionPair()
    pair.conn[CLIENT] = FilesConnection(CLIENT, max_control=MAX_CONTROL_SIZE)
    return pair.play([*HANDSHAKE, client_says(List())]).client


def read_in_pieces(conn: FilesConnection, pieces: Sequence[bytes]) -> list[Event]:
    """Feed ``pieces`` one by one, taking every event after each, as a socket reader does."""
    events: list[Event] = []
    for piece in pieces:
        conn.receive_data(piece)
        events += drain(conn)
    return events


@pytest.mark.parametrize("size", [1, 1024], ids=["1-byte", "1-KiB"])
def test_a_frame_in_small_pieces_reads_as_one_message(size: int) -> None:
    events = read_in_pieces(reply_reader(), every(size)(frame(BIG_LISTING)))
    assert events == [BIG_LISTING]


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_a_frame_split_anywhere_reads_as_one_message(data: st.DataObject) -> None:
    stream = frame(BIG_LISTING)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=40))
    points = [0, *sorted(cuts), len(stream)]
    pieces = [stream[a:b] for a, b in pairwise(points) if b > a]
    conn = reply_reader()
    assert read_in_pieces(conn, pieces) == [BIG_LISTING]
    assert conn.idle
    assert conn.buffered() == 0


class CountingBuffer(ReceiveBuffer):
    """A receive buffer that counts every byte copied into or out of it."""

    copied = 0

    def feed(self, data: bytes) -> None:
        CountingBuffer.copied += len(data)
        super().feed(data)

    def take(self, size: int = -1) -> bytes:
        chunk = super().take(size)
        CountingBuffer.copied += len(chunk)
        return chunk


def test_a_frame_in_1_kib_pieces_is_copied_a_constant_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Re-copying what waits on every piece would move ~n²/2 KiB: here over 100 MiB.
    monkeypatch.setattr(connection_module, "ReceiveBuffer", CountingBuffer)
    conn = reply_reader()
    data = frame(BIG_LISTING)
    assert len(data) > 100 * 1024
    CountingBuffer.copied = 0
    assert read_in_pieces(conn, every(1024)(data)) == [BIG_LISTING]
    assert CountingBuffer.copied <= 2 * len(data)  # in once, out once


# -------------------------------------------------------------------- EOF


@pytest.mark.parametrize(
    ("prelude", "to", "data"),
    [
        pytest.param([], SERVER, frame(Hello())[:2], id="inside-a-header"),
        pytest.param([], SERVER, frame(Hello())[:-1], id="inside-a-body"),
        pytest.param([client_says(Hello())], CLIENT, b"", id="waiting-for-welcome"),
        pytest.param([*HANDSHAKE, client_says(List())], CLIENT, b"", id="waiting-for-a-reply"),
        pytest.param(
            [*HANDSHAKE, client_says(Get()), server_says(FileHeader(length=3))],
            CLIENT,
            b"ab",
            id="inside-a-download",
        ),
        pytest.param(
            [*HANDSHAKE, client_says(Get()), server_says(FileHeader(length=3))],
            CLIENT,
            b"abc",
            id="before-a-downloads-done",
        ),
        pytest.param(
            [*HANDSHAKE, client_says(Put(size=3)), server_says(Ready())],
            SERVER,
            b"a",
            id="inside-an-upload",
        ),
        pytest.param(
            [*HANDSHAKE, client_says(Put(size=3)), server_says(Ready())],
            SERVER,
            b"abc",
            id="before-an-uploads-done",
        ),
    ],
)
def test_the_end_of_the_stream_inside_a_message_or_transfer_raises(
    prelude: list[Step], to: Role, data: bytes
) -> None:
    pair = ConnectionPair().play(prelude)
    conn = pair.conn[to]
    if data:
        conn.receive_data(data)
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed in the middle"):
        drain(conn)


@pytest.mark.parametrize(
    ("prelude", "to"),
    [
        pytest.param([], SERVER, id="server-before-hello"),
        pytest.param(HANDSHAKE, SERVER, id="server-idle"),
        pytest.param(CONVERSATION, SERVER, id="server-after-a-conversation"),
        pytest.param(CONVERSATION, CLIENT, id="client-idle"),
    ],
)
def test_the_end_of_the_stream_between_requests_is_closed(prelude: list[Step], to: Role) -> None:
    conn = ConnectionPair().play(prelude).conn[to]
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED
    assert conn.next_event() is CLOSED


def test_a_request_before_a_half_close_is_still_read_and_answered() -> None:
    conn = ConnectionPair().play(HANDSHAKE).server
    conn.receive_data(frame(List("x")))
    conn.receive_data(b"")
    assert conn.next_event() == List("x")
    conn.send(Listing("x"))
    assert conn.next_event() is CLOSED


# ------------------------------------------------------------ raw bookkeeping


def test_raw_bytes_reported_outside_a_transfer_are_our_fault() -> None:
    pair = ConnectionPair().play(HANDSHAKE)
    with pytest.raises(LocalProtocolError):
        pair.client.received_raw(1)
    with pytest.raises(LocalProtocolError):
        pair.server.sent_raw(1)
    pair.server.sent_raw(0)  # nothing sent is nothing to report
    assert pair.server.idle
    assert pair.server.raw_remaining == 0


def test_more_raw_bytes_than_announced_are_our_fault() -> None:
    pair = ConnectionPair().play(
        [*HANDSHAKE, client_says(Get()), server_says(FileHeader(length=4))]
    )
    with pytest.raises(LocalProtocolError):
        pair.server.sent_raw(5)
    with pytest.raises(LocalProtocolError):
        pair.client.received_raw(5)
    with pytest.raises(LocalProtocolError):
        pair.client.sent_raw(1)  # the client is the receiver here
    assert pair.client.raw_remaining == pair.server.raw_remaining == 4


# ----------------------------------------------------------------- refusals


def test_a_refusal_ends_the_connection_whatever_its_state() -> None:
    pair = ConnectionPair().play([*HANDSHAKE, client_says(Put(size=100)), server_says(Ready())])
    data = pair.server.refuse(Error("bad-request", "garbage"))
    assert data[:4] == (len(data) - 4).to_bytes(4, "big")
    assert decode(data[4:]) == Error("bad-request", "garbage")
    assert pair.server.state == "closed"
    with pytest.raises(LocalProtocolError):
        pair.server.send(Ok())
    pair.server.receive_data(frame(Done()))
    with pytest.raises(RemoteProtocolError):
        pair.server.next_event()


# -------------------------------------------------------------------- fuzzing

junk = st.lists(st.one_of(st.binary(max_size=16), any_message.map(frame)), max_size=5).map(b"".join)


def only_remote_errors(conn: FilesConnection, data: bytes) -> None:
    conn.receive_data(data)
    conn.receive_data(b"")
    try:
        events = drain(conn)
    except RemoteProtocolError:
        return
    assert events[-1] is CLOSED
    assert all(isinstance(e, Message | Data) for e in events[:-1])


@settings(max_examples=300)
@given(data=st.binary(max_size=64))
def test_arbitrary_bytes_to_a_server_raise_only_remote_protocol_error(data: bytes) -> None:
    only_remote_errors(FilesConnection(SERVER), data)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.integers(0, len(CONVERSATION)),
    to=st.sampled_from([CLIENT, SERVER]),
    data=junk,
)
def test_anything_at_any_point_of_a_conversation_raises_only_remote_protocol_error(
    steps: int, to: Role, data: bytes
) -> None:
    pair = ConnectionPair().play(CONVERSATION[:steps])
    only_remote_errors(pair.conn[to], data)


# ====================================================================== plain


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        pytest.param(b"\x00", True, id="nul"),
        pytest.param(b"\x00\x00\x00\x2a{", True, id="frame-header"),
        pytest.param(b"notes.txt\n", False, id="name"),
        pytest.param(b"\x01", False, id="one"),
        pytest.param(b"\xff\x00", False, id="nul-second"),
        pytest.param(b" \x00", False, id="space-then-nul"),
        pytest.param(b"", False, id="nothing"),
    ],
)
def test_only_a_nul_first_byte_opens_the_protocol(first: bytes, expected: bool) -> None:
    assert is_protocol_opening(first) is expected


@settings(max_examples=100)
@given(message=any_message)
def test_every_frame_opens_the_protocol(message: Message) -> None:
    assert is_protocol_opening(frame(message))


@pytest.mark.parametrize(
    ("pieces", "name"),
    [
        pytest.param([b"notes.txt\n"], "notes.txt", id="lf"),
        pytest.param([b"notes.txt\r\n"], "notes.txt", id="crlf"),
        pytest.param([b"docs/my notes.txt\n"], "docs/my notes.txt", id="spaces"),
        pytest.param([b"no", b"tes", b".txt", b"\r", b"\n"], "notes.txt", id="pieces"),
        pytest.param([b"a\nb\n"], "a", id="first-line-only"),
        pytest.param([b"caf\xc3\xa9\n"], "café", id="utf8"),
        pytest.param([b"caf\xe9\n"], "caf\udce9", id="latin1-survives"),
        pytest.param([b"x" * MAX_PLAIN_REQUEST + b"\n"], "x" * MAX_PLAIN_REQUEST, id="longest"),
    ],
)
def test_a_plain_request_names_a_file_on_its_first_line(pieces: list[bytes], name: str) -> None:
    request = PlainRequest()
    results = [request.feed(piece) for piece in pieces]
    assert results[-1] == name
    assert all(r is None for r in results[:-1])
    assert request.name == name
    assert request.feed(b"more\n") == name
    assert request.end() == name


@pytest.mark.parametrize(
    ("pieces", "name"),
    [
        pytest.param([b"notes.txt"], "notes.txt", id="whole"),
        pytest.param([b"no", b"tes.txt"], "notes.txt", id="pieces"),
        pytest.param([b"notes.txt\r"], "notes.txt", id="cr"),
        pytest.param([b"\xff\xfe"], "\udcff\udcfe", id="not-utf8"),
    ],
)
def test_a_plain_request_without_newline_ends_at_the_end(pieces: list[bytes], name: str) -> None:
    request = PlainRequest()
    assert [request.feed(piece) for piece in pieces] == [None] * len(pieces)
    assert request.end() == name


def test_a_non_utf8_name_keeps_its_bytes() -> None:
    raw = b"r\xe9sum\xe9.txt"
    name = PlainRequest().feed(raw + b"\n")
    assert name is not None
    assert name.encode("utf-8", "surrogateescape") == raw


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param([b"x" * (MAX_PLAIN_REQUEST + 1) + b"\n"], id="with-newline"),
        pytest.param([b"x" * (MAX_PLAIN_REQUEST + 1)], id="without-newline"),
        pytest.param([b"x" * 3000, b"x" * 3000], id="in-pieces"),
    ],
)
def test_an_over_long_plain_request_is_refused(pieces: list[bytes]) -> None:
    request = PlainRequest()
    for piece in pieces[:-1]:
        assert request.feed(piece) is None
    with pytest.raises(RemoteProtocolError, match="longer than"):
        request.feed(pieces[-1])


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param([b"\n"], id="lf"),
        pytest.param([b"\r\n"], id="crlf"),
        pytest.param([b"   \n"], id="blank"),
        pytest.param([], id="nothing-then-end"),
        pytest.param([b" \t"], id="blank-then-end"),
    ],
)
def test_an_empty_plain_request_is_refused(pieces: list[bytes]) -> None:
    def name_of(pieces: list[bytes]) -> str:
        request = PlainRequest()
        for piece in pieces:
            request.feed(piece)
        return request.end()

    with pytest.raises(RemoteProtocolError, match="no file name"):
        name_of(pieces)


@settings(max_examples=200)
@given(
    raw=st.binary(min_size=1, max_size=100).filter(lambda b: b"\n" not in b and b"\r" not in b),
    data=st.data(),
)
def test_a_plain_name_survives_any_split(raw: bytes, data: st.DataObject) -> None:
    stream = raw + b"\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    pieces = [stream[a:b] for a, b in pairwise([0, *cuts, len(stream)])]
    request = PlainRequest()
    try:
        results = [request.feed(piece) for piece in pieces]
    except RemoteProtocolError:
        assert not raw.decode("utf-8", "surrogateescape").strip()  # only a blank name
        return
    assert results[-1] is not None
    assert results[-1].encode("utf-8", "surrogateescape") == raw


# ====================================================================== paths


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("..", id="dotdot"),
        pytest.param("../x", id="dotdot-first"),
        pytest.param("a/../../x", id="dotdot-middle"),
        pytest.param("a/..", id="dotdot-last"),
        pytest.param("a/b/..", id="dotdot-even-inside"),
        pytest.param("/etc/passwd", id="absolute"),
        pytest.param("//server/share", id="double-slash"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("..\\..\\x", id="backslash-dotdot"),
        pytest.param("C:x", id="drive-relative"),
        pytest.param("c:/x", id="drive-absolute"),
        pytest.param("Z:", id="drive-alone"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("x" * (MAX_NAME_BYTES + 1), id="name-over-255-bytes"),
        pytest.param("a/" + "x" * (MAX_NAME_BYTES + 1), id="inner-name-over-255-bytes"),
        pytest.param("é" * 128, id="name-over-255-bytes-in-utf8"),
        pytest.param("\udce9" * (MAX_NAME_BYTES + 1), id="name-over-255-escaped-bytes"),
        pytest.param("a/" * (MAX_PATH_BYTES // 2) + "a", id="path-over-4096-bytes"),
        pytest.param("é/" * 1365 + "éé", id="path-over-4096-bytes-in-utf8"),
        pytest.param(partial_name("x"), id="partial"),
        pytest.param("docs/" + partial_name("report.pdf"), id="partial-inside"),
        pytest.param(partial_name("d") + "/x", id="through-a-partial"),
        pytest.param("caf\ud800", id="lone-surrogate"),
    ],
)
def test_refused_paths(path: str) -> None:
    with pytest.raises(PathRefused):
        split_remote(path)


@pytest.mark.parametrize(
    ("path", "names"),
    [
        pytest.param("", (), id="empty"),
        pytest.param(".", (), id="dot"),
        pytest.param("./", (), id="dot-slash"),
        pytest.param("a", ("a",), id="one-name"),
        pytest.param("a/b", ("a", "b"), id="two-names"),
        pytest.param("./a//b/", ("a", "b"), id="dots-and-slashes"),
        pytest.param("...", ("...",), id="three-dots"),
        pytest.param("..a/b..", ("..a", "b.."), id="dots-in-names"),
        pytest.param(".hidden", (".hidden",), id="hidden"),
        pytest.param("x.socketeer-part", ("x.socketeer-part",), id="suffix-without-dot"),
        pytest.param("ab:c", ("ab:c",), id="colon-not-a-drive"),
        pytest.param("日本/café ñ.txt", ("日本", "café ñ.txt"), id="non-ascii"),
        pytest.param("caf\udce9", ("caf\udce9",), id="surrogate-escaped"),
        pytest.param("x" * MAX_NAME_BYTES, ("x" * MAX_NAME_BYTES,), id="name-of-255-bytes"),
        pytest.param("é" * 127, ("é" * 127,), id="name-of-254-utf8-bytes"),
    ],
)
def test_accepted_paths(path: str, names: tuple[str, ...]) -> None:
    assert split_remote(path) == names


def test_a_path_of_exactly_4096_bytes_is_accepted() -> None:
    path = "a/" * (MAX_PATH_BYTES // 2 - 1) + "ab"
    assert len(path.encode()) == MAX_PATH_BYTES
    assert len(split_remote(path)) == MAX_PATH_BYTES // 2


@settings(max_examples=200)
@given(name=st.text(st.characters(codec="utf-8", exclude_characters="/\\\x00"), max_size=12))
def test_partial_names_are_recognised_and_refused(name: str) -> None:
    partial = partial_name(name)
    assert is_partial(partial)
    assert partial != name
    with pytest.raises(PathRefused, match="partial transfer"):
        split_remote(partial)
    with pytest.raises(PathRefused, match="partial transfer"):
        split_remote(f"dir/{partial}/x")


@pytest.mark.parametrize("name", ["notes.txt", ".hidden", "x.socketeer-part", ".socketeer"])
def test_ordinary_names_are_not_partial(name: str) -> None:
    assert not is_partial(name)


@settings(max_examples=500)
@given(
    path=st.one_of(
        st.text(max_size=30),
        st.lists(st.sampled_from(["a", "..", ".", "", "\\", "C:", "é", "\x00", "\ud800"])).map(
            "/".join
        ),
    )
)
def test_any_path_is_refused_or_safe(path: str) -> None:
    try:
        names_ = split_remote(path)
    except PathRefused:
        return
    for name in names_:
        assert name not in ("", ".", "..")
        assert not {"/", "\\", "\x00"} & set(name)
        assert len(name.encode("utf-8", "surrogateescape")) <= MAX_NAME_BYTES
        assert not is_partial(name)


# ------------------------------------------------------------------ pipelining

PIPELINED: list[Step] = [
    client_says(Hello(hashes=("blake3", "sha256"))),
    server_says(Welcome(server="socketeer test", writable=True, hash="blake3", pipeline=65536)),
]


def test_a_pipelining_client_sends_requests_ahead_and_matches_replies_in_order() -> None:
    pair = ConnectionPair().play(PIPELINED)
    gets = [Get("a"), Get("b"), Stat("c")]
    for request_ in gets:
        pair.act(client_says(request_))
    assert pair.client.in_flight == 3
    assert pair.client.request == gets[0]
    assert pair.deliver(SERVER) == [gets[0]]  # the server takes one at a time, in order
    pair.act(server_says(FileHeader(2, 1.0, 0, 2)))
    pair.act(Streams(SERVER, b"aa"))
    pair.act(server_says(Done(blake3="ab" * 32)))
    assert drain(pair.server) == [gets[1]]
    pair.act(server_says(Error("not-found", "b: no such file")))
    assert drain(pair.server) == [gets[2]]
    pair.act(server_says(StatReply(ENTRY)))
    assert pair.deliver(CLIENT) == [
        FileHeader(2, 1.0, 0, 2),
        Data(b"aa"),
        Done(blake3="ab" * 32),
        Error("not-found", "b: no such file"),
        StatReply(ENTRY),
    ]
    assert pair.client.idle
    assert pair.client.in_flight == 0


def test_without_a_pipeline_in_the_welcome_a_client_sends_one_request_at_a_time() -> None:
    pair = ConnectionPair().play([*HANDSHAKE, client_says(Get("a"))])
    with pytest.raises(LocalProtocolError):
        pair.client.send(Get("b"))


def test_an_upload_that_follows_its_request_needs_no_ready() -> None:
    pair = ConnectionPair().play(PIPELINED)
    for name in ("x", "y"):
        pair.act(client_says(Put(name, 3, 1.0, follows=True)))
        pair.act(Streams(CLIENT, name.encode() * 3))
        pair.act(client_says(Done(blake3="cd" * 32)))
    put_x = Put("x", 3, 1.0, follows=True)
    assert pair.deliver(SERVER) == [put_x, Data(b"xxx"), Done(blake3="cd" * 32)]
    assert pair.server.awaiting_reply
    pair.act(server_says(Ok()))
    assert merged(drain(pair.server)) == [
        Put("y", 3, 1.0, follows=True),
        Data(b"yyy"),
        Done(blake3="cd" * 32),
    ]
    pair.act(server_says(Ok(skipped=True)))
    assert pair.deliver(CLIENT) == [Ok(), Ok(skipped=True)]
    assert pair.client.idle
    assert pair.server.idle


def test_a_put_that_waits_for_ready_cannot_be_sent_ahead() -> None:
    pair = ConnectionPair().play([*PIPELINED, client_says(Get("a"))])
    with pytest.raises(LocalProtocolError):
        pair.client.send(Put("b", 3))


def test_nothing_is_sent_ahead_while_an_uploads_bytes_are_due() -> None:
    pair = ConnectionPair().play([*PIPELINED, client_says(Get("a"))])
    pair.client.send(Put("b", 3, follows=True))
    with pytest.raises(LocalProtocolError):
        pair.client.send(Get("c"))
    pair.client.sent_raw(3)
    with pytest.raises(LocalProtocolError):
        pair.client.send(Get("c"))
    pair.client.send(Done())
    pair.client.send(Get("c"))
    assert pair.client.in_flight == 3


def test_a_ready_for_an_upload_that_follows_is_the_servers_fault() -> None:
    pair = ConnectionPair().play([*PIPELINED, client_says(Get("a"))])
    pair.client.send(Put("b", 0, follows=True))
    pair.client.send(Done())
    for message in (FileHeader(0, 1.0, 0, 0), Done()):
        pair.client.receive_data(frame(message))
    pair.client.receive_data(frame(Ready(0)))
    assert drain_until_error(pair.client) == [FileHeader(0, 1.0, 0, 0), Done()]


def drain_until_error(conn: FilesConnection) -> list[Event]:
    """The events before ``conn`` finds the peer at fault (and that it does)."""
    events: list[Event] = []
    while True:
        try:
            event = conn.next_event()
        except RemoteProtocolError:
            return events
        assert event is not NEED_DATA, "the peer's mistake went unnoticed"
        events.append(event)


def test_a_recursive_listing_comes_in_several_listings() -> None:
    pair = ConnectionPair().play([*PIPELINED, client_says(List("", recursive=True))])
    parts = [
        Listing("", (Entry("docs", "dir", 0, 1.0),), more=True),
        Listing("docs", (ENTRY,), more=True),
        Listing("docs/empty", ()),
    ]
    for part in parts:
        pair.act(server_says(part))
    assert pair.deliver(CLIENT) == parts
    assert pair.client.idle


def test_more_listings_for_a_plain_list_are_the_servers_fault() -> None:
    pair = ConnectionPair().play([*PIPELINED, client_says(List(""))])
    pair.client.receive_data(frame(Listing("", (), more=True)))
    with pytest.raises(RemoteProtocolError):
        pair.client.next_event()


def test_a_server_takes_no_more_sent_ahead_than_its_pipeline() -> None:
    pair = ConnectionPair().play(PIPELINED)
    pair.server.receive_data(frame(Get("a")))
    assert pair.server.next_event() == Get("a")
    pipelined = frame(Get("b" * 1000))
    allowed = max(MAX_REQUEST_SIZE, 65536)  # a request's worth, or the pipeline if larger
    for _ in range(allowed // len(pipelined)):
        pair.server.receive_data(pipelined)
    assert pair.server.next_event() is NEED_DATA  # they wait for their turn
    pair.server.receive_data(pipelined)
    with pytest.raises(RemoteProtocolError, match="out of turn"):
        pair.server.next_event()


def test_a_server_sees_the_gets_sent_ahead_up_to_anything_else() -> None:
    pair = ConnectionPair().play(PIPELINED)
    ahead = [Get("a"), Get("b"), Get("c"), Delete("c"), Get("d")]
    pair.server.receive_data(b"".join(frame(message) for message in ahead))
    assert pair.server.next_event() == Get("a")
    assert pair.server.requests_ahead(10) == [Get("b"), Get("c")]  # not past the delete
    assert pair.server.requests_ahead(1) == [Get("b")]
    pair.server.send(FileHeader(0, 1.0, 0, 0))
    pair.server.send(Done())
    assert pair.server.next_event() == Get("b")  # nothing was taken by looking
