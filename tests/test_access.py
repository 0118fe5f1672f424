"""--allow and --deny: the rules (sans-IO, hypothesis) and the server refusing before a byte."""

from __future__ import annotations

import ipaddress
import random
import signal
import socket
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from socketeer.access import AccessError, AccessRules, AccessSources, NetworkSet, parse_rules
from socketeer.access import parse_network as network
from support import (
    WAIT,
    ServeInThread,
    ServeProcess,
    assert_one_line_error,
    recv_all,
    run_cli,
    wait_until,
)

ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
v4_networks = st.builds(
    lambda a, p: ipaddress.IPv4Network((a, p), strict=False), ipv4, st.integers(0, 32)
)
v6_networks = st.builds(
    lambda a, p: ipaddress.IPv6Network((a, p), strict=False), ipv6, st.integers(0, 128)
)


Networks = list[ipaddress.IPv4Network | ipaddress.IPv6Network]


def brute_force(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Networks) -> bool:
    """The obvious answer: the address (unmapped) is in one of the networks (unmapped)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network(str(n)) for n in networks)


def mapped(address: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(f"::ffff:{address}")


@given(st.lists(v4_networks | v6_networks, max_size=20), ipv4 | ipv6)
def test_a_network_set_answers_as_checking_every_network_would(
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    rules = NetworkSet(networks)
    assert (address in rules) == brute_force(address, networks)
    assert (str(address) in rules) == brute_force(address, networks)


@given(st.lists(v4_networks, min_size=1, max_size=10), ipv4)
def test_an_ipv4_client_on_a_dual_stack_socket_matches_ipv4_rules(
    networks: list[ipaddress.IPv4Network], address: ipaddress.IPv4Address
) -> None:
    """A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d: the same answer."""
    rules = NetworkSet(networks)
    assert (mapped(address) in rules) == (address in rules)
    assert (str(mapped(address)) in rules) == any(address in n for n in networks)


@given(v4_networks, ipv4)
def test_a_rule_written_as_mapped_ipv6_is_the_ipv4_network(
    net: ipaddress.IPv4Network, address: ipaddress.IPv4Address
) -> None:
    written = f"::ffff:{net.network_address}/{net.prefixlen + 96}"
    assert network(written) == net
    assert (address in NetworkSet([network(written)])) == (address in net)


@given(v4_networks | v6_networks)
def test_every_network_parses_back_to_itself(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> None:
    parsed = network(str(net))
    assert parsed == net or (net.version == 6 and parsed.version == 4)


@given(st.text(max_size=30))
def test_any_text_is_a_rule_or_a_one_line_error(text: str) -> None:
    problem = ""
    try:
        network(text)
    except AccessError as exc:
        problem = str(exc)
    assert "\n" not in problem


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("10.0.0.1/8", "'10.0.0.1/8' has host bits set (did you mean 10.0.0.0/8?)"),
        ("example.com", "'example.com' is not a CIDR or an IP address"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not a CIDR or an IP address"),
        ("fe80::1%eth0", "'fe80::1%eth0': a zone is not allowed in a rule"),
    ],
)
def test_a_bad_rule_says_what_is_wrong(rule: str, message: str) -> None:
    with pytest.raises(AccessError) as caught:
        network(rule)
    assert str(caught.value) == message


def test_a_rules_file_has_comments_and_blank_lines_and_names_a_bad_line() -> None:
    text = "# office\n10.0.0.0/8   # the LAN\n\n  2001:db8::/32\n192.0.2.7\n"
    assert [str(n) for n in parse_rules(text)] == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]
    with pytest.raises(AccessError, match=r"^deny\.txt line 3: 'nonsense' is not a CIDR"):
        parse_rules("10.0.0.0/8\n\nnonsense\n", "deny.txt")


def test_deny_wins_over_allow_and_allow_alone_refuses_the_rest() -> None:
    rules = AccessRules(NetworkSet([network("10.0.0.0/8")]), NetworkSet([network("10.1.0.0/16")]))
    assert rules.refusal("10.2.3.4") is None
    assert rules.refusal("10.1.2.3") == "denied (--deny)"
    assert rules.refusal("192.0.2.1") == "not allowed (--allow)"
    assert rules.refusal("::ffff:10.1.2.3") == "denied (--deny)"


def test_unix_socket_clients_are_always_local() -> None:
    rules = AccessRules(NetworkSet([network("10.0.0.0/8")]), NetworkSet([network("0.0.0.0/0")]))
    assert rules.refusal(None) is None


def test_a_deny_list_of_10000_networks_costs_a_few_set_probes_per_lookup() -> None:
    """Lookups probe one set per prefix length, not one network per rule."""
    chooser = random.Random(10)
    rules = [
        ipaddress.IPv4Network((chooser.getrandbits(32), p), strict=False)
        for p in (chooser.randint(8, 32) for _ in range(10_000))
    ]
    many = NetworkSet(rules)
    few = NetworkSet(rules[:25])
    clients = [str(ipaddress.IPv4Address(chooser.getrandbits(32))) for _ in range(20_000)]

    def cost(networks: NetworkSet) -> float:
        start = time.perf_counter()
        for client in clients:
            _ = client in networks
        return time.perf_counter() - start

    assert all(str(rule.network_address) in many for rule in rules[:2000])
    # 25 prefix lengths either way: 400 times the rules costs about the same per lookup
    # (a scan of every rule would cost 400 times as much).
    assert cost(many) < 4 * cost(few) + 0.05


def test_an_unreadable_rules_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(AccessError, match=r"^cannot read --deny-file .*missing: No such file"):
        AccessSources(deny_files=[tmp_path / "missing"]).load()


# the server ------------------------------------------------------------------------------


def connect_and_read(port: int, source: str = "127.0.0.1") -> bytes:
    with socket.create_connection(
        ("127.0.0.1", port), timeout=WAIT, source_address=(source, 0)
    ) as s:
        return recv_all(s)


def test_a_denied_client_is_closed_before_any_byte(serve_in_thread: ServeInThread) -> None:
    sources = AccessSources(deny=["127.0.0.2"])
    threaded, (bound,) = serve_in_thread("greet", access=sources, idle_timeout=0.5)
    assert bound.port is not None
    assert connect_and_read(bound.port, "127.0.0.2") == b""
    assert connect_and_read(bound.port, "127.0.0.3").startswith(b"welcome!\n")
    assert threaded.server.stats.refused["access"] == 1


def test_allow_admits_only_its_networks(serve_in_thread: ServeInThread) -> None:
    _, (bound,) = serve_in_thread(
        "greet", access=AccessSources(allow=["127.0.0.4/30"]), idle_timeout=0.5
    )
    assert bound.port is not None
    assert connect_and_read(bound.port, "127.0.0.5").startswith(b"welcome!\n")
    assert connect_and_read(bound.port, "127.0.0.9") == b""


def test_a_unix_socket_client_is_not_refused_by_ip_rules(
    serve_in_thread: ServeInThread, tmp_path: Path
) -> None:
    path = tmp_path / "greet.sock"
    serve_in_thread("greet", [f"unix://{path}"], access=AccessSources(allow=["192.0.2.0/24"]))
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(WAIT)
        s.connect(str(path))
        assert s.recv(100) == b"welcome!\n"


def test_a_datagram_from_a_denied_source_is_dropped_silently(
    serve_in_thread: ServeInThread,
) -> None:
    threaded, (bound,) = serve_in_thread(
        "echo", ["udp://127.0.0.1:0"], access=AccessSources(deny=["127.0.0.2"])
    )
    assert bound.port is not None
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as denied,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as allowed,
    ):
        denied.bind(("127.0.0.2", 0))
        allowed.bind(("127.0.0.3", 0))
        allowed.settimeout(WAIT)
        denied.settimeout(0.3)
        denied.sendto(b"ping\n", ("127.0.0.1", bound.port))
        allowed.sendto(b"pong\n", ("127.0.0.1", bound.port))
        assert allowed.recv(100) == b"pong\n"
        with pytest.raises(TimeoutError):
            denied.recv(100)
    assert threaded.server.stats.datagrams_refused == 1


def test_sighup_rereads_the_list_and_a_bad_file_keeps_the_old_one(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    rules = tmp_path / "deny.txt"
    rules.write_text("# nobody yet\n")
    server = serve_process("serve", "greet", "127.0.0.1:0", "--deny-file", str(rules))
    port = server.endpoints[0].port
    assert port is not None
    assert connect_and_read_until_welcome(port, "127.0.0.2")

    rules.write_text("127.0.0.2\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "access lists reloaded: 0 allow, 1 deny" in server.stderr(), "reload")
    assert connect_and_read(port, "127.0.0.2") == b""

    rules.write_text("127.0.0.3\nnot-a-network\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "not reloaded" in server.stderr(), "the error")
    error = next(line for line in server.stderr().splitlines() if "not reloaded" in line)
    assert "line 2: 'not-a-network' is not a CIDR" in error
    assert connect_and_read(port, "127.0.0.2") == b"", "the old list stays"
    assert connect_and_read_until_welcome(port, "127.0.0.3")
    assert server.stop() == 0


def connect_and_read_until_welcome(port: int, source: str) -> bool:
    with socket.create_connection(
        ("127.0.0.1", port), timeout=WAIT, source_address=(source, 0)
    ) as s:
        return s.recv(100) == b"welcome!\n"


def test_a_bad_rules_file_at_start_is_a_usage_error(tmp_path: Path) -> None:
    rules = tmp_path / "allow.txt"
    rules.write_text("10.0.0.0/8\n10.0.0.1/8\n")
    result = run_cli("serve", "greet", "127.0.0.1:0", "--allow-file", str(rules))
    assert_one_line_error(result, 2, "")
    assert "allow.txt line 2: '10.0.0.1/8' has host bits set" in result.stderr.decode()
