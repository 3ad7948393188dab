"""The egress policy's decisions, checked without opening any connection."""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from hookyard.deliver.egress import EgressPolicy, EgressRefused, GuardedResolver

DEFAULT = EgressPolicy()

REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "::",
    "::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:169.254.169.254",  # IPv4-mapped metadata
    "::ffff:10.0.0.1",
    "64:ff9b::808:808",  # NAT64 (Python calls it global)
    "64:ff9b:1::1",
    "2002:c000:0204::1",  # 6to4 (Python calls it global)
    "2002:7f00:1::1",
    "2001:db8::1",
    "3fff::1",
    "100::1",
    "5f00::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%eth0",
    "ff02::1",
]
ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.15.255.255",  # just outside 172.16.0.0/12
    "172.32.0.1",
    "100.128.0.1",  # just outside CGNAT
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",  # IPv4-mapped public address
]


@pytest.mark.parametrize("address", REFUSED)
def test_non_global_addresses_are_refused_by_default(address: str) -> None:
    assert not DEFAULT.permits(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_global_addresses_are_allowed(address: str) -> None:
    assert DEFAULT.permits(address)


def test_allow_list_opens_exactly_its_ranges() -> None:
    policy = EgressPolicy.from_cidrs(["127.0.0.0/8", "10.1.0.0/16"])
    assert policy.permits("127.0.0.1")
    assert policy.permits("::ffff:127.0.0.1")  # mapped form of an allowed address
    assert policy.permits("10.1.200.3")
    assert not policy.permits("10.2.0.1")
    assert not policy.permits("169.254.169.254")
    assert not policy.permits("::1")  # IPv6 loopback needs its own entry


def test_literal_hosts_are_checked_before_connecting() -> None:
    DEFAULT.check_literal("example.com")  # names are left to the resolver
    DEFAULT.check_literal("8.8.8.8")
    for host in ("127.0.0.1", "[::1]", "169.254.169.254", "[::ffff:127.0.0.1]"):
        with pytest.raises(EgressRefused, match="egress policy"):
            DEFAULT.check_literal(host)


class FixedResolver(AbstractResolver):
    """A resolver the test controls: every name resolves to the given addresses."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_a_name_resolving_to_a_refused_address_is_refused() -> None:
    resolver = GuardedResolver(DEFAULT, FixedResolver("169.254.169.254"))
    with pytest.raises(EgressRefused, match=r"rebinding\.example resolves to 169\.254\.169\.254"):
        await resolver.resolve("rebinding.example", 443)


async def test_only_permitted_addresses_of_a_name_are_kept() -> None:
    inner = FixedResolver("10.0.0.5", "93.184.216.34")
    resolver = GuardedResolver(DEFAULT, inner)
    results = await resolver.resolve("mixed.example", 443)
    assert [r["host"] for r in results] == ["93.184.216.34"]
    assert inner.asked == ["mixed.example"]
