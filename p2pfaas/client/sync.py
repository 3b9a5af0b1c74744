"""A synchronous wrapper around `AsyncClient` for scripts and notebooks.

It runs a private event loop (`asyncio.Runner`) for its lifetime; do not use it from inside a
running event loop (use `AsyncClient` there).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType
from typing import Any

from p2pfaas.client.async_client import AsyncClient
from p2pfaas.client.outcome import InvokeOutcome
from p2pfaas.identity import KeyPair
from p2pfaas.messages import FunctionInfo, NodeInfo


class Client:
    """`with Client(anchor_url, keys) as c: c.deploy(path); c.invoke("hello", {"x": 1})`."""

    def __init__(self, anchor_url: str, keys: KeyPair) -> None:
        self._runner = asyncio.Runner()
        self._client = AsyncClient(anchor_url, keys)
        self._runner.run(self._client.__aenter__())

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._runner.run(self._client.__aexit__(None, None, None))
        finally:
            self._runner.close()

    def deploy(self, directory: Path) -> FunctionInfo:
        return self._runner.run(self._client.deploy(directory))

    def invoke(self, name: str, payload: Any = None, *, timeout_s: float | None = None) -> InvokeOutcome:
        return self._runner.run(self._client.invoke(name, payload, timeout_s=timeout_s))

    def nodes(self) -> list[NodeInfo]:
        return self._runner.run(self._client.nodes())
