"""Lending on the volunteer's terms: when the node takes work, and pausing it without losing any.

Sans-I/O rules, fed the time and the load by their caller:
- `Schedule`: weekly lending hours, e.g. `["mon-fri 18:00-08:00", "sat-sun 00:00-24:00"]` (local
  time; a span past midnight runs into the next day). No hours: always.
- `ActivityGate`: the owner is using the machine when the host's load (the 1-minute load average
  per core, less what the node's own work adds) stays above `busy_load` for `busy_for_s`; lending
  resumes once it has stayed below for `quiet_for_s`.
- `LendingChange` (wire tag 108): `p2pfaas node pause|resume`, signed with the node's own key and
  fresh within 120 s, posted to `POST /v1/lending`.

`Lending` is the node's state: paused by the owner (the command), outside its hours, or busy
with its owner; any of them pauses. Pausing uses the drain path without stopping: new work is
refused (503 naming a peer) or forwarded, queued work is handed to neighbours, running calls
finish, and the node's gossip and DHT advert say it is away (`draining`). Resuming takes work again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from aiohttp import web

from p2pfaas import signing
from p2pfaas.clock import wall_time
from p2pfaas.codec import MaxLen, Message, message
from p2pfaas.errors import ConfigError, P2PFaaSError, Refused
from p2pfaas.identity import KeyPair
from p2pfaas.lifecycle import TaskSet
from p2pfaas.messages import Ack, PublicKeyBytes, SignatureBytes
from p2pfaas.rpc import Forbidden, read_message, reply

if TYPE_CHECKING:
    from p2pfaas.node.placement import NodePlacement

__all__ = ["ActivityGate", "Lending", "LendingChange", "LendingControl", "Schedule", "lending_change"]

log = logging.getLogger(__name__)

LENDING_CHANGE_MAX_AGE_S = 120.0
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^\s*(\w{3})(?:-(\w{3}))?\s+(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})\s*$")


@message(108)
@dataclass(frozen=True)
class LendingChange(Message):
    """`node pause|resume`: signed with the node's own key (only its operator holds it)."""

    paused: bool
    reason: Annotated[str, MaxLen(200)]
    issued_at: float  # the operator's wall clock: stale ones are refused (replays)
    signer: PublicKeyBytes
    signature: SignatureBytes


@dataclass(frozen=True)
class Schedule:
    """Weekly lending hours as (weekday, start minute, end minute) windows; none: always lending."""

    windows: tuple[tuple[int, int, int], ...] = ()

    @classmethod
    def parse(cls, spans: tuple[str, ...] | list[str]) -> Schedule:
        windows: list[tuple[int, int, int]] = []
        for span in spans:
            match = _SPAN.match(span.lower())
            if match is None:
                raise ConfigError(f"lend_hours: {span!r} is not like 'mon-fri 18:00-08:00'")
            first, last, h1, m1, h2, m2 = match.groups()
            if first not in _DAYS or (last is not None and last not in _DAYS):
                raise ConfigError(f"lend_hours: {span!r}: days are {', '.join(_DAYS)}")
            start, end = int(h1) * 60 + int(m1), int(h2) * 60 + int(m2)
            if not (0 <= start < 24 * 60 and 0 < end <= 24 * 60 and int(m1) < 60 and int(m2) < 60):
                raise ConfigError(f"lend_hours: {span!r}: times run from 00:00 to 24:00")
            a = _DAYS.index(first)
            b = a if last is None else _DAYS.index(last)
            days = [d % 7 for d in range(a, a + (b - a) % 7 + 1)]
            for day in days:
                if end > start:
                    windows.append((day, start, end))
                else:  # past midnight: the rest of this day, then the next morning
                    windows.append((day, start, 24 * 60))
                    windows.append(((day + 1) % 7, 0, end))
        return cls(tuple(windows))

    def lending_at(self, moment: datetime.datetime) -> bool:
        if not self.windows:
            return True
        day, minute = moment.weekday(), moment.hour * 60 + moment.minute
        return any(d == day and start <= minute < end for d, start, end in self.windows)


@dataclass
class ActivityGate:
    """Whether the owner is using the machine, from the host's load over time (hysteresis)."""

    busy_load: float = 0.0  # load per core above which the owner counts as busy; 0: never paused
    busy_for_s: float = 60.0
    quiet_for_s: float = 300.0
    busy: bool = False
    _since: float | None = None  # when the load last crossed to the other side

    def update(self, load_per_core: float, now: float) -> bool:
        """Feed the owner's share of the load at `now`; returns whether the owner is busy."""
        if self.busy_load <= 0:
            return False
        other_side = load_per_core <= self.busy_load if self.busy else load_per_core > self.busy_load
        if not other_side:
            self._since = None
            return self.busy
        if self._since is None:
            self._since = now
        if now - self._since >= (self.quiet_for_s if self.busy else self.busy_for_s):
            self.busy, self._since = not self.busy, None
        return self.busy


@dataclass
class Lending:
    """Why the node is paused now, if it is: its owner's command, its hours, or its owner's use."""

    schedule: Schedule = field(default_factory=Schedule)
    gate: ActivityGate = field(default_factory=ActivityGate)
    by_owner: str = ""  # the reason given with `node pause`; "" while not paused by command
    outside_hours: bool = False
    owner_busy: bool = False

    def reason(self) -> str:
        """Why the node does not lend now ("" when it lends)."""
        if self.by_owner:
            return f"paused by its owner: {self.by_owner}"
        if self.outside_hours:
            return "outside its lending hours"
        if self.owner_busy:
            return "its owner is using the machine"
        return ""

    def tick(self, *, local_time: datetime.datetime, load_per_core: float, now: float) -> str:
        """Re-check hours and activity; returns `reason()`."""
        self.outside_hours = not self.schedule.lending_at(local_time)
        self.owner_busy = self.gate.update(load_per_core, now)
        return self.reason()


class LendingControl:
    """Applies `Lending` to a running node: pauses it through the drain path (without stopping) and
    resumes it; serves `POST /v1/lending`; re-checks hours and activity every `tick_s`."""

    def __init__(
        self,
        placement: NodePlacement,
        lending: Lending,
        keys: KeyPair,
        *,
        drain_deadline_s: float,
        cpus: float,
        tick_s: float = 15.0,
    ) -> None:
        self.placement, self.lending, self.keys = placement, lending, keys
        self.drain_deadline_s, self.cpus, self.tick_s = drain_deadline_s, cpus, tick_s
        self.paused = False
        self._tasks = TaskSet()
        self._load: Callable[[], Any] | None = None  # the overlay's advert load from before the pause

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/lending", self._http_change)]

    async def run(self, stop: asyncio.Event) -> None:
        """Re-check the schedule and the owner's activity until `stop` is set."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self.lending.tick(
                local_time=datetime.datetime.now(), load_per_core=self._owner_load(), now=loop.time()
            )
            try:
                await self.apply()
            except P2PFaaSError as error:  # never the node's end: it keeps lending as it was
                log.warning("could not change lending: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick_s)
        await self._tasks.cancel()

    async def apply(self) -> None:
        """Pause or resume to match `lending.reason()`."""
        reason = self.lending.reason()
        router = self.placement.router
        if reason and not self.paused:
            if router.siblings is not None:
                raise Refused("pausing a node of several worker processes is not supported yet", status=409)
            log.info("node %s pauses: %s", self.keys.key_id[:12], reason)
            self.paused = True
            router.paused = reason
            overlay = self.placement.overlay()
            self._load = getattr(overlay, "load", None) if overlay is not None else None
            # The drain path, without the stop at its end: refuse and hand on new work, hand the
            # queue to neighbours, let running calls finish, say so in gossip and the DHT advert.
            self._tasks.spawn(
                router.drain(deadline_s=self.drain_deadline_s, announce=self.placement.announce_draining),
                name="pause",
            )
        elif reason and self.paused:
            router.paused = reason  # a second reason while paused: what it says now
        elif not reason and self.paused:
            log.info("node %s lends again", self.keys.key_id[:12])
            await self._tasks.cancel()
            self.paused = False
            router.draining, router.paused = False, ""
            overlay = self.placement.overlay()
            if overlay is not None and self._load is not None:
                overlay.load = self._load
                with contextlib.suppress(P2PFaaSError, OSError, TimeoutError):
                    await asyncio.wait_for(overlay.publish_advert(), 10.0)
            await self.placement.gossiper.announce()

    def _owner_load(self) -> float:
        """The host's 1-minute load per core, less what this node's own running calls add."""
        cores = os.cpu_count() or 1
        router = self.placement.router
        own = min(float(router.capacity - router.free_slots()), self.cpus)
        return max(0.0, os.getloadavg()[0] - own) / cores

    async def _http_change(self, request: web.Request) -> web.Response:
        msg = await read_message(request, LendingChange)
        if signing.verify(msg).key_id != self.keys.key_id:
            raise Forbidden("only this node's own key may pause or resume it")
        if abs(wall_time() - msg.issued_at) > LENDING_CHANGE_MAX_AGE_S:
            raise Forbidden("the request is stale (or the clocks disagree by minutes)")
        self.lending.by_owner = (msg.reason or "paused") if msg.paused else ""
        await self.apply()
        return reply(Ack(self.lending.reason() or "lending"))


def lending_change(keys: KeyPair, *, paused: bool, reason: str = "") -> LendingChange:
    return signing.sign(LendingChange(paused, reason[:200], wall_time(), signer=b"", signature=b""), keys)
