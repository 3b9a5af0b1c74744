"""Placement and load gossip (issue #6): sans-I/O cores.

`view` keeps what gossip says about neighbours' load and ages it out; `policy` turns that view into a
decision (run here, probe, or forward); `wire` holds the signed messages nodes exchange; `fastsim`
runs the policy cores for hundreds of nodes on an event heap. The asyncio adapters live in
`p2pfaas/node/{router,gossip,jobs}.py`.
"""
