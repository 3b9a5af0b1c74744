"""`Fabric`: what an endpoint on the simulated network may ask of the network, and nothing more.

The endpoints (`stream`, `datagram`, `server`) sit below `net`: they are handed an object with this shape
and never import the network, so the network can be read and changed without them reaching back into
its internals. `InMemoryNetwork` is the one implementation; a test may pass anything with this shape.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from p2pfaas.sim.faults import FaultOptions

__all__ = ["Address", "Bound", "Fabric", "Listening", "Parked"]

Address = tuple[str, int]


class Parked(Protocol):
    """One direction of a stream held while its link is cut; the network resumes it on heal."""

    @property
    def src(self) -> Address: ...
    @property
    def dst(self) -> Address: ...
    def unpark(self) -> None: ...


class Listening(Protocol):
    """A listening endpoint, as the network releases it."""

    @property
    def addresses(self) -> list[Address]: ...


class Bound(Protocol):
    """A datagram endpoint, as the network releases it."""

    @property
    def local(self) -> Address: ...


class Fabric(Protocol):
    """Links between hosts: the loop they run on, their state, delays, the trace, and datagram delivery."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def options(self) -> FaultOptions: ...

    def is_up(self, host: str) -> bool: ...
    def is_blocked(self, src_host: str, dst_host: str) -> bool: ...
    def park(self, pipe: Parked) -> None:
        """Hold `pipe` until its link heals."""

    def delay_s(self, src_host: str, dst_host: str) -> float:
        """One-way delay of one packet."""

    def record(self, kind: str, src: Address, dst: Address, size: int) -> None:
        """Add a delivery to the trace."""

    def unlisten(self, server: Listening) -> None:
        """Forget a closed listener and release its ports."""

    def send_datagram(self, src: Address, dst: Address, data: bytes) -> None: ...
    def unbind_datagram(self, endpoint: Bound) -> None:
        """Forget a closed datagram endpoint and release its port."""
