"""The network as a `concurrent.futures.Executor`, and a sync `Client` shared between threads,
against a real anchor and two real nodes on 127.0.0.1 (run on a loop in a thread of their own)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import Client, Executor
from p2pfaas.client.logbook import LogBook
from p2pfaas.errors import FunctionFailed, InvokeTimeout, LocalError, UnencodableResult
from p2pfaas.identity import KeyPair
from tests.client.clientkit import node_daemon
from tests.functions import write_function


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    tmp_path = tmp_path_factory.mktemp("executor")
    run_dir = Path(tempfile.mkdtemp(prefix="p2px-", dir="/tmp"))
    ready = threading.Event()
    stop: list[asyncio.Event] = []
    urls: list[str] = []

    async def serve() -> None:
        stop.append(asyncio.Event())
        async with (
            AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor,
            node_daemon(anchor.url, tmp_path, "a", run_dir) as a,
            node_daemon(anchor.url, tmp_path, "b", run_dir) as b,
        ):
            await a.announce()
            await b.announce()
            urls.append(anchor.url)
            ready.set()
            await stop[0].wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(60)
        with Client(urls[0], KeyPair.generate(), rng=random.Random(3)) as c:
            for kind in ("echo", "boom"):
                c.deploy(write_function(tmp_path, kind))
            c.deploy(write_function(tmp_path, "sleepy", timeout_s=0.5))
            yield c
    finally:
        if stop:
            loop.call_soon_threadsafe(stop[0].set)
        thread.join(60)
        loop.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def test_one_sync_client_serves_many_threads(client: Client) -> None:
    """Issue #16: the sync client used from a ThreadPoolExecutor failed 199 of 200 calls ("This
    event loop is already running")."""
    with concurrent.futures.ThreadPoolExecutor(8) as threads:
        values = list(threads.map(lambda i: client.invoke("echo", i).value, range(40)))
    assert values == [{"echo": i} for i in range(40)]


def test_map_yields_in_order_within_the_window_and_futures_work_with_as_completed(client: Client) -> None:
    pool = Executor(client, max_in_flight=4)
    consumed: list[int] = []

    def payloads() -> Iterator[int]:
        for i in range(30):
            consumed.append(i)
            yield i

    results = pool.map("echo", payloads(), chunksize=2)
    first = next(results)
    assert first.value == {"echo": 0}
    assert len(consumed) <= 4 + 2  # lazily: the window and one chunk ahead, not all 30
    assert [o.value["echo"] for o in results] == list(range(1, 30))
    futures = [pool.submit("echo", {"n": n}) for n in range(10)]
    done = {f.result().value["echo"]["n"] for f in concurrent.futures.as_completed(futures, timeout=120)}
    assert done == set(range(10))
    assert concurrent.futures.wait(futures).not_done == set()
    pool.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit("echo", 1)


def test_a_failed_function_is_never_retried_and_a_timeout_is(client: Client) -> None:
    with Executor(client, retries=2, backoff_s=0.01) as pool:
        with pytest.raises(FunctionFailed, match="bad input"):
            pool.submit("boom", 7).result()
        assert pool.attempts == 1
        with pytest.raises(InvokeTimeout):
            pool.submit("sleepy", {"s": 5}).result()
        assert pool.attempts == 1 + 3  # the first try and two retries
        with pytest.raises(LocalError, match="one payload"):
            pool.submit("echo", 1, 2)


def test_shutdown_can_cancel_what_has_not_run(client: Client) -> None:
    pool = Executor(client, max_in_flight=1)
    futures = [pool.submit("echo", i) for i in range(20)]
    pool.shutdown(wait=True, cancel_futures=True)
    assert all(f.done() for f in futures)
    assert any(f.cancelled() for f in futures)
    assert all(f.result().value == {"echo": i} for i, f in enumerate(futures) if not f.cancelled())


def _hostile_result() -> object:
    class Opaque:  # defined inside: only a pickle could carry it back
        pass

    return Opaque()


def test_a_notebook_style_closure_runs_packed_by_value_and_deployed_once(client: Client) -> None:
    """Issue #16 item 2: `submit(f, *args, **kwargs)` with a plain function, a closure over local
    state, and a lambda; the result travels back in the safe encoding (tuples, bytes, sets)."""
    offset = 10

    def shifted(x: int, *, times: int = 1) -> tuple[int, bytes, frozenset[int]]:
        return (x + offset) * times, bytes([x]), frozenset({x, offset})

    with Executor(client, max_in_flight=8) as pool:
        futures = [pool.submit(shifted, i, times=2) for i in range(12)]
        assert [f.result() for f in futures] == [
            ((i + 10) * 2, bytes([i]), frozenset({i, 10})) for i in range(12)
        ]
        assert list(pool.map(lambda a, b: {"sum": a + b}, range(5), range(5, 10))) == [
            {"sum": 5 + 2 * i} for i in range(5)
        ]
        assert pool.attempts == 12 + 5
    versions = client.spawn(client.async_client.versions("py-shifted")).result()
    assert len(versions) == 1  # twelve calls in flight, one deploy


def test_a_callable_that_raises_or_returns_what_cannot_travel_fails_typed(client: Client) -> None:
    def divide(a: int, b: int) -> float:
        return a / b

    with Executor(client, retries=2, backoff_s=0.01) as pool:
        with pytest.raises(FunctionFailed) as failed:
            pool.submit(divide, 1, 0).result()
        assert failed.value.error_type == "ZeroDivisionError" and "in divide" in failed.value.traceback
        with pytest.raises(UnencodableResult, match="Opaque cannot travel back"):
            pool.submit(_hostile_result).result()
        assert pool.attempts == 2  # neither is retried


def test_an_executor_with_no_arguments_uses_what_keys_new_left(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #16 item 3: `Executor()` after `p2pfaas keys new`, the anchor from P2PFAAS_ANCHOR; no
    account logged in, so it runs the key's own functions unpaid where nodes allow it."""
    monkeypatch.setenv("P2PFAAS_HOME", str(tmp_path))
    monkeypatch.setenv("P2PFAAS_ANCHOR", client.async_client.anchor_url)
    monkeypatch.delenv("P2PFAAS_KEY", raising=False)
    monkeypatch.delenv("P2PFAAS_TOKEN", raising=False)
    with pytest.raises(LocalError, match="p2pfaas keys new"):
        Executor()
    KeyPair.generate().save(tmp_path / "lessee.key")
    with Executor() as pool:
        assert pool.client.async_client.wallet is None
        assert pool.submit(pow, 2, 10).result() == 1024
    with pytest.raises(LocalError, match="closed"):  # the executor's own client closed with it
        pool.client.invoke("echo", 1)


def test_map_can_show_progress(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    class Bar:
        def __init__(self) -> None:
            self.done, self.closed = 0, False

        def update(self, n: int) -> None:
            self.done += n

        def close(self) -> None:
            self.closed = True

    bar = Bar()
    with Executor(client, max_in_flight=4) as pool:
        assert [o.value["echo"] for o in pool.map("echo", range(7), progress=bar)] == list(range(7))
        assert (bar.done, bar.closed) == (7, True)
        assert len(list(pool.map("echo", range(5), progress=True))) == 5
    assert "5/5" in capsys.readouterr().err  # tqdm's own bar, sized from the input's length


def test_a_second_lessee_deploys_byte_identical_code_and_runs_its_own(client: Client, tmp_path: Path) -> None:
    """Issue #16 item 8: the same directory deployed by two keys is two bundles, each its owner's."""
    with Client(client.async_client.anchor_url, KeyPair.generate()) as other:
        info = other.deploy(write_function(tmp_path, "echo"))
        mine = client.spawn(client.async_client.function("echo")).result()
        assert info.header.digest != mine.header.digest
        assert other.invoke("echo", 5).value == {"echo": 5}  # run unpaid: it owns this bundle


def test_what_a_call_printed_comes_with_its_future_and_into_the_logbook(
    client: Client, tmp_path: Path
) -> None:
    def chatty(n: int) -> int:
        print(f"working on {n}")
        return n * 2

    def failing() -> None:
        print("about to fail")
        raise ValueError("no")

    book = LogBook(tmp_path / "logs")
    own = Client(client.async_client.anchor_url, client.async_client.keys, logbook=book)
    with own, Executor(own) as pool:
        done = pool.submit(chatty, 21)
        assert done.result(timeout=60) == 42 and done.logs() == "working on 21\n"
        failed = pool.submit(failing)
        with pytest.raises(FunctionFailed):
            failed.result(timeout=60)
        assert failed.logs() == "about to fail\n"
        quiet = pool.submit("echo", {"x": 1})
        assert quiet.result(timeout=60).logs == "" and quiet.logs() == ""
    kept = book.entries("py-chatty") + book.entries("py-failing")
    assert [(e.ok, e.logs) for e in kept] == [(True, "working on 21\n"), (False, "about to fail\n")]
