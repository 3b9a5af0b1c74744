"""The asynchronous lessee client.

Deploying, resolving names, listing, rolling back and removing are the registry's calls
(client/registry.py). Invoking resolves the function's name to its current digest (cached), picks
entry nodes (nearest through the DHT, else the anchor's node list), signs the request and sends it,
hedged across entry nodes (client/hedging.py). A node that cannot be reached is skipped and the
same invocation id is sent to the next, so a retry is recognisable as one (exactly-once charging:
issues #5 and #6). The node's answer must carry a valid signature by that node's key.

Errors are typed (p2pfaas.errors): FunctionFailed (the function raised), InvokeTimeout,
MemoryExceeded, ExecutorError, NotFound (unknown function), Refused, Unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import aiohttp

from p2pfaas import codec, rpc, tickets, tunnel
from p2pfaas.client import jobs
from p2pfaas.client.channels import ChannelCourier
from p2pfaas.client.discovery import Discovery
from p2pfaas.client.hedging import first_answer
from p2pfaas.client.logbook import LogBook, LogEntry
from p2pfaas.client.outcome import InvokeOutcome, decode_outcome
from p2pfaas.client.registry import RegistryCalls
from p2pfaas.client.wallet import Wallet
from p2pfaas.clock import wall_time
from p2pfaas.errors import (
    InvokeTimeout,
    LocalError,
    P2PFaaSError,
    Refused,
    SignatureError,
    Unreachable,
)
from p2pfaas.identity import KeyPair
from p2pfaas.messages import (
    Ack,
    FunctionInfo,
    InvokeRequest,
    InvokeResult,
    NodeInfo,
    NodeList,
)
from p2pfaas.trust.wire import AdvertLieReport

log = logging.getLogger(__name__)

PAYMENT_REQUIRED = 402  # a node's answer when the voucher cannot pay (p2pfaas.node.payments)
NETWORK_SLACK_S = 10.0  # how much longer than the function's timeout we wait for a node's answer
ENTRY_TRIES_IN_TIME = 2  # an invocation's whole deadline: this many entry nodes' full waits
HEDGE_SLACK_S = 1.0  # a node silent this long past the function's timeout is joined by the next
MAX_HEDGED = 2  # entry nodes asked at once
NO_PAYEE = "0" * 40  # a paid request's ticket before its entry node is chosen (`AsyncClient.for_node`)


@dataclass
class AsyncClient(RegistryCalls):
    """A lessee's view of the network. Use as `async with AsyncClient(anchor_url, keys) as c:`."""

    anchor_url: str
    keys: KeyPair
    rng: random.Random = field(default_factory=random.Random)
    request_timeout_s: float = 30.0
    node_list_ttl_s: float = 10.0  # how long a fetched node list is used before asking again
    dht_seeds: tuple[tuple[str, int], ...] = ()  # DHT peers: entry nodes come from adverts, nearest first
    wallet: Wallet | None = None  # pays with vouchers (issue #5); None: run own functions unpaid
    logbook: LogBook | None = None  # keeps what calls printed (`fn logs`); None: only in the outcome
    _discovery: Discovery | None = None
    _session: aiohttp.ClientSession | None = None
    _courier: ChannelCourier | None = None  # signs for paid results and delivers the channel tickets
    _functions: dict[str, FunctionInfo] = field(default_factory=dict)
    _registered: bool = False
    _nodes: list[NodeInfo] = field(default_factory=list)
    _nodes_fetched_at: float = float("-inf")
    _nodes_refresh: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def __aenter__(self) -> AsyncClient:
        self._session = tunnel.session()
        if self.dht_seeds:
            self._discovery = await Discovery(self.dht_seeds, rng=self.rng).__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._discovery is not None:
            await self._discovery.__aexit__(exc_type, exc, tb)
            self._discovery = None
        if self._courier is not None:
            await self._courier.aclose()
            self._courier = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise LocalError("use the client as `async with AsyncClient(...) as client:`")
        return self._session

    async def nodes(self, *, refresh: bool = False) -> list[NodeInfo]:
        """The anchor's live nodes, cached for `node_list_ttl_s` (the loop's clock)."""
        loop = asyncio.get_running_loop()
        asked_at = loop.time()
        if refresh or asked_at - self._nodes_fetched_at > self.node_list_ttl_s:
            # One fetch at a time: concurrent invocations that find the list stale share it.
            async with self._nodes_refresh:
                if self._nodes_fetched_at < asked_at:
                    listing = await rpc.call(
                        self.session,
                        "GET",
                        f"{self.anchor_url}/v1/nodes",
                        NodeList,
                        timeout_s=self.request_timeout_s,
                    )
                    self._nodes = list(listing.nodes)
                    self._nodes_fetched_at = loop.time()
        return list(self._nodes)

    # --- invocations ----------------------------------------------------------------------------

    async def invoke(
        self, name: str, payload: Any = None, *, timeout_s: float | None = None, node_url: str | None = None
    ) -> InvokeOutcome:
        """Run function `name` on `payload` (any JSON value) and return its result.

        `node_url` pins the entry node (tests, benchmarks); otherwise nodes are tried in a random
        order until one answers.
        """
        request = await self.signed_request(name, payload, timeout_s)
        timeout = request.timeout_s
        # One deadline for the whole call, across every entry node tried, and a hedge: a node still
        # silent a second past the function's own timeout is joined by the next one, and the first
        # answer wins. A list full of nodes that accept connections and never answer costs the
        # lessee ENTRY_TRIES_IN_TIME nodes' waits, not one per node.
        loop = asyncio.get_running_loop()
        per_node_s = timeout + NETWORK_SLACK_S
        deadline = loop.time() + ENTRY_TRIES_IN_TIME * per_node_s
        hedge_after_s = timeout + HEDGE_SLACK_S
        failures: list[str] = []
        paying = [request]  # the request as last signed (a renewed voucher replaces it)
        renewed = False  # a voucher that a node calls spent is renewed once per invocation

        async def attempt(node: NodeInfo) -> tuple[InvokeRequest, InvokeResult] | None:
            """The node's answer, or None when it is busy, gone or will not take the voucher."""
            nonlocal renewed
            for _ in range(2):  # a second try only after renewing the voucher
                sent = self.for_node(paying[0], node)  # its ticket pays this entry node
                try:
                    result = await rpc.call(
                        self.session,
                        "POST",
                        f"{node.url}/v1/invoke",
                        InvokeResult,
                        sent,
                        timeout_s=max(0.001, min(per_node_s, deadline - loop.time())),
                    )
                    return sent, result
                except Refused as exc:
                    if exc.status == PAYMENT_REQUIRED and self.wallet is not None and not renewed:
                        # This node ran nothing and calls the voucher spent: the same node gets the
                        # same invocation id again, with a fresh voucher (once per invocation).
                        renewed = True
                        self.wallet.exhausted()
                        paying[0] = await self.signed_request(
                            name, payload, timeout_s, invocation_id=request.invocation_id
                        )
                        continue
                    if exc.status not in (503, PAYMENT_REQUIRED):
                        raise
                    failures.append(str(exc))  # busy, draining, or it will not take this voucher
                    if exc.status == 503 and self._discovery is not None:
                        self._discovery.refused_busy(node.node_id)
                except Unreachable as exc:
                    # Gone or timed out: the next node gets the SAME invocation id, so nodes run it
                    # at most once each and the ledger charges it once (issue #6).
                    failures.append(str(exc))
                    if self._discovery is not None:
                        self._discovery.demote(node.node_id)
                return None
            return None

        async with contextlib.aclosing(self._candidates(request.invocation_id, node_url)) as candidates:
            try:
                won = await first_answer(
                    candidates, attempt, deadline=deadline, hedge_after_s=hedge_after_s, max_hedged=MAX_HEDGED
                )
            except TimeoutError:
                raise InvokeTimeout(
                    f"invocation {request.invocation_id} found no answer within "
                    f"{ENTRY_TRIES_IN_TIME * per_node_s:g} s: " + ("; ".join(failures) or "no nodes"),
                    invocation_id=request.invocation_id,
                ) from None
        if won is None:
            raise Unreachable(
                f"no node could run invocation {request.invocation_id}: "
                + ("; ".join(failures) or "no nodes")
            )
        node, (sent, result) = won
        executed_by = await self.executing_node(result, node)
        try:
            outcome = decode_outcome(sent, result, executed_by)
        finally:  # what a failed call printed is kept too (once its signature held)
            self._keep_logs(name, result, executed_by)
        self.paid_for(sent, result, executed_by)
        await self._check_advert(name, result)
        return replace(outcome, entry_node_id=node.node_id)

    def _keep_logs(self, name: str, result: InvokeResult, node: NodeInfo) -> None:
        if self.logbook is None or not result.logs or result.signer != node.public_key:
            return
        ok = result.ok
        entry = LogEntry(wall_time(), name, result.invocation_id, node.node_id, ok, result.logs)
        try:
            self.logbook.record(entry)
        except OSError as error:  # a full or read-only disk must not fail the call
            log.warning("could not keep the output of %s: %s", result.invocation_id, error)

    def signed_channels(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(seq, total) of the latest ticket this client signed on each (voucher, node) channel."""
        return {} if self._courier is None else self._courier.book.totals()

    async def channels_delivered(self) -> None:
        """Wait until every channel ticket signed so far is on its node (or handed to the anchor)."""
        if self._courier is not None:
            await self._courier.idle()

    def paid_for(self, request: InvokeRequest, result: InvokeResult, node: NodeInfo) -> None:
        """The lessee received `result` of paid `request` from `node` (which signed it): count its
        receipt against the voucher, and sign for it on the node's payment channel."""
        receipt = result.receipt
        if receipt is None or request.voucher is None:
            return
        if receipt.invocation_id != request.invocation_id or receipt.signer != result.signer:
            return  # not this call's receipt, or not the executor's: nothing owed for it
        if self.wallet is not None:
            self.wallet.spent(receipt)
        if self._courier is None:  # made on the first paid result (a wallet may be set after entry)
            self._courier = ChannelCourier(self.keys, self.session, self.anchor_url)
        self._courier.accept(receipt, request.voucher, node_id=node.node_id, node_url=node.url)

    async def _candidates(self, invocation_id: str, node_url: str | None) -> AsyncGenerator[NodeInfo, None]:
        """Entry nodes to try, each once: the cached list, then (when it runs out) a fresh one."""
        tried: set[str] = set()
        for refresh in (False, True):
            for node in await self.entry_nodes(invocation_id, node_url, refresh=refresh):
                if node.node_id not in tried:
                    tried.add(node.node_id)
                    yield node

    async def _check_advert(self, name: str, result: InvokeResult) -> None:
        """Did the node that ran it charge more than its DHT advert said? Then prove it to the anchor
        (which counts the lie and claws the payment back); best effort, never fails the call."""
        if self._discovery is None or result.receipt is None:
            return
        manifest = (await self.function(name)).header.manifest
        record = self._discovery.overcharged(result.receipt, memory_mb=manifest.memory_mb)
        if record is None:
            return
        report = AdvertLieReport(codec.encode(record), result.receipt)
        with contextlib.suppress(P2PFaaSError):
            await rpc.call(
                self.session, "POST", f"{self.anchor_url}/v1/adverts/lies", Ack, report, timeout_s=5.0
            )

    async def entry_nodes(self, invocation_id: str, node_url: str | None, *, refresh: bool) -> list[NodeInfo]:
        if node_url is None and self._discovery is not None and not refresh:
            nearby = await self._discovery.entry_nodes()
            if nearby:
                return nearby  # found through the DHT; the anchor's list is the fallback (refresh pass)
        nodes = await self.nodes(refresh=refresh)
        if node_url is not None:
            pinned = [n for n in nodes if n.url == node_url]
            if not pinned and refresh:
                raise Unreachable(f"node {node_url} is not in the anchor's list of live nodes")
            return pinned
        # The order derives from the invocation id (itself drawn from `rng`), so it does not depend on
        # how concurrent invocations interleave: a seeded run is reproducible.
        random.Random(invocation_id).shuffle(nodes)
        return nodes

    # --- asynchronous invocations (p2pfaas/client/jobs.py, issue #6) ------------------------------

    async def submit(
        self, name: str, payload: Any = None, *, timeout_s: float | None = None, callback_url: str = ""
    ) -> jobs.Job:
        """Submit an invocation and return at once; `poll` or `wait` for its outcome."""
        return await jobs.submit(self, name, payload, timeout_s=timeout_s, callback_url=callback_url)

    async def poll(self, job: jobs.Job) -> InvokeOutcome | None:
        return await jobs.poll(self, job)

    async def wait(
        self, job: jobs.Job, *, poll_s: float = 0.5, timeout_s: float | None = None
    ) -> InvokeOutcome:
        return await jobs.wait(self, job, poll_s=poll_s, timeout_s=timeout_s)

    async def signed_request(
        self, name: str, payload: Any, timeout_s: float | None, *, invocation_id: str | None = None
    ) -> InvokeRequest:
        info = await self.function(name)
        manifest = info.header.manifest
        timeout = min(timeout_s or manifest.timeout_s, manifest.timeout_s)
        try:
            body = json.dumps(payload, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise LocalError(f"payload is not JSON-serialisable: {exc}") from None
        voucher = await self.wallet.voucher(lifetime_s=timeout + NETWORK_SLACK_S) if self.wallet else None
        cap = self.wallet.cap_micro(timeout_s=timeout, memory_mb=manifest.memory_mb) if self.wallet else 0
        return tickets.signed_request(  # a paid request also carries the lessee's spend ticket
            InvokeRequest(
                invocation_id=invocation_id or f"{self.rng.getrandbits(128):032x}",
                digest=info.header.digest,
                payload=body,
                timeout_s=timeout,
                voucher=voucher,
                signer=b"",
                signature=b"",
            ),
            self.keys,
            payee=NO_PAYEE,  # `for_node` names the entry node once it is chosen
            max_price_micro=cap,
        )

    def for_node(self, request: InvokeRequest, node: NodeInfo) -> InvokeRequest:
        """`request` as sent to entry node `node`: a paid one's ticket names that node as its payee
        (the anchor pays only it, or the node it forwards to); an unpaid one as it is."""
        ticket = request.ticket
        if ticket is None or ticket.payee == node.node_id:
            return request
        return tickets.signed_request(
            request, self.keys, payee=node.node_id, max_price_micro=ticket.max_price_micro
        )

    async def executing_node(self, result: InvokeResult, entry: NodeInfo) -> NodeInfo:
        """The node that signed `result`: the entry node, or a known node it forwarded to."""
        if result.signer == entry.public_key:
            return entry
        for refresh in (False, True):
            for node in await self.nodes(refresh=refresh):
                if node.public_key == result.signer:
                    return node
        raise SignatureError(f"node {entry.node_id[:12]} answered with the signature of an unknown key")
