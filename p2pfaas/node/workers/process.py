"""One worker process of a node (`WorkerNode`): it serves /v1/invoke with its own service, router,
warm pool and executor, passes every other request to the primary over a unix socket, and writes
its load to the shared board.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import signal
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from p2pfaas import logfmt, rpc, tls, tunnel
from p2pfaas.bundle import BundleCache
from p2pfaas.errors import NotFound, P2PFaaSError, Unreachable
from p2pfaas.identity import KeyPair
from p2pfaas.lifecycle import StackService
from p2pfaas.messages import MAX_PAYLOAD_BYTES, Bundle, Delegation, InvokeRequest, InvokeResult
from p2pfaas.metrics import files as metrics_files
from p2pfaas.metrics.catalog import NodeMetrics
from p2pfaas.metrics.http import CLIENT_HEADER, middleware
from p2pfaas.node.app import CHAIN_HEADER, encode_chain
from p2pfaas.node.bundles import BundleSource
from p2pfaas.node.executors import make_executor
from p2pfaas.node.layers import LayerCache, fetch_wheel
from p2pfaas.node.payments.node_payments import NodePayments
from p2pfaas.node.reachability import server_context, tls_enabled
from p2pfaas.node.revocations import follow_revocations
from p2pfaas.node.router import Router
from p2pfaas.node.service import NodeService
from p2pfaas.node.settings import NodeConfig, service_options, share
from p2pfaas.node.shared.loads import LoadRow
from p2pfaas.node.shared.segment import SharedHandle
from p2pfaas.node.shared.tables import SharedTables
from p2pfaas.node.workers.paths import METRICS_DIR, PRIMARY_SOCKET, worker_dir
from p2pfaas.placement.view import LoadView
from p2pfaas.placement.wire import ForwardRequest
from p2pfaas.rpc import error_middleware, read_message, reply

log = logging.getLogger(__name__)


PRIMARY = "http://primary"  # the host part is ignored on a unix socket
PROXIED = "/{tail}"  # the route template (as the metrics name it) of everything passed on to the primary


LOAD_WRITE_S = 0.05  # how often a worker writes its load to the board (gossip runs every ~2 s)


ANCHOR_KEY_WAIT_S = 10.0  # before serving, for the anchor's voucher key (learned later if it is down)


PROXY_TIMEOUT_S = 3600.0 + 60.0  # a forwarded invocation may run for its whole timeout


def write_load(tables: SharedTables, index: int, router: Router, *, peer_room: int = 0) -> None:
    """Process `index`'s row on the node's load board, from its router."""
    row = LoadRow(
        slots=router.capacity,
        free_slots=0 if router.draining else router.free_slots(),
        queue_length=router.queue_length(),
        running=router.in_progress(),
        invocations=router.service.stats.invocations,
        peer_room=peer_room,
        warm=warm_instances(router.service.executor),
        memory_mb=router.service.admission.capacity.memory_used_mb,
    )
    tables.loads.write(index, row)


def warm_instances(executor: object) -> int:
    """How many function instances `executor` keeps started (0 for executors that keep none)."""
    warm_digests = getattr(executor, "warm_digests", None)
    return 0 if warm_digests is None else sum(warm_digests().values())


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is started with (pickled by multiprocessing's spawn)."""

    config: NodeConfig
    index: int
    port: int
    url: str
    shared: SharedHandle
    parent_pid: int
    log_level: int
    log_format: str = "text"  # `--log-format` (p2pfaas.logfmt)


def run_worker(spec: WorkerSpec) -> None:
    """The entry point of a worker process."""
    logfmt.setup(spec.log_level, spec.log_format, prefix=f"worker-{spec.index} ")
    logfmt.set_process(worker=str(spec.index), node=KeyPair.load(spec.config.key_path).key_id)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio works too
        asyncio.run(_serve(spec))
    else:
        uvloop.run(_serve(spec))


async def _serve(spec: WorkerSpec) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Ctrl-C reaches the whole process group: the primary decides what its workers do.
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    async with WorkerNode(spec) as node:
        while not stop.is_set() and os.getppid() == spec.parent_pid:  # an orphan worker stops too
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        await node.drain()


class WorkerNode(StackService):
    """Worker `spec.index` of a node: `async with WorkerNode(spec) as worker:` serves until left."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.config = spec.config
        self.index = spec.index
        self.dir = worker_dir(self.config.work_dir, spec.index)
        self.keys = KeyPair.load(self.config.key_path)  # the primary created it
        self.rng = random.Random()

    async def _start(self) -> None:

        stack, config = self._stack, self.config
        self.tables = SharedTables.attach(self.spec.shared)
        stack.callback(self.tables.close)
        stack.callback(self.tables.loads.clear, self.index)  # gone from the node's load
        self.executor = await asyncio.to_thread(
            make_executor, config, owner_id=self.keys.key_id, worker=self.index
        )
        await self.executor.start()
        stack.push_async_callback(self.executor.aclose)
        self.session = await stack.enter_async_context(tunnel.session())
        self.primary = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(config.work_dir / PRIMARY_SOCKET)))
        )
        options = service_options(config, rng=self.rng, worker=self.index)
        payments = await stack.enter_async_context(
            NodePayments(
                anchor_url=config.anchor_url, keys=self.keys, session=self.session, work_dir=config.work_dir,
                journal_dir=self.dir, prices=options["prices"], rng=self.rng,
                cpus_per_instance=options["cpus_per_instance"], spends=self.tables.spends, worker=self.index,
                restore=False, unpaid=config.unpaid(),
            )
        )  # fmt: skip
        with contextlib.suppress(TimeoutError):  # serve paid work from the start, when the anchor answers
            await asyncio.wait_for(payments.ready(), ANCHOR_KEY_WAIT_S)
        self.metrics: NodeMetrics | None = None
        if config.metrics:  # summed with the primary's and the siblings' at the primary's /metrics
            metrics_files.record_to_files(config.work_dir / METRICS_DIR)
            self.metrics = NodeMetrics()
        self.service = NodeService(
            metrics=self.metrics,
            keys=self.keys,
            executor=self.executor,
            bundles=BundleSource(
                BundleCache(
                    self.dir / "bundles",
                    max_bytes=share(config.bundle_cache_mb, config.workers, self.index) << 20,
                ),
                fetch_bundle=self._fetch_bundle,
                rng=self.rng,
            ),
            layers=LayerCache(
                self.dir / "layers",
                fetch_wheel=functools.partial(fetch_wheel, self.session, config.anchor_url),
                max_bytes=share(config.layer_cache_mb, config.workers, self.index) << 20,
                max_layer_bytes=config.max_layer_mb << 20,
            ),
            authorize=payments.authorize,
            on_receipt=payments.on_receipt,
            offer_channels=payments.offer_channels,
            url=self.spec.url,
            **options,
        )
        stack.push_async_callback(self.service.aclose)
        self.router = Router(
            service=self.service,
            keys=self.keys,
            view=LoadView(self_id=self.keys.key_id),
            send_forward=_no_forward,
            rng=self.rng,
            shared=self.tables.invocations,
            worker=self.index,
            primary=self,
        )
        self.runner = web.AppRunner(self._app(), access_log=None)
        await self.runner.setup()
        stack.push_async_callback(self.runner.cleanup)
        # The primary wrote the certificate before starting us: the same identity on every worker.
        context = server_context(self.keys, config.work_dir) if tls_enabled(config.tls, config.host) else None
        self.site = web.TCPSite(
            self.runner, config.host, self.spec.port, reuse_port=True, ssl_context=context
        )
        await self.site.start()
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        self._stop = asyncio.Event()
        stack.callback(self._stop.set)  # runs first on leaving: the load writer ends
        tasks.create_task(self._write_load_forever())
        tasks.create_task(
            follow_revocations(
                self.session, config.anchor_url, self.service.revoke, self._stop,
                poll_s=config.revocation_poll_s,
            )
        )  # fmt: skip
        write_load(self.tables, self.index, self.router)
        log.info("worker %d serving on port %d", self.index, self.spec.port)

    async def drain(self) -> None:
        """Stop accepting connections, finish what was accepted (within the drain deadline)."""
        with contextlib.suppress(RuntimeError):  # already stopped
            await self.site.stop()
        finished = await self.router.drain(deadline_s=self.config.drain_deadline_s)
        log.info("worker %d drained (%s)", self.index, "clean" if finished else "deadline passed")

    # --- serving ---------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        # Its own routes are counted here; what it passes on, by the primary's internal app.
        measure: list[Middleware] = []
        if self.metrics is not None:
            measure.append(middleware(self.metrics.http, skip=(PROXIED,)))
        app = web.Application(
            middlewares=[*measure, error_middleware], client_max_size=MAX_PAYLOAD_BYTES + 64 * 1024
        )
        mine = tls.identity_path(self.keys.key_id)  # the https base URL names the node (p2pfaas.tls)
        app.add_routes(
            [
                web.post("/v1/invoke", self._invoke),
                web.post(mine + "/v1/invoke", self._invoke),
                web.route("*", "/{tail:.*}", self._proxy),
            ]
        )
        return app

    async def _invoke(self, request: web.Request) -> web.Response:
        return reply(await self.router.invoke(await read_message(request, InvokeRequest)))

    async def _proxy(self, request: web.Request) -> web.Response:
        """Any other route: the primary answers it (gossip, forwards, drain, jobs, bundles, status)."""
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k in ("Content-Type", "Authorization")}
        headers[CLIENT_HEADER] = request.remote or ""  # who asks, for the primary's /metrics check
        try:
            async with self.primary.request(
                request.method,
                f"{PRIMARY}{request.path_qs}",
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT_S, sock_connect=5.0),
            ) as answer:
                return web.Response(
                    body=await answer.read(), status=answer.status, content_type=answer.content_type
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Unreachable(f"this node's primary process does not answer: {exc}") from None

    def has_room(self) -> bool:
        primary = self.tables.loads.row(0)
        return primary.free_slots > 0 or primary.peer_room > 0

    async def place(self, request: InvokeRequest, hops: int, chain: tuple[Delegation, ...]) -> InvokeResult:
        return await rpc.call(
            self.primary,
            "POST",
            f"{PRIMARY}/internal/v1/place?hops={hops}",
            InvokeResult,
            request,
            timeout_s=request.timeout_s + 30.0,
            headers={CHAIN_HEADER: encode_chain(chain)} if chain else None,
        )

    async def _fetch_bundle(self, digest: str) -> Bundle:
        """From the primary when it holds the bundle (no network), else from the anchor."""
        with contextlib.suppress(NotFound, Unreachable):
            return await rpc.call(
                self.primary, "GET", f"{PRIMARY}/v1/bundles/{digest}", Bundle, timeout_s=30.0
            )
        url = f"{self.config.anchor_url}/v1/bundles/{digest}"
        return await rpc.call(self.session, "GET", url, Bundle, timeout_s=30.0)

    # --- load --------------------------------------------------------------------------------------

    async def _write_load_forever(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), LOAD_WRITE_S)
            write_load(self.tables, self.index, self.router)


async def _no_forward(url: str, forward: ForwardRequest) -> InvokeResult:
    raise P2PFaaSError("a worker process does not forward; the primary places for it")
