"""The figures a node's /metrics reads when it is scraped (`p2pfaas.metrics.catalog.NODE_READINGS`),
for the whole node: this process's, plus its worker processes' rows on the load board."""

from __future__ import annotations

import asyncio

from p2pfaas.clock import wall_time
from p2pfaas.node.overlay import Overlay
from p2pfaas.node.payments.node_payments import NodePayments
from p2pfaas.node.router import Router
from p2pfaas.node.service import NodeService
from p2pfaas.node.shared.tables import SharedTables
from p2pfaas.node.workers.process import warm_instances


def node_readings(
    router: Router,
    service: NodeService,
    payments: NodePayments,
    *,
    tables: SharedTables | None,
    overlay: Overlay | None,
    memory_lent_mb: int,
) -> dict[str, float | dict[str, float]]:
    slots, free, queued = router.node_load()
    warm, reserved = warm_instances(service.executor), service.admission.capacity.memory_used_mb
    if tables is not None:
        siblings = tables.loads.totals(exclude=0)
        warm, reserved = warm + siblings.warm, reserved + siblings.memory_mb
    stats, sender = router.stats, payments.sender
    now = asyncio.get_running_loop().time()
    ages = [now - load.received_at for load in router.view.loads(now)]
    figures: dict[str, float | dict[str, float]] = {
        "slots": {"total": slots, "busy": slots - free},
        "queue_length": queued,
        "memory_mb": {"lent": memory_lent_mb, "reserved": reserved},
        "warm_instances": warm,
        "forwards": {"accepted": stats.forwarded, "refused": stats.refused_forwards},
        "pulls": {"accepted": stats.pulled, "refused": stats.pull_refused},
        "gossip_peers": len(ages),
        "gossip_report_age_seconds": max(ages, default=0.0),
        "receipts_pending": len(sender.queue.pending) + len(sender.queue.waiting),
        "receipts_settled": dict(sender.answered),
        "earned_micro": sender.earned_micro,
        "voucher_budget_left_micro": payments.spends.left_micro(now=wall_time()),
    }
    if overlay is not None:
        figures["dht_contacts"] = len(overlay.contacts())
    return figures
