"""The synchronous client (`p2pfaas.client.sync`): its `AsyncClient` on a loop in a thread of its own,
coroutines run there from any thread, closed once, refusing work after. Deploying and invoking against
a real anchor and node: tests/client/test_async_client.py (`test_the_sync_client_deploys_and_invokes`)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from p2pfaas.client.sync import Client
from p2pfaas.errors import LocalError
from p2pfaas.identity import KeyPair

ANCHOR = "http://127.0.0.1:9"  # never called here


async def where() -> tuple[asyncio.AbstractEventLoop, str]:
    return asyncio.get_running_loop(), threading.current_thread().name


def test_coroutines_run_on_the_clients_own_loop_and_thread() -> None:
    with Client(ANCHOR, KeyPair.generate()) as client:
        loop, thread = client.spawn(where()).result(timeout=30)
        assert loop is client.loop and thread == "p2pfaas client"
        assert client.async_client.anchor_url == ANCHOR
        futures = [client.spawn(asyncio.sleep(0, result=n)) for n in range(5)]
        assert [f.result(timeout=30) for f in futures] == list(range(5))
    assert client.loop.is_closed()


def test_a_closed_client_refuses_work_and_closes_once() -> None:
    client = Client(ANCHOR, KeyPair.generate())
    client.close()
    client.close()
    with pytest.raises(LocalError, match="closed"):
        client.spawn(where())


def test_from_the_environment_it_needs_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2PFAAS_HOME", str(tmp_path))
    monkeypatch.delenv("P2PFAAS_KEY", raising=False)
    monkeypatch.delenv("P2PFAAS_TOKEN", raising=False)
    with pytest.raises(LocalError, match="p2pfaas keys new"):
        Client.from_environment()
    keys = KeyPair.generate()
    keys.save(tmp_path / "lessee.key")
    monkeypatch.setenv("P2PFAAS_ANCHOR", ANCHOR)
    with Client.from_environment() as client:
        assert client.async_client.keys.key_id == keys.key_id and client.async_client.wallet is None
