"""Trust in results from untrusted volunteers: replication votes and adaptive spot-checking (sans-I/O).

`vote.py` decides a replicated invocation: which result hash won, who dissented, whether more
replicas are needed. `adaptive.py` keeps a node's record and decides how often a node is checked
(BOINC's adaptive replication). `replica_ids.py` names replicas so the ledger can tell them apart.
The client (`p2pfaas/client/replication.py`) and the anchor (`p2pfaas/anchor/reputation.py`) drive them.
"""
