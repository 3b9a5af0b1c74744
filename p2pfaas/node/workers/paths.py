"""Where a node's worker processes keep their state, and how the primary takes over what they left.

Worker 0 is the primary (the whole daemon, node/daemon.py); workers 1..N-1 (node/workers/) keep their
run directory, bundle cache and receipt journal under `worker_dir`, and their containers carry the
owner label `worker_owner_id`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from p2pfaas.node.payments.receipts import ReceiptJournal

log = logging.getLogger(__name__)

PRIMARY_SOCKET = "primary.sock"
METRICS_DIR = "metrics"  # the worker processes' metrics files (p2pfaas.metrics.files)


def worker_dir(work_dir: Path, index: int) -> Path:
    """Where worker `index` keeps its run directory, bundle cache and receipt journal."""
    return work_dir / f"worker-{index}"


def worker_owner_id(node_id: str, index: int) -> str:
    """The container owner label of worker `index`'s executor (the primary's is the node id)."""
    return node_id if index == 0 else f"w{index}-{node_id}"[:64]


def adopt_worker_journals(work_dir: Path) -> int:
    """Move the receipts the workers of a previous run left unanswered into the primary's journal,
    so that they are sent whatever the number of workers now. Call before the receipt sender starts
    and before any worker does. Returns how many receipts moved."""
    primary = ReceiptJournal(work_dir / "receipts.journal")
    moved = 0
    for path in sorted(work_dir.glob("worker-*/receipts.journal")):
        for receipt in ReceiptJournal(path).load():
            primary.append(receipt)
            moved += 1
        path.unlink()
    if moved:
        log.info("took over %d unanswered receipts from previous worker processes", moved)
    return moved
