"""Parsing the addresses users type into endpoints, and showing them back."""

from __future__ import annotations

from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socketeer.endpoint import Endpoint, Transport, describe_peer, parse_endpoint
from socketeer.errors import EndpointError

ACCEPTED: list[tuple[str, Endpoint, str | None]] = [
    # (typed, parsed, shown; None: shown as typed)
    ("localhost:8080", Endpoint("tcp", "localhost", 8080), "localhost:8080"),
    ("example.com:443", Endpoint("tcp", "example.com", 443), "example.com:443"),
    ("example.com.:443", Endpoint("tcp", "example.com.", 443), "example.com.:443"),
    ("my_host-1:1", Endpoint("tcp", "my_host-1", 1), "my_host-1:1"),
    ("127.0.0.1:0", Endpoint("tcp", "127.0.0.1", 0), "127.0.0.1:0"),
    ("0.0.0.0:65535", Endpoint("tcp", "0.0.0.0", 65535), "0.0.0.0:65535"),
    ("localhost:00080", Endpoint("tcp", "localhost", 80), "localhost:80"),
    (":8080", Endpoint("tcp", None, 8080), ":8080"),
    (":0", Endpoint("tcp", None, 0), ":0"),
    ("tcp://example.com:80", Endpoint("tcp", "example.com", 80), "example.com:80"),
    ("TCP://example.com:80", Endpoint("tcp", "example.com", 80), "example.com:80"),
    ("tcp://:80", Endpoint("tcp", None, 80), ":80"),
    ("[::1]:8080", Endpoint("tcp", "::1", 8080), "[::1]:8080"),
    ("[::]:0", Endpoint("tcp", "::", 0), "[::]:0"),
    ("tcp://[::1]:8080", Endpoint("tcp", "::1", 8080), "[::1]:8080"),
    ("[fe80::1%eth0]:80", Endpoint("tcp", "fe80::1%eth0", 80), "[fe80::1%eth0]:80"),
    ("[::ffff:1.2.3.4]:5", Endpoint("tcp", "::ffff:1.2.3.4", 5), "[::ffff:1.2.3.4]:5"),
    ("udp://0.0.0.0:53", Endpoint("udp", "0.0.0.0", 53), "udp://0.0.0.0:53"),
    ("udp://:53", Endpoint("udp", None, 53), "udp://:53"),
    ("udp://[::1]:53", Endpoint("udp", "::1", 53), "udp://[::1]:53"),
    ("tls://127.0.0.1:9443", Endpoint("tcp", "127.0.0.1", 9443, tls=True), None),
    (
        "TLS://example.com:443",
        Endpoint("tcp", "example.com", 443, tls=True),
        "tls://example.com:443",
    ),
    ("tls://[::1]:9443", Endpoint("tcp", "::1", 9443, tls=True), None),
    ("tls://:9443", Endpoint("tcp", None, 9443, tls=True), None),
    ("unix:///tmp/socketeer.sock", Endpoint("unix", path="/tmp/socketeer.sock"), None),
    ("unix://relative.sock", Endpoint("unix", path="relative.sock"), None),
    ("unix://dir/x.sock", Endpoint("unix", path="dir/x.sock"), None),
    ("unix:///" + "a" * 106, Endpoint("unix", path="/" + "a" * 106), None),
]


def shown_as(typed: str, shown: str | None) -> str:
    return typed if shown is None else shown


@pytest.mark.parametrize(("typed", "parsed", "shown"), ACCEPTED, ids=[a[0][:40] for a in ACCEPTED])
def test_accepted_forms(typed: str, parsed: Endpoint, shown: str | None) -> None:
    endpoint = parse_endpoint(typed)
    assert endpoint == parsed
    assert str(endpoint) == shown_as(typed, shown)
    assert parse_endpoint(str(endpoint)) == endpoint


def test_default_transport_applies_without_a_scheme() -> None:
    endpoint = parse_endpoint("localhost:53", "udp")
    assert endpoint == Endpoint("udp", "localhost", 53)
    assert str(endpoint) == "udp://localhost:53"
    assert parse_endpoint(str(endpoint)) == endpoint
    assert parse_endpoint("tcp://localhost:53", "udp").transport == "tcp"


def test_endpoint_properties() -> None:
    assert parse_endpoint("localhost:1").is_stream
    assert parse_endpoint("unix://x.sock").is_stream
    assert not parse_endpoint("udp://localhost:1").is_stream
    assert parse_endpoint(":1").connect_host == "localhost"
    assert parse_endpoint("example.com:1").connect_host == "example.com"
    chosen = parse_endpoint("[::1]:0").with_port(43210)
    assert chosen == Endpoint("tcp", "::1", 43210)
    assert str(chosen) == "[::1]:43210"


MALFORMED: list[tuple[str, str]] = [
    # (typed, what the message must say)
    ("localhost", "expected HOST:PORT or :PORT"),
    ("tcp://localhost", "expected HOST:PORT or :PORT"),
    ("udp://", "expected HOST:PORT or :PORT"),
    ("localhost:", "missing port"),
    (":", "missing port"),
    ("[::1]:", "missing port"),
    ("udp://host:", "missing port"),
    ("localhost:65536", "port 65536 is out of range 0-65535"),
    ("localhost:99999999999", "is out of range 0-65535"),
    ("[::1]:70000", "port 70000 is out of range 0-65535"),
    ("localhost:http", "port 'http' is not a number"),
    ("localhost:-1", "port '-1' is not a number"),
    ("localhost:+1", "port '+1' is not a number"),
    ("localhost:1.5", "port '1.5' is not a number"),
    ("localhost:８０", "is not a number"),  # noqa: RUF001  (full-width digits)
    ("localhost:²", "is not a number"),
    ("ftp://host:21", "unknown scheme 'ftp' (use tcp://, udp://, unix://, tls://)"),
    ("tls://host", "expected HOST:PORT or :PORT"),
    ("tls://::1:443", "write IPv6 addresses in brackets"),
    ("http://example.com:80", "unknown scheme 'http'"),
    ("://host:1", "unknown scheme ''"),
    ("::1:8080", "write IPv6 addresses in brackets, like [::1]:PORT"),
    ("fe80::1", "write IPv6 addresses in brackets"),
    ("tcp://::1:80", "write IPv6 addresses in brackets"),
    ("[::1:8080", "missing ']' after IPv6 address"),
    ("[::1]8080", "expected ':PORT' after ']'"),
    ("[::1]", "expected ':PORT' after ']'"),
    ("[localhost]:80", "'localhost' is not an IPv6 address"),
    ("[127.0.0.1]:80", "'127.0.0.1' is not an IPv6 address"),
    ("[]:80", "'' is not an IPv6 address"),
    ("", "empty or surrounded by spaces"),
    (" localhost:80", "empty or surrounded by spaces"),
    ("localhost:80 ", "empty or surrounded by spaces"),
    ("localhost:80\n", "empty or surrounded by spaces"),
    ("  ", "empty or surrounded by spaces"),
    ("local\x00host:80", "contains a NUL byte"),
    ("unix:///tmp/a\x00b", "contains a NUL byte"),
    ("unix://", "a Unix socket needs a path"),
    ("unix:///" + "a" * 107, "Unix socket path longer than 107 bytes"),
    ("unix:///" + "é" * 54, "Unix socket path longer than 107 bytes"),
    ("local host:80", "'local host' is not a valid host name"),
    ("-bad:80", "'-bad' is not a valid host name"),
    ("bad!:80", "'bad!' is not a valid host name"),
    ("a..b:80", "'a..b' is not a valid host name"),
    ("1.2.3.999:80", "'1.2.3.999' is not a valid host name"),
    ("1.2.3:80", "'1.2.3' is not a valid host name"),
    ("exämple.com:80", "is not a valid host name"),
    ("a" * 64 + ".com:80", "is not a valid host name"),
    (".".join(["abcdefghi"] * 26) + ":80", "is not a valid host name"),
]


@pytest.mark.parametrize(("typed", "reason"), MALFORMED, ids=[m[0][:40] for m in MALFORMED])
def test_malformed_forms(typed: str, reason: str) -> None:
    with pytest.raises(EndpointError) as info:
        parse_endpoint(typed)
    message = str(info.value)
    assert message.startswith(f"invalid endpoint {typed!r}: ")
    assert reason in message
    assert len(message.splitlines()) == 1


def test_endpoint_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="missing port"):
        parse_endpoint("localhost:")


def test_port_with_thousands_of_digits_is_an_endpoint_error() -> None:
    with pytest.raises(EndpointError, match="out of range"):
        parse_endpoint("localhost:" + "1" * 5000)


def test_unix_path_with_surrogate_escapes() -> None:
    path = "/tmp/\udcff.sock"  # how Python shows the bytes b"/tmp/\xff.sock" from argv
    assert parse_endpoint(f"unix://{path}") == Endpoint("unix", path=path)


# --------------------------------------------------------------------------- properties

endpoint_alphabet = st.sampled_from(list("[]:/.%0123456789abcdefxlhostcpnuidé \x00\n-_"))
typed_texts = st.one_of(
    st.text(max_size=40),
    st.text(endpoint_alphabet, max_size=30),
    st.tuples(
        st.sampled_from(["", "tcp://", "udp://", "unix://", "UDP://", "tcp:/", "tls://", "["]),
        st.text(endpoint_alphabet, max_size=30),
    ).map("".join),
)


@settings(max_examples=500)
@given(typed=typed_texts)
def test_any_text_parses_or_raises_endpoint_error(typed: str) -> None:
    try:
        endpoint = parse_endpoint(typed)
    except EndpointError as exc:
        message = str(exc)
    else:
        assert isinstance(endpoint, Endpoint)
        assert parse_endpoint(str(endpoint)) == endpoint
        return
    assert len(message.splitlines()) == 1
    assert message.startswith("invalid endpoint ")


labels = st.from_regex(r"[a-z0-9_]([a-z0-9_-]{0,10})", fullmatch=True)
hosts = st.one_of(
    st.none(),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.lists(labels, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda h: not h.replace(".", "").isdigit()),
)


@settings(max_examples=300)
@given(
    transport=st.sampled_from(["tcp", "udp", "tls"]),
    host=hosts,
    port=st.integers(0, 65535),
)
def test_network_endpoints_round_trip(transport: str, host: str | None, port: int) -> None:
    if transport == "tls":
        endpoint = Endpoint("tcp", host, port, tls=True)
    else:
        endpoint = Endpoint(cast(Transport, transport), host, port)
    assert parse_endpoint(str(endpoint)) == endpoint


@settings(max_examples=200)
@given(
    path=st.text(
        st.characters(exclude_characters="\x00", exclude_categories=["Cs"]),
        min_size=1,
        max_size=80,
    )
)
def test_unix_endpoints_round_trip(path: str) -> None:
    endpoint = Endpoint("unix", path=path)
    typed = str(endpoint)
    if typed != typed.strip() or len(path.encode()) > 107:
        with pytest.raises(EndpointError):
            parse_endpoint(typed)
    else:
        assert parse_endpoint(typed) == endpoint


# --------------------------------------------------------------------------- describe_peer


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        (("127.0.0.1", 8080), "127.0.0.1:8080"),
        (("::1", 8080, 0, 0), "[::1]:8080"),
        (("fe80::1%eth0", 22, 0, 2), "[fe80::1%eth0]:22"),
        (("localhost", 0), "localhost:0"),
        ("/tmp/socketeer.sock", "unix:///tmp/socketeer.sock"),
        ("relative.sock", "unix://relative.sock"),
        (b"/tmp/socketeer.sock", "unix:///tmp/socketeer.sock"),
        (b"/tmp/\xff.sock", "unix:///tmp/\\xff.sock"),
        ("/tmp/\x1b[2J.sock", "unix:///tmp/\\x1b[2J.sock"),
        ("", "unix client"),
        (b"", "unix client"),
        (None, "unix client"),
    ],
)
def test_describe_peer(address: object, shown: str) -> None:
    assert describe_peer(address) == shown
