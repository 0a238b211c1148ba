"""Which address a call comes from, for throttling and logs: the peer, or what a trusted
gateway says.

The REST gateway calls the server for its clients, so the server sees the gateway's
address; the gateway therefore sends the client's own address in the metadata entry
``tierset-client-address``. The server believes that entry only from a peer inside
``TIERSET_TRUSTED_GATEWAYS`` (none by default); from anyone else it is ignored and the
peer's own address is the source, so a client cannot pick a fresh address per guess.
(The gateway, in turn, believes ``X-Forwarded-For`` only from the proxies in
``TIERSET_GATEWAY_TRUSTED_PROXIES``; see gateway/serve.py.)

A source is a *key*, not always one address: an IPv4 address is itself, but an IPv6
client is keyed by its /64 (``2001:db8:1:2::/64``), since one host is normally given a
whole /64 and could otherwise take a fresh address per guess; an IPv4-mapped address
(``::ffff:192.0.2.1``) is the IPv4 address it maps, so one client counts once whichever
socket family it arrived on.

Metadata ``tierset-client-address`` from a peer that is not trusted is logged once per
process at WARNING: it usually means ``TIERSET_TRUSTED_GATEWAYS`` is missing the
gateway, so every REST client counts as the gateway's one address.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)

CLIENT_ADDRESS_METADATA = "tierset-client-address"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# What a peer that is not an IP address (a Unix socket) counts as.
UNKNOWN = "unknown"


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR networks; ValueError naming a bad one."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
    return tuple(networks)


def peer_ip(peer: str) -> str | None:
    """The IP address in a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or None
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or None
    return None


# The prefix that keys an IPv6 source: what one host (or one customer) is usually given.
IPV6_SOURCE_PREFIX = 64
_warned_untrusted = False


def _canonical(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def source_key(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The throttling key of an address: IPv4 as is, IPv6 as its /64."""
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, IPV6_SOURCE_PREFIX), strict=False))
    return str(ip)


def _warn_untrusted(peer: str) -> None:
    global _warned_untrusted
    if not _warned_untrusted:
        _warned_untrusted = True
        log.warning(
            "ignoring %s metadata from untrusted peer %s: if it is a tierset gateway, add it "
            "to TIERSET_TRUSTED_GATEWAYS, or all its clients count as one source "
            "(logged once)",
            CLIENT_ADDRESS_METADATA,
            peer,
        )


def _trusted(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Sequence[Network]
) -> bool:
    return any(ip in network for network in networks)


def client_address(
    peer: str, metadata: Iterable[tuple[str, object]], trusted_gateways: Sequence[Network]
) -> str:
    """The call's source key (see the module): the gateway's word for the client's address
    when the peer is trusted, else the peer's own."""
    own = _canonical(peer_ip(peer) or "")
    if own is None:
        return UNKNOWN
    trusted = bool(trusted_gateways) and _trusted(own, trusted_gateways)
    for key, value in metadata:
        if key == CLIENT_ADDRESS_METADATA and isinstance(value, str):
            if not trusted:
                _warn_untrusted(peer)
                break
            forwarded = _canonical(value)
            if forwarded is not None:
                return source_key(forwarded)
    return source_key(own)
