"""Execution: running verified function bundles.

`base` defines the `Executor` contract; `docker_exec` runs functions in hardened warm containers
(the production path); `process_exec` runs them as local processes with NO sandbox (devnet only,
loudly labelled); `model_exec` models run time on the loop's clock for the simulator.

Both real executors are a `pooled.PooledExecutor` over a `warm_pool.WarmPool` of `instance`s: the
pool runs each invocation over the instance's `slots` (connections, metering) and has a `reaper`
expire and pre-warm instances as the sans-I/O `pool_policy` (with `keepalive` and `forecast`)
decides. `runtime/` is the shim that runs next to the function, `runtime_image` its image.
"""
