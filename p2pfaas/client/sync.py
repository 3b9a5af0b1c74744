"""A synchronous wrapper around `AsyncClient` for scripts, notebooks and threads.

It runs its `AsyncClient` on a private event loop in a thread of its own, for its lifetime, and
every call is handed to that loop (`asyncio.run_coroutine_threadsafe`), so one `Client` may be
shared by any number of threads (a `ThreadPoolExecutor`, a notebook's callbacks) and used from
inside a running event loop too. `submit` returns a `concurrent.futures.Future` at once;
`p2pfaas.client.executor.Executor` builds a whole `concurrent.futures.Executor` on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from p2pfaas.client.account import AccountClient
from p2pfaas.client.async_client import AsyncClient
from p2pfaas.client.logbook import LogBook
from p2pfaas.client.outcome import InvokeOutcome
from p2pfaas.client.wallet import Wallet
from p2pfaas.environment import default_anchor, default_key, lessee_keys, logs_dir, saved_token
from p2pfaas.errors import LocalError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import FunctionInfo, NodeInfo

T = TypeVar("T")
DEFAULT_BUDGET_MICRO = 1_000_000  # a voucher of one credit, by default


class Client:
    """`with Client(anchor_url, keys) as c: c.deploy(path); c.invoke("hello", {"x": 1})`.

    `wallet` pays with vouchers (give it the same `AsyncClient` options as keyword arguments:
    `dht_seeds`, `rng`, ...); without one, only the key's own functions run, unpaid, on nodes that
    allow it.
    """

    def __init__(
        self, anchor_url: str, keys: KeyPair, *, wallet: Wallet | None = None, **options: Any
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="p2pfaas client", daemon=True)
        self._thread.start()
        self._client = AsyncClient(anchor_url, keys, wallet=wallet, **options)
        self._account: AccountClient | None = None  # the logged-in account a wallet buys vouchers from
        self._closed = False
        try:
            self._run(self._client.__aenter__())
        except BaseException:
            self._stop_loop()
            raise

    @classmethod
    def from_environment(cls, *, budget_micro: int = DEFAULT_BUDGET_MICRO, **options: Any) -> Client:
        """A client of what `p2pfaas keys new` and `p2pfaas account login` left (`p2pfaas.environment`:
        the anchor from P2PFAAS_ANCHOR, the key from P2PFAAS_KEY or ~/.p2pfaas/lessee.key), paying
        with vouchers of `budget_micro` from the logged-in account when there is one."""
        keys = lessee_keys(default_key(), otherwise="set P2PFAAS_KEY")
        options.setdefault("logbook", LogBook(logs_dir()))  # for `p2pfaas fn logs`
        client = cls(default_anchor(), keys, **options)
        token = saved_token()
        if token is not None:
            try:
                account = AccountClient(client.async_client.anchor_url, token=token)
                client._run(account.__aenter__())
                client._account = account
                client.async_client.wallet = Wallet.of_account(
                    keys, account.voucher, budget_micro=budget_micro
                )
            except BaseException:
                client.close()
                raise
        return client

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the client runs on (for `run_coroutine_threadsafe` of your own coroutines)."""
        return self._loop

    @property
    def async_client(self) -> AsyncClient:
        return self._client

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Deliver what is pending (channel tickets), close the connections, end the loop's thread."""
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._client.__aexit__(None, None, None), self._loop).result()
            if self._account is not None:
                asyncio.run_coroutine_threadsafe(
                    self._account.__aexit__(None, None, None), self._loop
                ).result()
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.spawn(coro).result()

    def spawn(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coro` on the client's loop; its future, at once."""
        if self._closed:
            coro.close()
            raise LocalError("this client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def deploy(self, directory: Path) -> FunctionInfo:
        return self._run(self._client.deploy(directory))

    def invoke(self, name: str, payload: Any = None, *, timeout_s: float | None = None) -> InvokeOutcome:
        return self._run(self._client.invoke(name, payload, timeout_s=timeout_s))

    def submit(
        self, name: str, payload: Any = None, *, timeout_s: float | None = None
    ) -> concurrent.futures.Future[InvokeOutcome]:
        """Start an invocation and return its future at once (thread-safe)."""
        return self.spawn(self._client.invoke(name, payload, timeout_s=timeout_s))

    def nodes(self) -> list[NodeInfo]:
        return self._run(self._client.nodes())
