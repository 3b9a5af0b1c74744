"""The primary's pool of worker processes: starts them on the node's port, restarts one that dies
(with a pause that doubles while it keeps dying), and writes the primary's own load to the board.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from multiprocessing.process import BaseProcess
from types import TracebackType

from p2pfaas import logfmt
from p2pfaas.errors import ConfigError
from p2pfaas.lifecycle import TaskSet
from p2pfaas.node.router import Router
from p2pfaas.node.settings import NodeConfig
from p2pfaas.node.shared.tables import SharedTables
from p2pfaas.node.workers.process import (
    LOAD_WRITE_S,
    WorkerSpec,
    run_worker,
    write_load,
)

log = logging.getLogger(__name__)


READY_TIMEOUT_S = 120.0  # a worker's executor may pull nothing, but it does start Docker things


RESTART_PAUSE_S = (1.0, 30.0)  # a dying worker is restarted after this, doubling while it keeps dying


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
        self._tasks = TaskSet()  # the watcher of the workers and the writer of the primary's load

    async def __aenter__(self) -> WorkerPool:
        try:
            for index in range(1, self.count):
                self._start(index)
            await self._ready()
        except BaseException:
            await self._stop_all(timeout_s=5.0)
            raise
        self._tasks.spawn(self._watch(), name="worker watcher")
        self._tasks.spawn(self._write_load_forever(), name="primary load writer")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping = True
        await self._tasks.cancel()
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
            log_format=logfmt.current_form(),
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
