"""Fixtures of the node tests: an anchor on SQLite, a lessee's client of it, and the executor a node
runs its functions on (each test that asks runs on both)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.identity import KeyPair


@pytest.fixture
async def anchor(tmp_path: Path) -> AsyncIterator[AnchorServer]:
    async with AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}", port=0) as server:
        yield server


@pytest.fixture
async def client(anchor: AnchorServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(anchor.url, KeyPair.generate()) as lessee:
        yield lessee


@pytest.fixture(params=["docker", "process"])
def executor_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("runtime_image")  # skips (or fails in CI) without an engine
    return str(request.param)
