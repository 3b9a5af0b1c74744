"""Job callbacks without SSRF: a node POSTs a job's result only to public addresses it checked.

A lessee names a job's `callback_url`; the node (a volunteer's machine) makes the request. Left
alone that reaches whatever the volunteer's machine reaches: its loopback services, the LAN, the
router, a cloud metadata service at 169.254.169.254. So `CallbackSender`:

- resolves the host once, through `GuardedResolver`, and refuses the callback unless *every*
  address it resolves to is public (`ipaddress` `is_global`, not multicast, and no private IPv4
  address embedded in an IPv6 one: mapped, 6to4, Teredo, NAT64); an IP literal is checked the same
  way before any connection. The connector connects only to the addresses the resolver returned
  and checked, so a DNS answer cannot change between the check and the connection (rebinding);
- takes no proxy from the environment and follows no redirect (a 3xx is a failed callback);
- lets the node's operator allow ranges (`CallbackPolicy.allow`, `node run --callback-allow CIDR`,
  `callback_allow = [...]` in the config file), e.g. 127.0.0.0/8 for a test hook on the same host.

`CallbackRefused` (the URL is not allowed, or answered a redirect) is final; `CallbackFailed`
(unreachable, a 4xx or 5xx answer) may be retried, a bounded number of times, by `node.jobs.Jobs`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from p2pfaas import codec
from p2pfaas.errors import ConfigError, P2PFaaSError
from p2pfaas.messages import InvokeResult
from p2pfaas.rpc import CONTENT_TYPE

__all__ = [
    "CallbackFailed",
    "CallbackPolicy",
    "CallbackRefused",
    "CallbackSender",
    "GuardedResolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_KINDS = ("loopback", "link_local", "multicast", "unspecified", "reserved", "private")  # most telling first
CALLBACK_TIMEOUT_S = 10.0


class CallbackRefused(P2PFaaSError):
    """The callback URL points where this node does not send requests (final: not retried)."""


class CallbackFailed(P2PFaaSError):
    """The callback could not be delivered this time (unreachable, or not a 2xx answer)."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    inside: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        inside.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        inside.append(ip.sixtofour)
    if ip.teredo is not None:
        inside.extend(ip.teredo)
    if ip in _NAT64:
        inside.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return inside


@dataclass(frozen=True)
class CallbackPolicy:
    """Which addresses a node sends callbacks to: public ones, and the ranges its operator allows."""

    allow: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> CallbackPolicy:
        """From CIDR strings ("127.0.0.0/8", "10.1.2.3"); ConfigError for one that is not."""
        networks: list[IPNetwork] = []
        for cidr in cidrs:
            try:
                networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError:
                raise ConfigError(
                    f"callback_allow: {cidr!r} is not an IP network (e.g. 127.0.0.0/8)"
                ) from None
        return cls(tuple(networks))

    def why_not(self, address: str) -> str:
        """'' if a callback may go to `address`, else why not."""
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
        except ValueError:
            return f"{address!r} is not an IP address"
        if any(ip in network for network in self.allow):
            return ""
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            candidates += _embedded_ipv4(ip)
        for candidate in candidates:
            if not candidate.is_global or candidate.is_multicast:
                kind = next((name for name in _KINDS if getattr(candidate, f"is_{name}")), "non-public")
                return (
                    f"{address} is a {kind.replace('_', '-')} address; this node sends callbacks only to "
                    "public addresses (its operator may allow ranges: node run --callback-allow CIDR)"
                )
        return ""

    def check(self, address: str) -> None:
        """Raise CallbackRefused unless a callback may go to `address`."""
        if why := self.why_not(address):
            raise CallbackRefused(why)


class GuardedResolver(AbstractResolver):
    """Resolves through `inner` and refuses the name unless every address it gives is allowed.

    What it returns is what aiohttp's connector connects to: checked and pinned, no second lookup.
    """

    def __init__(self, policy: CallbackPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        if not found:
            raise CallbackRefused(f"{host!r} resolves to no address")
        for entry in found:
            if why := self.policy.why_not(entry["host"]):
                raise CallbackRefused(f"{host!r} resolves to {why}")
        return found

    async def close(self) -> None:
        await self.inner.close()


class CallbackSender:
    """POSTs signed results to checked callback URLs, over its own guarded session.

    Make it in the event loop that uses it; `aclose` when done. `inner_resolver` replaces the
    system's name lookup (tests).
    """

    def __init__(
        self, policy: CallbackPolicy | None = None, *, inner_resolver: AbstractResolver | None = None
    ) -> None:
        self.policy = policy or CallbackPolicy()
        self._inner_resolver = inner_resolver
        self._session: aiohttp.ClientSession | None = None

    def _guarded_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self.policy, self._inner_resolver),
                use_dns_cache=False,  # every callback is checked against a fresh answer,
                force_close=True,  # on a fresh connection to the address just checked
                limit=32,
            )
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    def check_url(self, url: str) -> str:
        """The URL's host, after refusing anything but http(s) and IP literals that are not allowed."""
        try:
            parts = urlsplit(url)
            host, _ = parts.hostname, parts.port
        except ValueError as exc:
            raise CallbackRefused(f"callback URL {url[:200]!r} is malformed: {exc}") from None
        if parts.scheme not in ("http", "https") or not host:
            raise CallbackRefused(f"callback URL {url[:200]!r} is not an http(s) URL with a host")
        if parts.username or parts.password:
            raise CallbackRefused("callback URLs carry no credentials")
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return host  # a name: the guarded resolver checks what it resolves to
        self.policy.check(host)  # aiohttp connects to an IP literal without asking a resolver
        return host

    async def send(self, url: str, result: InvokeResult) -> None:
        """Deliver `result` to `url`, or raise CallbackRefused (final) or CallbackFailed (retryable)."""
        self.check_url(url)
        try:
            async with self._guarded_session().post(
                url,
                data=codec.encode(result),
                headers={"Content-Type": CONTENT_TYPE},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S),
            ) as response:
                status = response.status
        except CallbackRefused:
            raise
        except aiohttp.ClientConnectorError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, CallbackRefused):
                raise cause from None
            raise CallbackFailed(f"callback to {url[:200]}: {type(exc).__name__}: {exc}") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise CallbackFailed(f"callback to {url[:200]}: {type(exc).__name__}: {exc}") from None
        if 300 <= status < 400:  # final: asking again would only be sent the same way
            raise CallbackRefused(
                f"callback to {url[:200]} answered a redirect ({status}); redirects are not followed"
            )
        if status >= 400:
            raise CallbackFailed(f"callback to {url[:200]} answered HTTP {status}")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
