"""Which address a call comes from, for throttling and logs: the peer, or what a trusted
gateway says.

The REST gateway calls the server for its clients, so the server sees the gateway's
address; the gateway therefore sends the client's own address in the metadata entry
``tierset-client-address``. The server believes that entry only from a peer inside
``TIERSET_TRUSTED_GATEWAYS`` (none by default); from anyone else it is ignored and the
peer's own address is the source, so a client cannot pick a fresh address per guess.
(The gateway, in turn, believes ``X-Forwarded-For`` only from the proxies in
``TIERSET_GATEWAY_TRUSTED_PROXIES``; see gateway/serve.py.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

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


def _canonical(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in networks)


def client_address(
    peer: str, metadata: Iterable[tuple[str, object]], trusted_gateways: Sequence[Network]
) -> str:
    """The call's source address: the gateway's word for it when the peer is trusted."""
    own = _canonical(peer_ip(peer) or "")
    if own is None:
        return UNKNOWN
    if trusted_gateways and _trusted(own, trusted_gateways):
        for key, value in metadata:
            if key == CLIENT_ADDRESS_METADATA and isinstance(value, str):
                forwarded = _canonical(value)
                if forwarded is not None:
                    return forwarded
    return own
