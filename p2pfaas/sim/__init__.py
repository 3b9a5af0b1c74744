"""The simulation seam and test kit: a virtual clock and an in-memory network under the real asyncio code.

The seam is the event loop. Production code reads time only from `loop.time()`, randomness only from an
injected `random.Random`, and opens endpoints only through `loop.create_server`, `loop.create_connection`
(aiohttp's `TCPSite` and `TCPConnector`) and `loop.create_datagram_endpoint` (kademlia/rpcudp). `SimLoop`
answers those calls in memory and moves its clock straight to the next timer, so real aiohttp servers and
clients and the stock kademlia code run unchanged, many nodes to one process, deterministically per seed.

Typical use, in a synchronous test or a scenario runner::

    from p2pfaas import sim

    async def main(net: sim.InMemoryNetwork) -> None:
        a, b = net.add_host("10.0.0.1"), net.add_host("10.0.0.2")
        with net.on_host(a):          # tasks created here run as 10.0.0.1
            ...start a node...
        net.partition([a], [b]); net.crash(b); net.heal()

    sim.run(main, seed=7, options=sim.FaultOptions(datagram_loss=0.05, jitter_s=0.002))

With pytest-asyncio (>= 1.3) a conftest can instead return `{"sim": sim.loop_factory(seed=0)}` from the
`pytest_asyncio_loop_factories` hook and async tests call `sim.network()`; `sim.run` is the simpler route.

Not here: the fast event-heap mode that runs only the sans-I/O cores, and scenarios (see simulations/).
"""

from p2pfaas.sim.clock import START_TIME_S, VirtualClockLoop
from p2pfaas.sim.datagram import SimDatagramTransport
from p2pfaas.sim.faults import ConstantLatency, FaultOptions, LatencyModel, SyntheticLatency
from p2pfaas.sim.loop import SimLoop, loop_factory, network, run
from p2pfaas.sim.net import DEFAULT_HOST, InMemoryNetwork, NetStats, current_host
from p2pfaas.sim.server import SimServer
from p2pfaas.sim.stream import SimStreamTransport

__all__ = [
    "DEFAULT_HOST",
    "START_TIME_S",
    "ConstantLatency",
    "FaultOptions",
    "InMemoryNetwork",
    "LatencyModel",
    "NetStats",
    "SimDatagramTransport",
    "SimLoop",
    "SimServer",
    "SimStreamTransport",
    "SyntheticLatency",
    "VirtualClockLoop",
    "current_host",
    "loop_factory",
    "network",
    "run",
]
