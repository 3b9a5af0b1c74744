"""Fixtures of the node tests: an anchor on SQLite and a lessee's client of it."""

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
