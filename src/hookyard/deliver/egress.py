"""The egress policy: which addresses deliveries may connect to.

By default only globally routable addresses are allowed; loopback, private, link-local, cloud
metadata, CGNAT, documentation, multicast and translation ranges (NAT64, 6to4, IPv4-mapped) are
refused unless a CIDR in the policy allows them. The check runs on the addresses actually
connected to, inside the resolver, so a name that resolves to a refused address (DNS
rebinding) cannot slip past it. The ranges follow Svix's list; Python's `is_global` alone is
not enough (it calls 64:ff9b::/96 and 2002::/16 global, and does not unwrap ::ffff:a.b.c.d).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from hookyard import __version__

USER_AGENT = f"Hookyard/{__version__}"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

BLOCKED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        # IPv4
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, including the cloud metadata address 169.254.169.254
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and broadcast
        # IPv6
        "::/128",  # unspecified
        "::1/128",  # loopback
        "::ffff:0:0/96",  # IPv4-mapped (checked again unwrapped, see `permits`)
        "64:ff9b::/96",  # NAT64
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "ff00::/8",  # multicast
    )
)


class EgressRefused(aiohttp.ClientConnectionError):
    """A destination address the egress policy refuses; the attempt fails without connecting."""


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    allow: tuple[Network, ...] = ()  # CIDRs allowed even though they are not global

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> EgressPolicy:
        return cls(tuple(ipaddress.ip_network(c, strict=False) for c in cidrs))

    def permits(self, address: str | IPAddress) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
        if any(ip.version == net.version and ip in net for net in self.allow):
            return True
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return self.permits(ip.ipv4_mapped)
        return not any(ip.version == net.version and ip in net for net in BLOCKED)

    def check_literal(self, host: str) -> None:
        """Refuse a URL whose host is an IP literal outside the policy (the resolver is not
        consulted for literals)."""
        try:
            ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            return  # a name: the resolver checks what it resolves to
        if not self.permits(ip):
            raise EgressRefused(_refusal(host, [str(ip)]))


def _refusal(host: str, addresses: Sequence[str]) -> str:
    return (
        f"{host} resolves to {', '.join(addresses)}, which the egress policy refuses "
        "(non-global address); allow it with [egress] allow or the destination's egress_allow"
    )


async def resolve_host(policy: EgressPolicy, host: str, port: int) -> list[str]:
    """The addresses a broker client is to connect to for `host`: every address the name
    resolves to, in the resolver's order, once each is permitted (EgressRefused otherwise).
    Broker clients are connected to these addresses, not to the name, so that the name is
    resolved once: a second lookup by the client library could answer otherwise (DNS
    rebinding). A literal host is its own address."""
    policy.check_literal(host)
    infos = await asyncio.get_running_loop().getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM
    )
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    refused = sorted(address for address in addresses if not policy.permits(address))
    if refused:
        raise EgressRefused(_refusal(host, refused))
    return addresses


class GuardedResolver(AbstractResolver):
    """Resolves through `inner` and keeps only the addresses the policy permits."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self.policy.permits(r["host"])]
        if not allowed:
            raise EgressRefused(_refusal(host, [r["host"] for r in results]))
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class GuardedSession:
    """An HTTP client whose every connection obeys the egress policy of the current settings;
    it is replaced when a reload changes the policy."""

    def __init__(self, allow: Callable[[], Iterable[str]], timeout: float) -> None:
        self._allow = allow
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._policy: EgressPolicy | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def get(self) -> tuple[aiohttp.ClientSession, EgressPolicy]:
        policy = EgressPolicy.from_cidrs(self._allow())
        if self._session is None or policy != self._policy:
            if self._session is not None:  # calls under way on the old one may finish
                task = asyncio.get_running_loop().create_task(self._session.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            self._policy = policy
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=GuardedResolver(policy)),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": USER_AGENT},
            )
        assert self._policy is not None
        return self._session, self._policy

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
