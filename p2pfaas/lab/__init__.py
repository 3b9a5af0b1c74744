"""The network lab: real processes on real network stacks, in Linux network namespaces on one machine.

`netns.py` runs `ip` and `iptables` in a namespace; `topology.py` builds and removes a whole lab (an
"internet" bridge, public hosts, home routers doing NAT, hosts behind them) and cuts or heals a host's
link. Every address comes from the TEST-NET ranges, and nothing is added to the machine's own network
namespace, so no lab traffic can leave the machine. It needs root (CAP_NET_ADMIN) and iproute2/iptables.

It knows nothing of nodes or anchors: tests and `p2pfaas lab` start those inside the hosts.
"""

from p2pfaas.lab.topology import Host, Lab, LabError, LabSpec

__all__ = ["Host", "Lab", "LabError", "LabSpec"]
