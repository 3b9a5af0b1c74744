"""Execution: running verified function bundles.

`base` defines the `Executor` contract; `docker_exec` runs functions in hardened warm containers
(the production path); `process_exec` runs them as local processes with NO sandbox (devnet only,
loudly labelled); `model_exec` models run time on the loop's clock for the simulator.
"""
