"""What a node's router counts: calls run here, forwarded, refused, probed, joined, cached, handed
off and pulled (read by the node's status and /metrics)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RouterStats:
    local: int = 0
    forwarded: int = 0  # forwards that a peer accepted
    refused_forwards: int = 0  # forwards a peer refused or that failed
    probes: int = 0
    joined: int = 0  # arrivals of an id already in progress here
    cached: int = 0  # arrivals of an id already done here
    handed_off: int = 0  # queued invocations given to neighbours while draining
    pulled: int = 0  # queued invocations handed to a peer that reported room (accepted there)
    pull_refused: int = 0  # ... that the peer refused after all (they went back to the queue)
    from_siblings: int = 0  # invocations a sibling worker process had no slot for, placed here
