"""`SpendLog`: what this node charged each voucher, appended to a file, so that a restarted node does
not accept a spent budget again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from p2pfaas.node.payments.spends import FORGET_AFTER_S

log = logging.getLogger(__name__)


class SpendLog:
    """What this node charged to each voucher, on disk, so a restarted node does not accept again
    the budget it already used. One JSON line per charge; `load` sums them, drops vouchers long
    expired, and rewrites the file compacted.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, voucher_id: str, *, budget_micro: int, expires_at: float, charge_micro: int) -> None:
        """Add one charge. Safe from several processes at once: one O_APPEND write() of a whole line."""
        line = json.dumps({"v": voucher_id, "b": budget_micro, "e": expires_at, "c": charge_micro}) + "\n"
        data = line.encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):  # a full disk; `load` skips the torn line
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")

    def load(self, *, now: float) -> dict[str, tuple[int, float, int]]:
        """voucher id -> (budget, expiry, charged in total), for vouchers that still matter."""
        spent: dict[str, tuple[int, float, int]] = {}
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return spent
        for line in lines:
            try:
                entry = json.loads(line)
                voucher_id, budget, expires_at, charge = (
                    str(entry["v"]),
                    int(entry["b"]),
                    float(entry["e"]),
                    int(entry["c"]),
                )
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line after a crash
            if expires_at + FORGET_AFTER_S < now:
                continue
            _, _, before = spent.get(voucher_id, (budget, expires_at, 0))
            spent[voucher_id] = (budget, expires_at, before + charge)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(
            "".join(json.dumps({"v": v, "b": b, "e": e, "c": c}) + "\n" for v, (b, e, c) in spent.items())
        )
        temporary.replace(self.path)
        return spent
