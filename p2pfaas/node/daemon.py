"""The node daemon's lifecycle: choose an executor, serve HTTP, announce to the anchor, shut down cleanly.

`NodeDaemon` is an async context manager: entering it starts the executor (which removes orphaned
containers of a previous run), the HTTP site and the announcer task; leaving it stops them in
reverse order and removes every container it started. `run_node` adds signal handling for the CLI.

Executor choice (`--executor`): "docker" needs a reachable engine; "process" is the UNSANDBOXED
fallback, allowed only with `allow_unsandboxed` (devnet sets it); "auto" prefers Docker and falls back
to processes only where allowed, and says so loudly. A node never falls back silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import signal
import socket

from aiohttp import web

from p2pfaas import logfmt, rpc, signing, tunnel
from p2pfaas.bundle import BundleCache
from p2pfaas.clock import wall_time
from p2pfaas.errors import P2PFaaSError, Refused
from p2pfaas.exec.base import Executor
from p2pfaas.identity import KeyPair
from p2pfaas.lifecycle import StackService
from p2pfaas.messages import Ack, Bundle, NodeAnnouncement
from p2pfaas.metrics import files as metrics_files
from p2pfaas.metrics.catalog import NodeMetrics
from p2pfaas.metrics.http import Exposure
from p2pfaas.node import reachability, wheel_source
from p2pfaas.node.admission import peer_with_room
from p2pfaas.node.app import make_app, make_internal_app
from p2pfaas.node.bundles import BundleSource
from p2pfaas.node.executors import make_executor
from p2pfaas.node.layers import LayerCache, fetch_wheel
from p2pfaas.node.lending import ActivityGate, Lending, LendingControl, Schedule
from p2pfaas.node.overlay import Overlay, overlay_for
from p2pfaas.node.payments.node_payments import NodePayments
from p2pfaas.node.placement import NodePlacement, PlacementConfig
from p2pfaas.node.reachability import Reach
from p2pfaas.node.readings import node_readings
from p2pfaas.node.revocations import follow_revocations
from p2pfaas.node.service import NodeService
from p2pfaas.node.settings import NodeConfig, check, metrics_networks, service_options, share
from p2pfaas.node.shared.tables import SharedTables
from p2pfaas.node.wheel_source import WheelSource
from p2pfaas.node.workers.paths import METRICS_DIR, PRIMARY_SOCKET, adopt_worker_journals
from p2pfaas.node.workers.pool import WorkerPool
from p2pfaas.relay import RelayHub, RelayLink, is_relayed

log = logging.getLogger(__name__)

RUNTIMES = ("python3.11",)


class NodeDaemon(StackService):
    """One volunteer node: `async with NodeDaemon(config, executor=e) as node: await node.stopped()`.

    `run_node` chooses the executor with `make_executor`; tests and the simulator pass their own.
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        executor: Executor,
        keys: KeyPair | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.keys = keys or KeyPair.load_or_create(config.key_path)
        self.rng = rng or random.Random()
        self.executor = executor
        self.url = ""
        self.reach = Reach.UNTESTED
        self.overlay: Overlay | None = None
        self.relay_link: RelayLink | None = None
        self._relayed_at = 0.0  # when the node last started relaying or asked whether it still must
        self._bound = ("", 0)  # the host and port it listens on
        self._stop = asyncio.Event()
        self._reannounce = asyncio.Event()  # the URL changed or we are stopping: wake the announcer

    @property
    def node_id(self) -> str:
        return self.keys.key_id

    async def _start(self) -> None:
        stack = self._stack
        await self.executor.start()
        stack.push_async_callback(self.executor.aclose)
        self.session = await stack.enter_async_context(tunnel.session())  # reaches relayed peers too
        options = service_options(self.config, rng=self.rng)
        self.tables: SharedTables | None = None
        if self.config.workers > 1:  # node-wide state of the worker processes (node/workers/)
            self.tables = SharedTables.create(
                workers=self.config.workers, spill_dir=self.config.work_dir / "results"
            )
            stack.callback(self.tables.unlink)
            stack.callback(self.tables.close)
        await asyncio.to_thread(adopt_worker_journals, self.config.work_dir)
        # Vouchers checked offline and receipts sent to the anchor in batches (issue #5).
        self.payments = await stack.enter_async_context(
            NodePayments(
                anchor_url=self.config.anchor_url, keys=self.keys, session=self.session,
                work_dir=self.config.work_dir, prices=options["prices"],
                cpus_per_instance=options["cpus_per_instance"], rng=self.rng,
                spends=self.tables.spends if self.tables else None, unpaid=self.config.unpaid(),
            )
        )  # fmt: skip
        self.metrics = NodeMetrics() if self.config.metrics else None
        metrics_dir = self.config.work_dir / METRICS_DIR if self.metrics and self.tables else None
        if metrics_dir is not None:  # the worker processes' figures (p2pfaas.metrics.files)
            await asyncio.to_thread(metrics_files.reset, metrics_dir)
        service = NodeService(
            metrics=self.metrics,
            keys=self.keys,
            executor=self.executor,
            bundles=BundleSource(
                BundleCache(
                    self.config.work_dir / "bundles",
                    max_bytes=share(self.config.bundle_cache_mb, self.config.workers, 0) << 20,
                ),
                fetch_bundle=self._fetch_bundle,
                fetch_from_peer=self._fetch_bundle_from,
                rng=self.rng,
            ),
            layers=LayerCache(
                self.config.work_dir / "layers",
                fetch_wheel=WheelSource(  # peers that announced the layer first, the anchor last
                    fetch_from_anchor=functools.partial(fetch_wheel, self.session, self.config.anchor_url),
                    fetch_from_peer=functools.partial(wheel_source.fetch_from, self.session),
                    rng=self.rng,
                    own_url=lambda: self.url,
                ),
                max_bytes=share(self.config.layer_cache_mb, self.config.workers, 0) << 20,
                max_layer_bytes=self.config.max_layer_mb << 20,
            ),
            authorize=self.payments.authorize,
            on_receipt=self.payments.on_receipt,
            offer_channels=self.payments.offer_channels,
            **options,
        )
        self.service = service
        stack.push_async_callback(service.aclose)
        self.placement = NodePlacement(
            service=service, keys=self.keys, session=self.session, rng=self.rng,
            anchor_url=self.config.anchor_url, overlay=lambda: self.overlay, on_drained=self.stop,
            work_dir=self.config.work_dir,
            config=PlacementConfig(
                policy=self.config.placement, gossip_period_s=self.config.gossip_period_s,
                gossip_fanout=self.config.gossip_fanout, drain_deadline_s=self.config.drain_deadline_s,
                callback_allow=self.config.callback_allow,
            ),
        )  # fmt: skip
        view, loop = self.placement.router.view, asyncio.get_running_loop()
        service.admission.suggest_peer = lambda: peer_with_room(view.candidates(loop.time()))
        router = self.placement.router
        if self.tables is not None:
            router.shared, router.worker = self.tables.invocations, 0
        self.relay_hub = RelayHub()  # relays for nodes behind NAT once we are known to be reachable
        self.exposure: Exposure | None = None
        if self.metrics is not None:
            registry = self.metrics.registry
            self.exposure = Exposure(
                self.metrics.http,
                functools.partial(metrics_files.exposition, registry, metrics_dir),
                metrics_networks(self.config),
            )
            self.metrics.set_readings(
                lambda: node_readings(
                    self.placement.router, self.service, self.payments, tables=self.tables,
                    overlay=self.overlay, memory_lent_mb=self.config.memory_mb,
                )
            )  # fmt: skip
        lending = Lending(
            Schedule.parse(self.config.lend_hours), ActivityGate(busy_load=self.config.pause_load)
        )
        self.lending = LendingControl(
            self.placement, lending, self.keys, drain_deadline_s=self.config.drain_deadline_s,
            cpus=self.config.cpus,
        )  # fmt: skip
        app = self.app = make_app(
            service, self.placement, relay=self.relay_hub, exposure=self.exposure, lending=self.lending
        )
        runner = self._runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        self.tls_id = (
            self.keys.key_id if reachability.tls_enabled(self.config.tls, self.config.host) else None
        )
        context = reachability.server_context(self.keys, self.config.work_dir) if self.tls_id else None
        site = web.TCPSite(
            runner,
            self.config.host,
            self.config.port,
            reuse_port=self.tables is not None,
            ssl_context=context,
        )
        await site.start()
        host, port = self.config.host, reachability.bound_port(runner, self.config.port)
        self._bound = (host, port)
        stack.push_async_callback(self._stop_relaying)
        fixed = reachability.fixed_url(self.config.public_url, host, port, tls_id=self.tls_id)
        self.reach = Reach.FIXED if fixed else Reach.UNTESTED
        self.url = fixed or await reachability.guess_url(
            self.session, self.config.anchor_url, host, port, tls_id=self.tls_id
        )
        if self.reach is Reach.FIXED:
            self.relay_hub.base_url = self.url
        service.url = self.url
        self.workers: WorkerPool | None = None
        if self.tables is not None:
            await self._start_workers(port, self.tables)
        if self.config.dht_port is not None:
            self.overlay = await stack.enter_async_context(
                overlay_for(
                    keys=self.keys,
                    rng=self.rng,
                    url=self.url,
                    host=self.config.dht_host or self.config.host,
                    port=self.config.dht_port,
                    peers=self.config.peers,
                    runtimes=RUNTIMES,
                    cores=self.config.cpus,
                    memory_mb=self.config.memory_mb,
                    service=service,
                    price_per_cpu_s=self.config.price_per_cpu_s_micro,
                    price_per_gb_s=self.config.price_per_gb_s_micro,
                    unpaid=self.config.unpaid().describe(),
                )
            )
        self.placement.url = self.url
        if self.overlay is not None and self.metrics is not None:
            self.overlay.observe_lookup = self.metrics.dht_lookup.observe
        if self.overlay is not None and self.reach is Reach.RELAYED:
            self.overlay.set_url(self.url, relayed=True)
        await stack.enter_async_context(self.placement)  # gossip starts; leaving stops it
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        tasks.create_task(self._announce_forever())
        tasks.create_task(self.lending.run(self._stop))  # hours and the owner's use (node/lending.py)
        tasks.create_task(
            follow_revocations(
                self.session, self.config.anchor_url, service.revoke, self._stop,
                poll_s=self.config.revocation_poll_s,
            )
        )  # fmt: skip
        # Leaving the stack sets _stop first so the announcer ends before the TaskGroup is awaited.
        stack.callback(self.stop)
        logfmt.set_process(node=self.node_id)  # in every line of `--log-format json`
        log.info("node %s serving on %s with executor %s", self.node_id[:12], self.url, self.executor.kind)

    async def _start_workers(self, port: int, tables: SharedTables) -> None:
        """Serve the siblings on a unix socket, then start them on our port (node/workers/)."""
        stack = self._stack
        internal = web.AppRunner(
            make_internal_app(self.service, self.placement, exposure=self.exposure, lending=self.lending),
            access_log=None,
        )
        await internal.setup()
        stack.push_async_callback(internal.cleanup)
        path = self.config.work_dir / PRIMARY_SOCKET
        path.unlink(missing_ok=True)  # left by a crashed run
        await web.UnixSite(internal, str(path)).start()
        path.chmod(0o600)  # only the node's user: what arrives here is trusted as the node's own
        self.workers = await stack.enter_async_context(
            WorkerPool(
                config=self.config,
                workers=self.config.workers,
                port=port,
                url=self.url,
                tables=tables,
                router=self.placement.router,
            )
        )
        self.placement.router.siblings = self.workers

    def _set_url(self, url: str, reach: Reach) -> None:
        """Answer at `url` from now on: in announcements, adverts, gossip and status."""
        self.url, self.reach = url, reach
        self.service.url = self.placement.url = url
        self.relay_hub.base_url = url if reach in (Reach.DIRECT, Reach.FIXED) else ""
        if self.overlay is not None:
            self.overlay.set_url(url, relayed=reach is Reach.RELAYED)
        self._reannounce.set()

    async def _start_relaying(self) -> None:
        """Dial out to a relay and be reached through it (p2pfaas/relay); the link replaces a dead relay."""

        def on_url(url: str | None) -> None:
            if url is not None:
                log.info("reachable through a relay as %s", url)
                self._set_url(url, Reach.RELAYED)

        # Tunnels end in TLS on our own identity key (even with `--tls off` on the port): the relay
        # passes records it cannot read (p2pfaas.tunnel).
        context = reachability.server_context(self.keys, self.config.work_dir)
        server, loop = self._runner.server, asyncio.get_running_loop()
        assert server is not None  # the runner is set up before any relay is needed

        async def serve(sock: socket.socket) -> None:
            await loop.connect_accepted_socket(server, sock, ssl=context, ssl_handshake_timeout=10.0)

        self.relay_link = link = RelayLink(
            session=self.session, keys=self.keys, candidates=self._relay_candidates, serve=serve,
            on_url=on_url, rng=self.rng,
        )  # fmt: skip
        await link.__aenter__()
        self._relayed_at = asyncio.get_running_loop().time()
        self.reach = Reach.RELAYED

    async def _stop_relaying(self) -> None:
        link, self.relay_link = self.relay_link, None
        if link is not None:
            await link.__aexit__(None, None, None)

    async def _retest_direct(self) -> None:
        """While relayed: can the node be reached directly now (a port forward, another network)? The
        anchor dials the direct URL back; if it can, the node leaves its relay, else it stays relayed."""
        host, port = self._bound
        direct = await reachability.guess_url(
            self.session, self.config.anchor_url, host, port, tls_id=self.tls_id
        )
        try:
            await self.announce(url=direct)
        except Refused as exc:
            if exc.status != 422:
                raise
            log.debug("still not reachable directly at %s: %s", direct, exc.reason)
            return
        log.info("reachable directly again at %s: leaving the relay", direct)
        await self._stop_relaying()
        self._set_url(direct, Reach.DIRECT)

    async def _relay_candidates(self) -> list[str]:
        """Relays to try, in order: those configured, public nodes the DHT knows, the anchor last."""
        found: list[str] = []
        if self.overlay is not None:
            with contextlib.suppress(Exception):  # a failed lookup leaves the others to try
                async with asyncio.timeout(5.0):
                    adverts = await self.overlay.find_nearby(RUNTIMES[0], count=8)
                found = [a.url for a in adverts if not is_relayed(a.url)]  # direct nodes only
        return list(dict.fromkeys([*self.config.relays, *found, self.config.anchor_url]))

    def stop(self) -> None:
        self._stop.set()
        self._reannounce.set()

    async def stopped(self) -> None:
        await self._stop.wait()

    async def _fetch_bundle(self, digest: str) -> Bundle:
        return await self._fetch_bundle_from(self.config.anchor_url, digest)

    async def _fetch_bundle_from(self, base_url: str, digest: str) -> Bundle:
        return await rpc.call(self.session, "GET", f"{base_url}/v1/bundles/{digest}", Bundle, timeout_s=30.0)

    async def announce(self, *, url: str | None = None) -> None:
        msg = signing.sign(
            NodeAnnouncement(
                url=url or self.url,
                runtimes=RUNTIMES,
                cores=self.config.cpus,
                memory_mb=self.config.memory_mb,
                executor=self.executor.kind,
                issued_at=wall_time(),
                signer=b"",
                signature=b"",
            ),
            self.keys,
        )
        await rpc.call(self.session, "POST", f"{self.config.anchor_url}/v1/nodes", Ack, msg, timeout_s=10.0)

    async def _announce_forever(self) -> None:
        """Announce now and then periodically; an unreachable anchor is logged, never fatal. An
        announcement that the anchor could not dial back sends the node to a relay; a relayed node
        asks again every `direct_retest_s` whether it is reachable directly."""
        interval, loop = self.config.announce_interval_s, asyncio.get_running_loop()
        while not self._stop.is_set():
            self._reannounce.clear()
            try:
                await self.announce()
                if self.reach is Reach.UNTESTED:
                    log.info("reachable directly at %s", self.url)
                    self._set_url(self.url, Reach.DIRECT)
                    self._reannounce.clear()
                elif (
                    self.reach is Reach.RELAYED
                    and self.relay_link is not None
                    and (loop.time() - self._relayed_at >= self.config.direct_retest_s)
                ):
                    self._relayed_at = loop.time()
                    await self._retest_direct()
            except Refused as exc:
                if exc.status == 422 and self.reach in (Reach.UNTESTED, Reach.DIRECT):
                    log.warning("not reachable from outside at %s (%s): using a relay", self.url, exc)
                    await self._start_relaying()
                    continue  # announce again once a relay took us (`_set_url` wakes us)
                log.warning("the anchor refused our announcement (will retry): %s", exc)
            except P2PFaaSError as exc:
                log.warning("announcing to the anchor failed (will retry): %s", exc)
            # Jitter keeps a devnet's nodes from announcing in lockstep.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reannounce.wait(), interval * self.rng.uniform(0.8, 1.2))


async def run_node(config: NodeConfig) -> None:
    """Run a node until SIGINT or SIGTERM (the CLI's `p2pfaas node run`)."""
    loop = asyncio.get_running_loop()
    check(config)  # before anything starts: a bad setting is one clear error
    keys = KeyPair.load_or_create(config.key_path)
    executor = await asyncio.to_thread(make_executor, config, owner_id=keys.key_id)
    async with NodeDaemon(config, executor=executor, keys=keys) as node:
        loop.add_signal_handler(signal.SIGINT, node.stop)
        # SIGTERM drains: neighbours take the queue, in-flight work finishes, then the node stops.
        loop.add_signal_handler(signal.SIGTERM, node.placement.request_drain)
        processes = f", {config.workers} worker processes" if config.workers > 1 else ""
        print(
            f"node {node.node_id} serving on {node.url} (executor: {node.executor.kind}{processes})",
            flush=True,
        )
        await node.stopped()
    print(f"node {node.node_id} stopped", flush=True)
