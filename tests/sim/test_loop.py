"""`SimLoop` and `run` (`p2pfaas.sim.loop`): registered names resolve, and a failing run names its seed."""

from __future__ import annotations

import asyncio

import pytest

from p2pfaas import sim
from tests.sim.conftest import C


def test_a_failing_run_names_its_seed() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom") as info:
        sim.run(main, seed=4242)
    assert "seed=4242" in "".join(info.value.__notes__)


def test_names_resolve_and_unknown_names_fail() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        loop = asyncio.get_running_loop()
        net.add_host(C, name="anchor.sim")
        infos = await loop.getaddrinfo("anchor.sim", 80, type=1)
        assert [info[4] for info in infos] == [(C, 80)]
        with pytest.raises(OSError):
            await loop.getaddrinfo("nowhere.example", 80)

    sim.run(main, seed=1)
