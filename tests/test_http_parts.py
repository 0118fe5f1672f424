"""The sans-IO parts of HTTP: request lines, targets, ranges, validators, logins, listings."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketeer.http.access import COOKIE, Access, Grant, parse_cookies, same_origin
from socketeer.http.detect import is_request_line
from socketeer.http.listing import ListingView, render_listing
from socketeer.http.targets import BadTarget, parse_target
from socketeer.http.validators import (
    ByteRange,
    Unsatisfiable,
    entity_tag,
    http_date,
    if_range_holds,
    none_match,
    parse_http_date,
    parse_range,
)
from socketeer.services.files.messages import Entry


@pytest.mark.parametrize(
    "line",
    [b"GET / HTTP/1.1\r\n", b"HEAD /a%20b?x HTTP/1.0", b"PUT /x HTTP/1.1\n", b"OPTIONS * HTTP/1.1"],
)
def test_request_lines_are_recognised(line: bytes) -> None:
    assert is_request_line(line)


@pytest.mark.parametrize(
    "line", [b"GET stuff", b"a.txt", b"GET / HTTP/2\r\n", b"get / HTTP/1.1", b"GET  / HTTP/1.1"]
)
def test_file_names_are_not_requests(line: bytes) -> None:
    assert not is_request_line(line)


@pytest.mark.parametrize(
    "raw",
    [
        b"/..",
        b"/a/../b",
        b"/%2e%2e/etc/passwd",
        b"/%2E%2E%2Fetc",
        b"/..%2f..%2fetc/passwd",
        b"/a%5c..%5c..",
        b"//etc/passwd",
        b"/a//b",
        b"/%c0%ae%c0%ae/",
        b"/%c0%af",
        b"/a%00b",
        b"/./a",
        b"relative",
        b"http://evil/x",
    ],
)
def test_path_tricks_are_refused(raw: bytes) -> None:
    with pytest.raises(BadTarget):
        parse_target(raw)


def test_targets_decode_names_and_queries() -> None:
    target = parse_target(b"/a%20b/%E2%9C%93.txt?zip&sort=size")
    assert target.path == "a b/\u2713.txt"
    assert target.names == ("a b", "\u2713.txt")
    assert not target.directory
    assert target.query == {"zip": "", "sort": "size"}
    assert parse_target(b"/").path == ""
    assert parse_target(b"/").directory
    assert parse_target(b"/d/").directory


@given(st.binary(max_size=60))
def test_no_target_leads_up_or_holds_empty_names(raw: bytes) -> None:
    try:
        target = parse_target(b"/" + raw)
    except BadTarget:
        return
    for name in target.names:
        assert name not in ("", ".", "..")
        assert "\x00" not in name
        assert "\\" not in name


def test_ranges() -> None:
    assert parse_range("bytes=0-9", 100) == ByteRange(0, 9, 100)
    assert parse_range("bytes=90-", 100) == ByteRange(90, 99, 100)
    assert parse_range("bytes=-10", 100) == ByteRange(90, 99, 100)
    assert parse_range("bytes=50-1000", 100) == ByteRange(50, 99, 100)
    assert parse_range("bytes=0-1,5-6", 100) is None  # several: the whole file
    assert parse_range("items=0-1", 100) is None
    assert parse_range("bytes=9-2", 100) is None
    assert ByteRange(90, 99, 100).content_range == "bytes 90-99/100"
    with pytest.raises(Unsatisfiable):
        parse_range("bytes=100-", 100)
    with pytest.raises(Unsatisfiable):
        parse_range("bytes=-5", 0)


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10**6))
def test_a_range_stays_inside_the_file(first: int, last: int, size: int) -> None:
    try:
        found = parse_range(f"bytes={first}-{last}", size)
    except Unsatisfiable:
        assert first >= size
        return
    if found is not None:
        assert 0 <= found.start <= found.end < size


def test_dates_and_tags() -> None:
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert parse_http_date("yesterday") is None
    tag = entity_tag(1, 2, 3)
    assert none_match(tag, tag)
    assert none_match(f'"x", W/{tag}', tag)
    assert none_match("*", tag)
    assert not none_match('"x"', tag)
    assert if_range_holds(tag, tag, 0)
    assert not if_range_holds(f"W/{tag}", tag, 0)
    assert if_range_holds("Sun, 06 Nov 1994 08:49:37 GMT", tag, 784111777.5)


def test_logins_and_bearer_tokens() -> None:
    access = Access(lambda token: token == "tok")
    assert access.check("Bearer tok", {}, 0).grant is Grant.BEARER
    wrong = access.check("Bearer nope", {}, 0)
    assert wrong.grant is Grant.NONE
    assert wrong.failed
    assert access.login("nope", 0) is None
    session = access.login("tok", 0)
    assert session is not None
    assert access.check(None, {COOKIE: session}, 10).grant is Grant.COOKIE
    assert access.check(None, {COOKIE: session}, 10**9).grant is Grant.NONE  # expired
    assert access.check(None, {COOKIE: "forged"}, 10).grant is Grant.NONE


def test_basic_pairs_are_read_only_with_accounts_and_cookies_name_their_account() -> None:
    access = Access(None, accounts=True)
    good = "Basic " + base64.b64encode(b"ann:pw:with:colons").decode()
    assert access.check(good, {}, 0).basic == ("ann", "pw:with:colons")
    assert access.check(good, {}, 0).grant is Grant.BASIC
    assert access.check("Basic !!!", {}, 0).failed
    assert access.check("Basic " + base64.b64encode(b"no-colon").decode(), {}, 0).failed
    assert Access(None).check(good, {}, 0).grant is Grant.NONE  # no accounts: no Basic
    session = access.open_session("ann", 0)
    assert access.check(None, {COOKIE: session}, 10).user == "ann"


def test_cookies_and_origins() -> None:
    assert parse_cookies('a=1; b="2"; junk') == {"a": "1", "b": "2"}
    assert same_origin("http://127.0.0.1:80", "127.0.0.1:80", "http")
    assert not same_origin("http://evil.example", "127.0.0.1:80", "http")
    assert not same_origin(None, "127.0.0.1:80", "http")


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "same"),
    [
        ("http://example.org", "example.org:80", "http", True),  # the default port
        ("https://example.org:443", "Example.ORG", "https", True),
        ("http://[::1]:8000", "[::1]:8000", "http", True),
        ("https://example.org:8000", "example.org:8000", "http", False),  # another scheme
        ("http://example.org:8000", "example.org:8000", "https", False),
        ("ws://example.org:8000", "example.org:8000", "http", False),
        ("http://example.org", "example.org:443", "https", False),
        ("https://example.org", "example.org:80", "http", False),
        ("http://example.org:8000", "example.org:8001", "http", False),  # another port
        ("http://example.org:", "example.org:80", "http", False),
        ("http://example.org:+80", "example.org:80", "http", False),
        ("http://example.org:99999", "example.org:99999", "http", False),
        ("http://example.org/", "example.org", "http", False),  # a URL, not an origin
        ("http://me@example.org", "example.org", "http", False),
        ("http://example.org", "me@example.org", "http", False),
        ("http://[::1", "[::1", "http", False),
        ("null", "example.org", "http", False),
        ("example.org", "example.org", "http", False),
    ],
)
def test_origins_are_compared_as_browsers_do(
    origin: str, host: str, scheme: str, same: bool
) -> None:
    assert same_origin(origin, host, scheme) is same


@given(st.text(max_size=40), st.text(max_size=40), st.sampled_from(["http", "https"]))
def test_origin_comparison_takes_any_text(origin: str, host: str, scheme: str) -> None:
    assert same_origin(origin, host, scheme) in (True, False)


def test_a_listing_shows_hostile_names_as_text() -> None:
    hostile = '<img src=x onerror="alert(1)">'
    page = render_listing([Entry(hostile, "file", 3, 0.0)], ListingView(""))
    assert hostile not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "/%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E" in page
