"""A node's placement side, assembled: view, router, gossip, async jobs, drain, and their HTTP routes.

`NodePlacement` is an async context manager the daemon enters once its HTTP site is bound: it runs
the gossip task and the neighbour refresher in a TaskGroup it owns. Neighbours are, in order of
preference, the DHT's nearby adverts (with their Vivaldi-predicted RTTs) when the node runs an
overlay, else the anchor's node list, plus every peer already in the view.

Draining (`drain()`, from `p2pfaas node drain` via POST /v1/drain or from SIGTERM): the node marks
itself draining in its reports and tells every neighbour at once; new invocations are forwarded, not
run; invocations queued here are handed to neighbours; in-flight ones finish within the deadline;
then `on_drained` (the daemon's stop) runs. Neighbours see the draining node's warm functions in
its report and pre-warm them (`scale_once`, `placement/scaling.py`), as they do for functions queued
at a busy neighbour.

Routes (MessagePack bodies):
    POST /v1/forward       ForwardRequest -> InvokeResult, or 503 busy (a conditional forward refused)
    POST /v1/gossip        GossipExchange -> GossipExchange
    POST /v1/drain         DrainRequest (signed with this node's key) -> Ack
    POST /v1/jobs          JobSubmit -> JobStatus
    POST /v1/jobs/{id}     JobPoll -> JobStatus, or 404 (signed by the job's lessee; else 403/404)
    GET  /v1/jobs/{id}     -> 403 always (an unsigned poll; see node/jobs.py)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from p2pfaas import rpc, signing
from p2pfaas.clock import wall_time
from p2pfaas.errors import ConfigError, P2PFaaSError
from p2pfaas.identity import KeyPair, PublicKey
from p2pfaas.messages import Ack, InvokeResult, NodeList
from p2pfaas.node.callbacks import CallbackPolicy, CallbackSender
from p2pfaas.node.drain import write_url
from p2pfaas.node.gossip import Gossiper, LocalLoad
from p2pfaas.node.jobs import Jobs
from p2pfaas.node.router import Router
from p2pfaas.node.service import NodeService
from p2pfaas.placement.policy import Policy, make_policy
from p2pfaas.placement.scaling import PrewarmPlanner, Release
from p2pfaas.placement.view import LoadView
from p2pfaas.placement.wire import (
    DrainRequest,
    ForwardRequest,
    GossipExchange,
    JobPoll,
    JobSubmit,
    LoadReport,
)

log = logging.getLogger(__name__)

FORWARD_SLACK_S = 10.0
DRAIN_REQUEST_MAX_AGE_S = 300.0


@dataclass(frozen=True)
class PlacementConfig:
    policy: str = "ours"
    gossip_period_s: float = 2.0
    gossip_fanout: int = 2
    view_max_age_s: float = 10.0
    hop_limit: int = 2
    drain_deadline_s: float = 60.0
    neighbour_refresh_s: float = 15.0
    static_peers: tuple[str, ...] = ()  # peer base URLs, always gossiped with
    # Address ranges job callbacks may go to beyond public addresses (node/callbacks.py), e.g.
    # ("127.0.0.0/8",) for a hook on this host: loopback, LAN and link-local are refused otherwise.
    callback_allow: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        make_policy(self.policy)  # raises ValueError naming the choices
        CallbackPolicy.from_cidrs(self.callback_allow)  # raises ConfigError naming a bad range
        if self.gossip_period_s <= 0 or self.gossip_fanout < 1 or self.hop_limit < 1:
            raise ConfigError("gossip period must be positive, fan-out and hop limit at least 1")


class NodePlacement:
    def __init__(
        self,
        *,
        service: NodeService,
        keys: KeyPair,
        session: aiohttp.ClientSession,
        rng: random.Random,
        anchor_url: str,
        config: PlacementConfig | None = None,
        overlay: Callable[[], Any] = lambda: None,
        on_drained: Callable[[], None] | None = None,
        work_dir: Path | None = None,
    ) -> None:
        self.config = config or PlacementConfig()
        self.service = service
        self.keys = keys
        self.session = session
        self.anchor_url = anchor_url
        self.overlay = overlay
        self.on_drained = on_drained
        self.work_dir = work_dir
        self.view = LoadView(self_id=keys.key_id, max_age_s=self.config.view_max_age_s)
        policy: Policy = make_policy(self.config.policy)
        self.gossiper = Gossiper(
            keys=keys,
            view=self.view,
            local_load=self._local_load,
            exchange=self._exchange,
            neighbours=self._neighbours,
            rng=rng,
            period_s=self.config.gossip_period_s,
            fanout=self.config.gossip_fanout,
        )
        self.router = Router(
            service=service,
            keys=keys,
            view=self.view,
            send_forward=self._send_forward,
            probe=self.gossiper.probe,
            policy=policy,
            rng=rng,
            hop_limit=self.config.hop_limit,
        )
        self.router.on_room = self._on_room
        self.gossiper.on_sender = self._on_report
        self.callbacks = CallbackSender(CallbackPolicy.from_cidrs(self.config.callback_allow))
        self.jobs = Jobs(run=self.router.invoke, callback=self.callbacks.send, node_id=keys.key_id)
        self.room_pushes = 0  # reports sent at once because a slot freed here (work pulling)
        self._room_push: asyncio.Task[GossipExchange | None] | None = None
        self.planner = PrewarmPlanner()
        self.prewarms = 0
        self._known_urls: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self._drain_task: asyncio.Task[bool] | None = None

    @property
    def url(self) -> str:
        return self.gossiper.url

    @url.setter
    def url(self, value: str) -> None:
        self.gossiper.url = value

    async def __aenter__(self) -> NodePlacement:
        if self.work_dir is not None and self.url:
            write_url(self.work_dir, self.url)  # for `p2pfaas node drain`
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._tasks.create_task(self._refresh_neighbours_forever())
        self._tasks.create_task(self.gossiper.run(self._stop))
        self._tasks.create_task(self._scale_forever())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._drain_task is not None and not self._drain_task.done():
            self._drain_task.cancel()
        assert self._tasks is not None
        try:
            await self._tasks.__aexit__(exc_type, exc, tb)
        finally:
            await self.callbacks.aclose()

    # --- load and neighbours ---------------------------------------------------------------------

    def _local_load(self) -> LocalLoad:
        warm_digests = getattr(self.service.executor, "warm_digests", None)
        warm: dict[str, int] = dict(warm_digests()) if warm_digests is not None else {}
        slots, free_slots, queue_length = self.router.node_load()  # all of the node's worker processes
        return LocalLoad(
            capacity=slots,
            free_slots=0 if self.router.draining else free_slots,
            queue_length=queue_length,
            draining=self.router.draining,
            warm=warm,
            queued=self.router.queued_by_digest(),
        )

    def _neighbours(self) -> list[str]:
        in_view = [load.url for load in self.view.loads(asyncio.get_running_loop().time())]
        return [*self.config.static_peers, *self._known_urls, *in_view]

    async def refresh_neighbours(self) -> None:
        urls: list[str] = []
        overlay = self.overlay()
        if overlay is not None:
            with contextlib.suppress(P2PFaaSError, OSError, TimeoutError):
                for advert in await overlay.find_nearby("python3.11", count=16):
                    urls.append(advert.url)
                    self.view.set_rtt(PublicKey(advert.public_key).key_id, advert.predicted_rtt_s)
        if not urls:
            try:
                listing = await rpc.call(
                    self.session, "GET", f"{self.anchor_url}/v1/nodes", NodeList, timeout_s=10.0
                )
            except P2PFaaSError as exc:
                log.debug("node list for gossip unavailable: %s", exc)
            else:
                urls = [n.url for n in listing.nodes if n.node_id != self.keys.key_id]
        if urls:
            self._known_urls = urls

    async def _refresh_neighbours_forever(self) -> None:
        while not self._stop.is_set():
            await self.refresh_neighbours()
            # Soon again while we know nobody (the network is starting), then at the configured pace.
            wait = self.config.neighbour_refresh_s if self._known_urls else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)

    # --- work pulling: room is announced when it appears, and taken at once --------------------------

    def _on_room(self) -> None:
        """A slot freed here and nothing waits: send our report now to the neighbour that reported
        the longest queue (per slot), so it can hand us work (router.offer) while the room lasts.
        One such push at a time; its answer refreshes our view of that neighbour."""
        if self._tasks is None or self._stop.is_set():
            return
        if self._room_push is not None and not self._room_push.done():
            return
        now = asyncio.get_running_loop().time()
        loaded = [load for load in self.view.loads(now) if load.queue_length > 0 and not load.draining]
        if not loaded:
            return
        target = max(loaded, key=lambda load: (load.queue_length / max(1, load.capacity), load.received_at))
        self.room_pushes += 1
        self._room_push = self._tasks.create_task(self.gossiper.exchange_with(target.url))

    def _on_report(self, node_id: str, report: LoadReport) -> None:
        if report.free_slots > 0 and not report.draining:
            self.router.offer(node_id, min(report.free_slots, report.capacity))

    # --- local scaling: warm what is hot next door ---------------------------------------------------

    async def scale_once(self) -> None:
        """Pre-warm functions queued at (or warm on a draining) neighbour; release them once cool.
        Needs an executor with `prewarm`/`release`/`warm_digests` (the pooled executors have them)."""
        executor = self.service.executor
        prewarm = getattr(executor, "prewarm", None)
        release = getattr(executor, "release", None)
        warm_digests = getattr(executor, "warm_digests", None)
        if prewarm is None or release is None or warm_digests is None or self.router.draining:
            return
        now = asyncio.get_running_loop().time()
        actions = self.planner.plan(
            now, self.view.loads(now), free_slots=self.router.free_slots(), warm=dict(warm_digests())
        )
        for action in actions:
            if isinstance(action, Release):
                release(action.digest)
                continue
            try:
                spec = await self.service.spec_for(action.digest)  # fetched and verified
                await prewarm(spec, action.count)
                self.prewarms += 1
            except P2PFaaSError as exc:
                log.info("pre-warming %s for a neighbour failed: %s", action.digest[:12], exc)

    async def _scale_forever(self) -> None:
        while not self._stop.is_set():
            await self.scale_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.gossip_period_s)

    # --- transport -------------------------------------------------------------------------------

    async def _exchange(self, url: str, msg: GossipExchange) -> GossipExchange:
        return await rpc.call(self.session, "POST", f"{url}/v1/gossip", GossipExchange, msg, timeout_s=5.0)

    async def _send_forward(self, url: str, forward: ForwardRequest) -> InvokeResult:
        timeout = forward.request.timeout_s + FORWARD_SLACK_S
        return await rpc.call(
            self.session, "POST", f"{url}/v1/forward", InvokeResult, forward, timeout_s=timeout
        )

    # --- draining --------------------------------------------------------------------------------

    async def drain(self, deadline_s: float | None = None) -> bool:
        """Drain now; True if all work finished within the deadline. Then `on_drained` runs."""
        deadline = self.config.drain_deadline_s if deadline_s is None else deadline_s
        log.info("node %s draining (deadline %g s)", self.keys.key_id[:12], deadline)
        finished = await self.router.drain(deadline_s=deadline, announce=self.announce_draining)
        if finished:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.jobs.aclose(), max(0.1, deadline))
        log.info("node %s drained (%s)", self.keys.key_id[:12], "clean" if finished else "deadline passed")
        if self.on_drained is not None:
            self.on_drained()
        return finished

    async def announce_draining(self) -> None:
        """Gossip it to every neighbour, and republish the DHT advert with its draining flag set
        (so clients' discovery skips this node) when the node runs an overlay."""
        overlay = self.overlay()
        if overlay is not None and callable(getattr(overlay, "load", None)):
            current = overlay.load
            overlay.load = lambda: dataclasses.replace(current(), draining=True)
            with contextlib.suppress(P2PFaaSError, OSError, TimeoutError):
                await asyncio.wait_for(overlay.publish_advert(), 10.0)
        await self.gossiper.announce()

    def request_drain(self, deadline_s: float | None = None) -> None:
        """Start draining in the background (a signal handler or the /v1/drain route); idempotent."""
        if self._drain_task is None and self._tasks is not None:
            self._drain_task = self._tasks.create_task(self.drain(deadline_s))

    # --- HTTP ------------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/forward", self._http_forward),
            web.post("/v1/gossip", self._http_gossip),
            web.post("/v1/drain", self._http_drain),
            web.post("/v1/jobs", self._http_submit),
            web.post("/v1/jobs/{invocation_id}", self._http_poll),
            web.get("/v1/jobs/{invocation_id}", self._http_unsigned_poll),
        ]

    async def _http_forward(self, request: web.Request) -> web.Response:
        msg = await rpc.read_message(request, ForwardRequest)
        return rpc.reply(await self.router.forwarded(msg))

    async def _http_gossip(self, request: web.Request) -> web.Response:
        msg = await rpc.read_message(request, GossipExchange)
        self.gossiper.receive(msg)
        return rpc.reply(self.gossiper.message())

    async def _http_drain(self, request: web.Request) -> web.Response:
        msg = await rpc.read_message(request, DrainRequest)
        signer = signing.verify(msg)
        if signer.key_id != self.keys.key_id:
            raise rpc.Forbidden("only this node's own key may drain it")
        if abs(wall_time() - msg.issued_at) > DRAIN_REQUEST_MAX_AGE_S:
            raise rpc.Forbidden("drain request is stale (or the clocks disagree by minutes)")
        self.request_drain(msg.drain_deadline_s)
        return rpc.reply(Ack(detail="draining"))

    async def _http_submit(self, request: web.Request) -> web.Response:
        msg = await rpc.read_message(request, JobSubmit)
        if self.router.draining:
            raise rpc.Busy("node is draining: submit elsewhere")
        return rpc.reply(self.jobs.submit(msg), status=202)

    async def _http_poll(self, request: web.Request) -> web.Response:
        msg = await rpc.read_message(request, JobPoll)
        if msg.invocation_id != request.match_info["invocation_id"]:
            raise rpc.Forbidden("the job poll names another invocation than the URL")
        return rpc.reply(self.jobs.poll(msg))

    async def _http_unsigned_poll(self, request: web.Request) -> web.Response:
        # Whatever the id, and before looking it up: a job's state is its lessee's alone.
        raise rpc.Forbidden("a job's state is for its lessee: POST a JobPoll signed by the job's key")
