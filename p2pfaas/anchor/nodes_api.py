"""The anchor's node directory: nodes announce themselves (signed, fresh, rate-limited, bound to a
volunteer account in production, and dialled back at the URL they give), and anyone may list the live
ones.

Routes:
    POST /v1/nodes        NodeAnnouncement -> Ack              (signed by the node key)
    GET  /v1/nodes                        -> NodeList          (nodes seen in the last NODE_TTL_S)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from p2pfaas import rpc, signing, tls, tunnel
from p2pfaas.anchor.accounts import AccountStore, KeyKind
from p2pfaas.anchor.node_store import NodeStore
from p2pfaas.clock import wall_time
from p2pfaas.errors import DecodeError, LocalError, P2PFaaSError, Refused
from p2pfaas.messages import Ack, NodeAnnouncement, NodeInfo, NodeList, NodeStatus
from p2pfaas.ratelimit import TokenBuckets
from p2pfaas.relay import relay_path
from p2pfaas.rpc import Forbidden, read_message, reply

NODE_TTL_S = 90.0  # nodes re-announce every 30 s; three missed announcements and they drop out
ANNOUNCE_SKEW_S = 120.0  # an announcement older (or newer) than this is refused: no replays
REACHABILITY_TIMEOUT_S = 3.0
REACHABILITY_CHECKS = 8  # at once, for every announcer together
RECHECK_S = 600.0  # a URL checked this long ago is dialled back again at the node's next announcement
MAX_TRACKED_NODES = 100_000


async def _names_address(host: str, address: str) -> bool:
    """Whether `host` (an IP literal or a name) is, or resolves to, `address`."""
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(address)
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return any(info[4][0] == address for info in infos)


@dataclass
class NodesApi:
    """The node routes over a `NodeStore`. The only state is what bounds the work a flood can
    cause: the announcements' rate and the URLs already checked (both rebuilt after a restart)."""

    store: NodeStore
    accounts: AccountStore
    require_accounts: bool  # a node must be bound to a volunteer account to be listed
    announcements: TokenBuckets = field(default_factory=lambda: TokenBuckets(burst=5, per_s=0.2))
    recheck_s: float = RECHECK_S
    # node id -> (URL, loop time) of its last check that passed
    reachability: OrderedDict[str, tuple[str, float]] = field(default_factory=OrderedDict)
    session: aiohttp.ClientSession | None = None  # for the reachability checks
    checks: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(REACHABILITY_CHECKS))
    public_url: str = ""  # set with `app.set_public_url` once the server is bound

    async def announce_node(self, request: web.Request) -> web.Response:
        """A node's announcement is listed only when it is fresh, within the node's rate, from a
        node bound to a volunteer account (with `require_accounts`), and the node answers at the
        URL it gives with its own id: a flood of fresh keys pointing at a tarpit lists nothing."""
        msg = await read_message(request, NodeAnnouncement)
        key = signing.verify(msg)
        now = wall_time()
        if abs(now - msg.issued_at) > ANNOUNCE_SKEW_S:
            raise LocalError(
                f"the announcement was made {now - msg.issued_at:.0f} s from now: send a fresh one"
            )
        if self.require_accounts:
            owner = await self.accounts.key_owner(key.key_id)
            if owner is None or owner[1] != KeyKind.NODE:
                raise Forbidden(
                    f"node {key.key_id[:12]} is not bound to a volunteer account: "
                    "`p2pfaas account claim-node`"
                )
        loop_now = asyncio.get_running_loop().time()
        if not self.announcements.take(key.key_id, loop_now):
            raise Refused("too many announcements from this node; slow down", status=429)
        checked_url, checked_at = self.reachability.get(key.key_id, ("", float("-inf")))
        if checked_url != msg.url or loop_now - checked_at >= self.recheck_s:
            # A failed check (a relayed node asking whether it is reachable directly yet) leaves the
            # last good one in place: the node's relayed URL is not dialled again because of it.
            await self._check_reachable(key.key_id, msg.url, request.remote or "")
            self.reachability.pop(key.key_id, None)
            self.reachability[key.key_id] = (msg.url, loop_now)
            while len(self.reachability) > MAX_TRACKED_NODES:
                del self.reachability[next(iter(self.reachability))]
        await self.store.upsert_node(
            node_id=key.key_id,
            public_key=key.raw,
            url=msg.url,
            runtimes=msg.runtimes,
            cores=msg.cores,
            memory_mb=msg.memory_mb,
            now=now,
        )
        return reply(Ack(key.key_id))

    async def _check_reachable(self, node_id: str, url: str, observed: str) -> None:
        """Refuse (422) unless `url` answers `GET /v1/status` in time, naming node `node_id`.

        The URL is a base the announcer cannot aim anywhere: either its own address as this anchor
        sees it (`observed`: an IP literal, or a name that resolves to it) with no path, or the
        relayed URL of its own id (`/v1/relay/<node_id>`) at this anchor's relay or at a node listed
        here as directly reachable. No redirect is followed, at most REACHABILITY_CHECKS run at once,
        and every failure gets the same answer, so the check tells an announcer nothing about what
        answers where."""
        parts = urlsplit(url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or (
                parts.path not in ("", "/", tls.identity_path(node_id))
                and not parts.path.endswith(relay_path(node_id))
            )
            or parts.query
            or parts.fragment
            or "#" in url
            or "?" in url
        ):
            raise LocalError(
                "a node's URL is http(s)://HOST:PORT, or a relay's http(s)://HOST:PORT/v1/relay/NODE_ID, "
                "with no query or user"
            )
        base = f"{parts.scheme}://{parts.netloc}"
        if parts.path.endswith(relay_path(node_id)):
            relay = base + parts.path[: -len(relay_path(node_id))]
            if not await self._is_relay(relay):
                raise LocalError(f"{relay} is neither this anchor nor a node listed here: not a relay to use")
            base += parts.path
        elif not await _names_address(parts.hostname, observed):
            raise LocalError(
                f"a node announces its own address: this anchor sees you at {observed}, not {parts.hostname}"
            )
        else:
            base += parts.path.rstrip("/")  # the identity an https node URL names, pinned by rpc.call
        if self.session is None:
            self.session = tunnel.session()
        unreachable = Refused(f"this anchor could not reach node {node_id[:12]} at its URL", status=422)
        async with self.checks:
            try:
                status = await rpc.call(
                    self.session, "GET", f"{base}/v1/status", NodeStatus, timeout_s=REACHABILITY_TIMEOUT_S
                )
            except (P2PFaaSError, DecodeError):
                raise unreachable from None
        if status.node_id != node_id:
            raise unreachable

    async def _is_relay(self, base: str) -> bool:
        if self.public_url and base == self.public_url.rstrip("/"):
            return True
        rows = await self.store.live_nodes(now=wall_time(), max_age_s=NODE_TTL_S)
        return any(row.url.rstrip("/") == base for row in rows)

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def list_nodes(self, request: web.Request) -> web.Response:
        rows = await self.store.live_nodes(now=wall_time(), max_age_s=NODE_TTL_S)
        return reply(
            NodeList(
                nodes=tuple(
                    NodeInfo(
                        node_id=row.node_id,
                        public_key=row.public_key,
                        url=row.url,
                        runtimes=tuple(row.runtimes),
                        cores=float(row.cores or 0.0),
                        memory_mb=int(row.memory_mb or 0),
                    )
                    for row in rows
                )
            )
        )


def add_routes(app: web.Application, api: NodesApi) -> None:
    app.add_routes([web.post("/v1/nodes", api.announce_node), web.get("/v1/nodes", api.list_nodes)])

    async def close_checks(app: web.Application) -> AsyncIterator[None]:
        yield
        await api.aclose()

    app.cleanup_ctx.append(close_checks)
