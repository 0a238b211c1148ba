"""Which source a call is counted under: the peer or a trusted gateway's word, IPv6 by /64."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from tierset.ops import client_address as module
from tierset.ops.client_address import CLIENT_ADDRESS_METADATA, UNKNOWN, client_address

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


def _said(address: str) -> tuple[tuple[str, str], ...]:
    return ((CLIENT_ADDRESS_METADATA, address),)


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("ipv4:192.0.2.7:5000", "192.0.2.7"),
        ("ipv6:[2001:db8:1:2:3:4:5:6]:5000", "2001:db8:1:2::/64"),
        ("ipv6:[2001:db8:1:2::ffff]:5000", "2001:db8:1:2::/64"),
        ("ipv6:[::ffff:192.0.2.7]:5000", "192.0.2.7"),
        ("ipv6:[::1]:5000", "::/64"),
        ("unix:/run/tierset.sock", UNKNOWN),
    ],
)
def test_the_peer_is_keyed_ipv4_as_is_and_ipv6_by_its_slash_64(peer, expected):
    assert client_address(peer, (), ()) == expected


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("198.51.100.4", "198.51.100.4"),
        ("2001:db8:aa:bb:1::1", "2001:db8:aa:bb::/64"),
        ("2001:db8:aa:bb:ffff:ffff:ffff:ffff", "2001:db8:aa:bb::/64"),
        ("::ffff:198.51.100.4", "198.51.100.4"),
        ("not an address", "127.0.0.1"),
    ],
)
def test_a_trusted_gateways_word_is_keyed_the_same_way(said, expected):
    assert client_address("ipv4:127.0.0.1:5000", _said(said), LOOPBACK) == expected


def test_metadata_from_an_untrusted_peer_is_ignored_and_warned_about_once(monkeypatch, caplog):
    monkeypatch.setattr(module, "_warned_untrusted", False)  # other tests may have warned
    caplog.set_level(logging.WARNING, logger="tierset.ops.client_address")

    sources = [client_address("ipv4:10.1.2.3:5000", _said("192.0.2.1"), ()) for _ in range(3)]
    trusted = client_address("ipv4:127.0.0.1:5000", _said("192.0.2.1"), LOOPBACK)

    assert sources == ["10.1.2.3"] * 3
    assert trusted == "192.0.2.1"
    warnings = [r for r in caplog.records if r.name == "tierset.ops.client_address"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "TIERSET_TRUSTED_GATEWAYS" in warnings[0].getMessage()
    assert "10.1.2.3" in warnings[0].getMessage()
