"""A node's cross-process tables, in one shared-memory segment under one lock (issue #4).

A node of N worker processes (one event loop per core, one port shared with SO_REUSEPORT) keeps here
what its workers must agree on (docs/node-workers.md, "Shared state"):

- `InvocationTable`: exactly once per node. An invocation id is claimed by one worker; a retry that
  lands on another worker sees it running there, or gets its stored result, or is refused when
  another lessee's request used the id.
- `SharedSpends`: what every voucher has charged, and what each worker has reserved on it, so that
  the workers together never accept more work on a voucher than its budget (the `SpendStore` of
  `p2pfaas.node.payments`), and a worker that dies takes its reservations with it.
- `LoadBoard`: each worker's load counters, which the primary sums for gossip.

The primary creates the segment (`SharedTables.create`) and hands `tables.handle` to the workers it
starts with `multiprocessing.get_context("spawn").Process(args=(handle, ...))`; each attaches with
`SharedTables.attach`. Every process calls `close()` on exit; the primary then `unlink()`s.

Sans-I/O apart from the segment itself and spilled results: callers pass `now` (time.monotonic() for
invocations, which is one clock for every process on Linux; wall time for vouchers). Not here: what
a worker does with a claim (router), nor waking a worker when another finishes (it polls, or joins
over the workers' links).

    segment.py      the segment's layout: `SharedHandle` (what a worker needs to attach) and entry sizes
    invocations.py  `InvocationTable`: exactly once per node; `ClaimKind` and `Claim`, what a claim found
    spends.py       `SharedSpends`: voucher budgets shared by every worker process
    loads.py        `LoadBoard`: each worker's load counters
    tables.py       `SharedTables`: creating or attaching the segment, and the three tables over it
"""
