"""Which address a client comes from, for limits that are per address.

One person with many connections should count once (``--max-conns-per-ip``,
the chat's rooms per address).  An IPv4 client counts by its address; an
IPv6 client by its /64 network, since one host is usually given a whole
/64 and can pick any address in it; an IPv4 address mapped into IPv6
(``::ffff:1.2.3.4``) as that IPv4 address.  Clients over Unix sockets all
come from ``unix``.  Sans-IO: it only reads the socket address it is given.
"""

from __future__ import annotations

import ipaddress

__all__ = ["UNIX", "address_key"]

#: Where every client over a Unix socket comes from.
UNIX = "unix"
#: The IPv6 prefix length one host is counted by.
IPV6_PREFIX = 64


def address_key(peername: object) -> str:
    """The address a client at ``peername`` (as ``getpeername()`` gives it) counts as."""
    if not (isinstance(peername, tuple) and len(peername) >= 2 and isinstance(peername[0], str)):
        return UNIX
    host = peername[0].partition("%")[0]  # a link-local address's zone
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)
