"""The fast simulator: placement policy cores on an event heap, for hundreds of nodes.

It runs the real `LoadView` and `Policy` cores; what it models instead of running is the rest: each
node is a multi-slot server with a FIFO queue, run times are exponential, a function that has not
run on a node within `keep_alive_s` pays a cold start, every message takes half the RTT between the
two nodes (nodes sit on a plane, RTT grows with distance), and gossip is push-pull every
`gossip_period_s` with `gossip_fanout` neighbours (nearest by RTT plus random DHT-like contacts),
relaying the freshest reports it holds. Reports are not signed here (the node's gossip adapter signs
them); the view is the same code.

Faults: at `fault_at_s`, `kill_fraction` of the nodes crash (their queued and running work is lost
to them; whoever waited on them notices after `detect_s` and places the invocation again, under
the same id; a client whose entry node died retries at another node) and `drain_fraction` drain
(announce it, refuse new work, hand their queue to neighbours, finish what runs, then leave). An
invocation id runs at most once per node (a node that holds it joins the waiter, a node that ran it
answers from its cache) and the ledger model settles each id once: the first receipt pays, later
ones are refused, as the anchor's ledger does.

`JSQOracle` is not a policy a node could run: it sees every node's exact queue and sends the
invocation to the nearest node with a free slot, else to the shortest queue per slot.

Modules: `model` (the configuration, the result, the nodes and their plane), `gossip` (push-pull
exchanges of the real `LoadView`), `simulation` (the event heap: clients, placement rounds, queues,
faults).
"""

from p2pfaas.placement.fastsim.model import JSQOracle, SimConfig, SimResult
from p2pfaas.placement.fastsim.simulation import Simulation, simulate

__all__ = ["JSQOracle", "SimConfig", "SimResult", "Simulation", "simulate"]
