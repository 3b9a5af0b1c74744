"""`ChannelStore`: the latest channel ticket of each voucher this node served, on disk.

Lessees hand a node a new cumulative `ChannelTicket` after each result (`POST /v1/channels`,
`p2pfaas.channels`); the node keeps only the one with the highest total per voucher, sends it with
its receipts (`ReceiptSender`), and refuses further paid work of a voucher whose channel is too far
behind what it charged (`VoucherBook`). Every worker process of a node must see the same tickets
(a ticket may reach one process, the receipts and the next call another), so they live in files
in the node's work directory, one per voucher, replaced atomically under a lock file; reads go
through a cache of `CACHE_S`.

`offer` checks everything a ticket needs to be worth keeping: its voucher is signed by the
anchor's key and was served here, the ticket is for this node and signed by that voucher's
lessee. So nobody but the lessee can change what the node holds, and only for vouchers it served
(the disk use is bounded by them; files of long-expired vouchers are deleted on open).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from p2pfaas import codec, signing
from p2pfaas.channels import channel_problem
from p2pfaas.errors import DecodeError, SignatureError
from p2pfaas.messages import ChannelTicket, Voucher
from p2pfaas.rpc import Forbidden

__all__ = ["ChannelStore"]

log = logging.getLogger(__name__)

CACHE_S = 0.5  # how stale a process's view of another process's ticket may be
FORGET_AFTER_S = 3 * 86400.0  # ticket files untouched this long are deleted on open


class ChannelStore:
    """The node's latest channel ticket per voucher. Safe across the node's worker processes."""

    def __init__(self, directory: Path, *, node_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.node_id = node_id
        self.clock = clock
        self._cache: dict[str, tuple[ChannelTicket | None, float]] = {}
        directory.mkdir(parents=True, exist_ok=True)
        self._forget_old()

    def offer(self, ticket: ChannelTicket, voucher: Voucher, *, anchor_key: bytes, served: bool) -> bool:
        """Keep `ticket` if it is valid and beats the one held; True when it was kept. Raises
        Forbidden for a ticket or voucher that is not what it claims."""
        if voucher.voucher_id != ticket.voucher_id:
            raise Forbidden("a channel ticket came with another voucher than its own")
        if voucher.signer != anchor_key:
            raise Forbidden("the voucher is not signed by this network's anchor")
        try:
            signing.verify(voucher)
        except SignatureError:
            raise Forbidden("the voucher's signature does not verify") from None
        problem = channel_problem(ticket, node_id=self.node_id, lessee_key=voucher.lessee_key)
        if problem is not None:
            raise Forbidden(f"the channel ticket {problem}")
        if not served:
            return False  # nothing is owed here on that voucher: nothing to keep
        with self._locked():
            held = self._read(ticket.voucher_id)
            if held is not None and held.total_micro >= ticket.total_micro:
                return False
            path = self._path(ticket.voucher_id)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(codec.encode(ticket))
            os.replace(tmp, path)
        self._cache[ticket.voucher_id] = (ticket, self.clock())
        return True

    def latest(self, voucher_id: str) -> ChannelTicket | None:
        cached = self._cache.get(voucher_id)
        now = self.clock()
        if cached is not None and now - cached[1] < CACHE_S:
            return cached[0]
        ticket = self._read(voucher_id)
        self._cache[voucher_id] = (ticket, now)
        if len(self._cache) > 65_536:
            self._cache.clear()
        return ticket

    def signed_micro(self, voucher_id: str) -> int:
        """What the lessee has signed so far on this node's channel of `voucher_id`."""
        ticket = self.latest(voucher_id)
        return 0 if ticket is None else ticket.total_micro

    def tickets(self, voucher_ids: Sequence[str]) -> list[ChannelTicket]:
        """The latest ticket of each of `voucher_ids` that has one (what a receipt batch carries)."""
        found = (self.latest(voucher_id) for voucher_id in voucher_ids)
        return [ticket for ticket in found if ticket is not None]

    def _path(self, voucher_id: str) -> Path:
        return self.directory / f"{hashlib.sha256(voucher_id.encode()).hexdigest()[:40]}.ticket"

    def _read(self, voucher_id: str) -> ChannelTicket | None:
        try:
            data = self._path(voucher_id).read_bytes()
        except FileNotFoundError:
            return None
        try:
            ticket = codec.decode_as(ChannelTicket, data)
        except DecodeError:
            log.error("ignoring a damaged channel ticket file for voucher %s", voucher_id)
            return None
        return ticket if ticket.voucher_id == voucher_id else None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _forget_old(self) -> None:
        cutoff = time.time() - FORGET_AFTER_S
        for path in self.directory.glob("*.ticket"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
