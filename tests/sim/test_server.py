"""`SimServer` (`p2pfaas.sim.server`): port 0 gets a free port, and a port in use is refused."""

from __future__ import annotations

import pytest

from p2pfaas import sim
from tests.sim.conftest import A, listen


def test_ports_zero_and_in_use() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        first, _ = await listen(net, A, 0)
        port = first.sockets[0].getsockname()[1]
        assert port >= 32768
        with pytest.raises(OSError, match="in use"):
            await listen(net, A, port)
        first.close()
        again, _ = await listen(net, A, port)  # released on close
        again.close()

    sim.run(main, seed=1)
