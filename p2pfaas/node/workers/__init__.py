"""One node, several worker processes on one port: one event loop per core (issue #4).

A warm invocation costs the node about half a millisecond of CPU (HTTP, Ed25519, the shim round
trip), all of it on one event loop, so a one-process node serves one core's worth however many cores
it lends. `p2pfaas node run --workers N` runs N processes that accept on the same TCP port
(`SO_REUSEPORT`: the kernel spreads connections between them):

- The **primary** (worker 0) is the whole daemon: DHT, gossip, anchor announcements, drain, jobs,
  bundle serving, and the orphan sweep of every worker's containers. It starts the others
  (`WorkerPool`), restarts one that dies, and serves its siblings on a unix socket in the work
  directory (node/app.py `make_internal_app`).
- A **worker** (1..N-1, `WorkerNode`) serves /v1/invoke with its own service, router, warm pool and
  executor, signing with the node key itself: no call to the primary per invocation. Every other
  request it passes to the primary unchanged, and an invocation it has no slot for is handed to the
  primary's router, which places it with the node's view (its slots, its queue, or a peer).

What must hold node-wide is shared, not asked for:
- exactly once per invocation id, and voucher budgets: tables in shared memory (node/shared/);
- what is lent: slots, memory, queue and bundle cache are split between the processes
  (settings.share); the cores are one parent cgroup over every worker's containers (docker_exec);
- load, for gossip: each worker writes its counters to the shared load board and the primary
  reports the sum.
A worker keeps its own receipt journal (worker-K/ in the work directory), which the primary takes
over when it next starts, and appends to the node's one voucher spend log.

Costs: up to N warm instances of a hot function instead of one, each worker's keep-alive policy
seeing its share of the arrivals, and a function must fit in memory/N. The design and its measured
effect are in docs/node-workers.md and docs/benchmarks.md.

    pool.py     the primary's side: `WorkerPool` starts the workers, restarts one that dies, sums their load
    process.py  a worker process: `WorkerNode` (its service, router, executor) and `run_worker`
    paths.py    where each worker keeps its state; the primary's takeover of their receipt journals
"""
