"""One node, several worker processes on one port: one event loop per core (issue #4).

A warm invocation costs the node about half a millisecond of CPU (HTTP, Ed25519, the shim round
trip), all of it on one event loop, so a one-process node serves one core's worth however many cores
it lends. `p2pfaas node run --workers N` runs N processes that accept on the same TCP port
(`SO_REUSEPORT`: the kernel spreads connections between them):

- The **primary** (worker 0) is the whole daemon: DHT, gossip, anchor announcements, drain, jobs,
  bundle serving, and the orphan sweep of every worker's containers. It starts the others
  (`WorkerPool`), restarts one that dies, and serves its siblings on a unix socket in the work
  directory (node/app.py `make_internal_app`).
- A **worker** (1..N-1, `WorkerNode`) serves /v1/invoke with its own service, router, warm pool and
  executor, signing with the node key itself: no call to the primary per invocation. Every other
  request it passes to the primary unchanged, and an invocation it has no slot for is handed to the
  primary's router, which places it with the node's view (its slots, its queue, or a peer).

What must hold node-wide is shared, not asked for:
- exactly once per invocation id, and voucher budgets: tables in shared memory (node/shared.py);
- what is lent: slots, memory, queue and bundle cache are split between the processes
  (settings.share); the cores are one parent cgroup over every worker's containers (docker_exec);
- load, for gossip: each worker writes its counters to the shared load board and the primary
  reports the sum.
A worker keeps its own receipt journal (worker-K/ in the work directory), which the primary takes
over when it next starts, and appends to the node's one voucher spend log.

Costs: up to N warm instances of a hot function instead of one, each worker's keep-alive policy
seeing its share of the arrivals, and a function must fit in memory/N. The design and its measured
effect are in docs/node-workers.md and docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import random
import signal
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import TracebackType

import aiohttp
from aiohttp import web

from p2pfaas import rpc
from p2pfaas.bundle import BundleCache
from p2pfaas.errors import ConfigError, NotFound, P2PFaaSError, Unreachable
from p2pfaas.identity import KeyPair
from p2pfaas.lifecycle import StackService
from p2pfaas.messages import MAX_PAYLOAD_BYTES, Bundle, Delegation, InvokeRequest, InvokeResult
from p2pfaas.node.app import CHAIN_HEADER, encode_chain
from p2pfaas.node.executors import make_executor
from p2pfaas.node.router import Router
from p2pfaas.node.service import NodeService
from p2pfaas.node.settings import NodeConfig, service_options, share
from p2pfaas.node.shared import LoadRow, SharedHandle, SharedTables
from p2pfaas.node.vouchers import NodePayments
from p2pfaas.node.worker_paths import PRIMARY_SOCKET, worker_dir
from p2pfaas.placement.view import LoadView
from p2pfaas.placement.wire import ForwardRequest
from p2pfaas.rpc import error_middleware, read_message, reply

log = logging.getLogger(__name__)

PRIMARY = "http://primary"  # the host part is ignored on a unix socket
LOAD_WRITE_S = 0.05  # how often a worker writes its load to the board (gossip runs every ~2 s)
READY_TIMEOUT_S = 120.0  # a worker's executor may pull nothing, but it does start Docker things
RESTART_PAUSE_S = (1.0, 30.0)  # a dying worker is restarted after this, doubling while it keeps dying
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
    )
    tables.loads.write(index, row)


# --- the primary's side ---------------------------------------------------------------------------


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


class WorkerPool:
    """The primary's worker processes: started, watched, restarted, drained, stopped.

    `async with WorkerPool(...) as pool:` returns once every worker serves. It is the primary
    router's `siblings` (their summed load for gossip, and draining them with the node).
    """

    def __init__(
        self, *, config: NodeConfig, workers: int, port: int, url: str, tables: SharedTables, router: Router
    ) -> None:
        self.config = config
        self.router = router  # the primary's: its load goes on the board for the workers to see
        self.count = workers
        self.port = port
        self.url = url
        self.tables = tables
        self.restarts = 0
        self._processes: dict[int, BaseProcess] = {}
        self._started_at: dict[int, float] = {}
        self._stopping = False
        self._context = multiprocessing.get_context("spawn")
        self._watcher: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WorkerPool:
        try:
            for index in range(1, self.count):
                self._start(index)
            await self._ready()
        except BaseException:
            await self._stop_all(timeout_s=5.0)
            raise
        loop = asyncio.get_running_loop()
        self._watcher = loop.create_task(self._watch(), name="worker watcher")
        self._writer = loop.create_task(self._write_load_forever(), name="primary load writer")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping = True
        for task in (self._watcher, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._stop_all(timeout_s=30.0)

    def pids(self) -> list[int]:
        return [p.pid for p in self._processes.values() if p.pid is not None and p.is_alive()]

    def load(self) -> tuple[int, int, int]:
        row = self.tables.loads.totals(exclude=0)
        return row.slots, row.free_slots, row.queue_length

    async def drain(self, *, deadline_s: float) -> bool:
        """SIGTERM every worker (each stops accepting and finishes its work) and wait for them."""
        self._stopping = True
        for process in self._processes.values():
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        return await self._joined(deadline_s)

    def _start(self, index: int) -> None:
        spec = WorkerSpec(
            config=self.config,
            index=index,
            port=self.port,
            url=self.url,
            shared=self.tables.handle,
            parent_pid=os.getpid(),
            log_level=logging.getLogger().getEffectiveLevel(),
        )
        process = self._context.Process(target=run_worker, args=(spec,), name=f"p2pfaas-worker-{index}")
        process.start()
        self._processes[index] = process
        self._started_at[index] = asyncio.get_running_loop().time()

    async def _ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        for index, process in self._processes.items():
            while self.tables.loads.row(index).slots <= 0:  # a worker writes its row once it serves
                if not process.is_alive():
                    raise ConfigError(
                        f"worker process {index} exited while starting (code {process.exitcode})"
                    )
                if loop.time() > deadline:
                    raise ConfigError(
                        f"worker process {index} did not start serving in {READY_TIMEOUT_S:g} s"
                    )
                await asyncio.sleep(0.05)

    async def _write_load_forever(self) -> None:
        """The primary's own row: whether a worker without a slot should hand work over to it
        (a free slot here, or free slots its gossip view sees at peers)."""
        loop = asyncio.get_running_loop()
        while True:
            peer_room = sum(max(0.0, peer.est_free) for peer in self.router.view.candidates(loop.time()))
            write_load(self.tables, 0, self.router, peer_room=int(peer_room))
            await asyncio.sleep(LOAD_WRITE_S)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        pauses_s = dict.fromkeys(self._processes, RESTART_PAUSE_S[0])
        while not self._stopping:
            await asyncio.sleep(0.5)
            for index, process in list(self._processes.items()):
                if process.is_alive() or self._stopping:
                    continue
                # Back off while a worker keeps dying; restart at once after a long healthy run.
                if loop.time() - self._started_at[index] > 10 * RESTART_PAUSE_S[1]:
                    pauses_s[index] = RESTART_PAUSE_S[0]
                pause_s = pauses_s[index]
                pauses_s[index] = min(2 * pause_s, RESTART_PAUSE_S[1])
                freed, unreserved = self._release(index)
                log.error(
                    "worker process %d exited (code %s); %d invocations it ran may be retried and %d "
                    "micro-credits it had reserved on vouchers are free again; restarting it in %.0f s",
                    *(index, process.exitcode, freed, unreserved, pause_s),
                )
                del self._processes[index]
                process.close()
                await asyncio.sleep(pause_s)
                if self._stopping:
                    return
                self.restarts += 1
                self._start(index)

    async def _joined(self, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for process in self._processes.values():
            await asyncio.to_thread(process.join, max(0.0, deadline - loop.time()))
        return all(not p.is_alive() and p.exitcode == 0 for p in self._processes.values())

    async def _stop_all(self, *, timeout_s: float) -> None:
        for process in self._processes.values():
            if process.is_alive():
                process.terminate()
        if not await self._joined(timeout_s):
            for process in self._processes.values():
                if process.is_alive():
                    log.warning("worker process %s did not stop in %g s; killing it", process.name, timeout_s)
                    process.kill()
        for index, process in self._processes.items():
            process.join(timeout=5.0)
            self._release(index)
            process.close()
        self._processes.clear()

    def _release(self, index: int) -> tuple[int, int]:
        """What an exited worker held in the shared tables, freed: its claimed invocation ids (which
        may be retried), its voucher reservations, its load row. Returns (ids, micro-credits)."""
        freed = self.tables.invocations.release_worker(index)
        unreserved = self.tables.spends.release_worker(index)
        self.tables.loads.clear(index)
        return freed, unreserved


# --- a worker process -----------------------------------------------------------------------------


def run_worker(spec: WorkerSpec) -> None:
    """The entry point of a worker process."""
    logging.basicConfig(
        level=spec.log_level, format=f"%(asctime)s %(levelname)s worker-{spec.index} %(name)s: %(message)s"
    )
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
        self.session = await stack.enter_async_context(aiohttp.ClientSession())
        self.primary = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(config.work_dir / PRIMARY_SOCKET)))
        )
        options = service_options(config, rng=self.rng, fetch_from_peer=None, worker=self.index)
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
        self.service = NodeService(
            keys=self.keys,
            executor=self.executor,
            cache=BundleCache(
                self.dir / "bundles",
                max_bytes=share(config.bundle_cache_mb, config.workers, self.index) << 20,
            ),
            fetch_bundle=self._fetch_bundle,
            authorize=payments.authorize,
            on_receipt=payments.on_receipt,
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
        self.site = web.TCPSite(self.runner, config.host, self.spec.port, reuse_port=True)
        await self.site.start()
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        self._stop = asyncio.Event()
        stack.callback(self._stop.set)  # runs first on leaving: the load writer ends
        tasks.create_task(self._write_load_forever())
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
        app = web.Application(middlewares=[error_middleware], client_max_size=MAX_PAYLOAD_BYTES + 64 * 1024)
        app.add_routes([web.post("/v1/invoke", self._invoke), web.route("*", "/{tail:.*}", self._proxy)])
        return app

    async def _invoke(self, request: web.Request) -> web.Response:
        return reply(await self.router.invoke(await read_message(request, InvokeRequest)))

    async def _proxy(self, request: web.Request) -> web.Response:
        """Any other route: the primary answers it (gossip, forwards, drain, jobs, bundles, status)."""
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k in ("Content-Type", "Authorization")}
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
