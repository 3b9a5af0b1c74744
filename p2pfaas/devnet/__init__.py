"""A local network on one machine, for trying p2pfaas and for its demo.

    network.py   `p2pfaas devnet up|demo|down`: an anchor and N node processes
    accounts.py  the devnet's operator and demo lessee, and a wallet paid from the demo grant

A devnet is a trusted local tool: it may run functions unsandboxed when Docker is absent.
"""

from p2pfaas.devnet.network import demo, down, up

__all__ = ["demo", "down", "up"]
