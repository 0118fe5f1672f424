"""Who may connect: ``--allow`` and ``--deny`` lists of networks, as ncat has them; without I/O.

A rule is a CIDR (``10.0.0.0/8``, ``2001:db8::/32``) or one address
(``192.0.2.7``, ``::1``).  A client is refused if its address is in a deny
rule, or if there are allow rules and it is in none of them; otherwise it
is admitted.  An IPv4 address mapped into IPv6 (``::ffff:192.0.2.7``, as a
dual-stack socket reports IPv4 clients) is matched as the IPv4 address, and
a rule written in that form (``::ffff:10.0.0.0/104``) as the IPv4 network.

A list file holds one rule a line; ``#`` starts a comment, blank lines are
skipped.  :func:`parse_rules` reads one and names the line of the first
mistake.  Clients over Unix sockets have no address and are always local:
these rules never refuse them.

A lookup costs one set probe per distinct prefix length in the lists (at
most 33 for IPv4, 129 for IPv6), however many rules there are.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AccessError",
    "AccessRules",
    "AccessSources",
    "NetworkSet",
    "parse_network",
    "parse_rules",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The IPv6 network whose addresses are IPv4 addresses (``::ffff:0:0/96``).
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


class AccessError(ValueError):
    """A rule or a list file that cannot be understood; the message is one line."""


def _unmapped(network: Network) -> Network:
    """``::ffff:a.b.c.d/N`` (N >= 96) as the IPv4 network it is."""
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.prefixlen >= 96
        and network.subnet_of(_MAPPED)
    ):
        first = network.network_address.ipv4_mapped
        assert first is not None
        return ipaddress.IPv4Network((first, network.prefixlen - 96))
    return network


def parse_network(text: str) -> Network:
    """One rule: a CIDR or an address; raise :class:`AccessError` saying what is wrong."""
    rule = text.strip()
    if not rule:
        raise AccessError("an empty rule (expected a CIDR such as 10.0.0.0/8)")
    if "%" in rule:
        raise AccessError(f"{rule!r}: a zone is not allowed in a rule")
    try:
        network = ipaddress.ip_network(rule)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            loose = ipaddress.ip_network(rule, strict=False)
            raise AccessError(f"{rule!r} has host bits set (did you mean {loose}?)") from None
        raise AccessError(f"{rule!r} is not a CIDR or an IP address") from None
    return _unmapped(network)


def parse_rules(text: str, source: str = "rules") -> list[Network]:
    """Every rule in a list file's ``text``; an error names ``source`` and the line."""
    networks = []
    for number, line in enumerate(text.splitlines(), 1):
        rule = line.partition("#")[0].strip()
        if not rule:
            continue
        try:
            networks.append(parse_network(rule))
        except AccessError as exc:
            raise AccessError(f"{source} line {number}: {exc}") from None
    return networks


def _as_address(address: str | IPAddress) -> IPAddress | None:
    """The address to match: mapped IPv6 as IPv4, a zone dropped; None if it is not an IP."""
    if isinstance(address, str):
        try:
            address = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class NetworkSet:
    """A set of networks, asked whether an address is in any of them.

    Networks are kept as ``{prefix length: {network number}}`` per IP
    version, so a lookup masks the address once per prefix length present
    and probes a set.
    """

    __slots__ = ("_by_length", "_count")

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self._by_length: dict[int, list[tuple[int, set[int]]]] = {4: [], 6: []}
        lengths: dict[tuple[int, int], set[int]] = {}
        count = 0
        for network in networks:
            network = _unmapped(network)
            lengths.setdefault((network.version, network.prefixlen), set()).add(
                int(network.network_address)
            )
            count += 1
        for (version, prefix), numbers in sorted(lengths.items()):
            bits = 32 if version == 4 else 128
            mask = ((1 << prefix) - 1) << (bits - prefix)
            self._by_length[version].append((mask, numbers))
        self._count = count

    def __len__(self) -> int:
        """How many networks were given (duplicates included)."""
        return self._count

    def __contains__(self, address: object) -> bool:
        """Whether ``address`` (a str or an ``ipaddress`` address) is in one of the networks."""
        if not isinstance(address, str | ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        ip = _as_address(address)
        if ip is None:
            return False
        number = int(ip)
        return any(number & mask in numbers for mask, numbers in self._by_length[ip.version])


@dataclass(frozen=True)
class AccessRules:
    """The allow and deny lists in force; :meth:`refusal` is the one question asked of them."""

    allow: NetworkSet = field(default_factory=NetworkSet)
    deny: NetworkSet = field(default_factory=NetworkSet)

    @property
    def empty(self) -> bool:
        """Whether there are no rules at all (everyone is admitted)."""
        return not self.allow and not self.deny

    def refusal(self, address: str | None) -> str | None:
        """Why a client at ``address`` (None: a Unix socket) is refused, or None to admit it.

        An address that is not an IP address (none over a Unix socket) is
        local and always admitted.
        """
        if address is None or self.empty:
            return None
        ip = _as_address(address)
        if ip is None:
            return None
        if ip in self.deny:
            return "denied (--deny)"
        if self.allow and ip not in self.allow:
            return "not allowed (--allow)"
        return None

    def admits(self, address: str | None) -> bool:
        """Whether a client at ``address`` may connect (or have its datagrams read)."""
        return self.refusal(address) is None


@dataclass(frozen=True)
class AccessSources:
    """Where the rules come from: ``--allow``/``--deny`` rules and the files to read.

    :meth:`load` reads the files (again on each call: a reload).
    """

    allow: Sequence[str] = ()
    deny: Sequence[str] = ()
    allow_files: Sequence[Path] = ()
    deny_files: Sequence[Path] = ()

    @property
    def reloadable(self) -> bool:
        """Whether there are files whose rules can change."""
        return bool(self.allow_files or self.deny_files)

    def load(self) -> AccessRules:
        """The rules now; raise :class:`AccessError` naming the first bad rule or file."""
        return AccessRules(
            NetworkSet(self._networks(self.allow, self.allow_files, "--allow")),
            NetworkSet(self._networks(self.deny, self.deny_files, "--deny")),
        )

    @staticmethod
    def _networks(rules: Sequence[str], files: Sequence[Path], option: str) -> list[Network]:
        networks = []
        for rule in rules:
            try:
                networks.append(parse_network(rule))
            except AccessError as exc:
                raise AccessError(f"{option}: {exc}") from None
        for path in files:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise AccessError(f"cannot read {option}-file {path}: {reason}") from None
            networks += parse_rules(text, str(path))
        return networks
