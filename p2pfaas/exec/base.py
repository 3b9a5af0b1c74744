"""The executor contract shared by the Docker, process and model executors.

An executor runs a function from an already verified, extracted bundle. It does not fetch or
verify bundles (the node does that) and knows nothing of the network.

Error contract for `Executor.invoke`:
- the function raised: returns `ExecResult(ok=False, error_type=..., traceback=...)`;
- it ran past `timeout_s`: raises `InvokeTimeout` (the instance is killed and replaced);
- it exceeded its memory: raises `MemoryExceeded` (likewise);
- the sandbox itself broke (container died, engine gone): raises `ExecutorError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# Every instance's environment: numeric libraries (OpenBLAS, OpenMP, MKL: numpy's and friends') run
# single-threaded. Their thread pools would outlive each call, unmetered, and an instance that runs
# more than its shim after a call is replaced (`warm_pool`): with a pool, every call would be cold.
INSTANCE_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class FunctionSpec:
    """What an executor needs to run one function: taken from a verified manifest."""

    digest: str  # hex SHA-256 of the bundle archive: the function's address
    code_dir: Path  # the extracted bundle; executors must treat it as read-only
    handler: str  # "module:function", relative to code_dir
    memory_mb: int
    timeout_s: float
    cpus: float = 1.0
    concurrency: int = 1  # invocations one instance may serve at once (the manifest allows it)
    deps_dir: Path | None = None  # the unpacked dependency layer (`p2pfaas.node.layers`), read-only
    egress: tuple[str, ...] = ()  # "host:port" it may reach through the node's proxy (`exec/egress.py`)


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one invocation that ran to completion (successfully or not)."""

    ok: bool
    output: bytes = b""  # JSON of the return value when ok
    error_type: str = ""  # the exception's class name when not ok
    error_message: str = ""
    traceback: str = ""
    duration_s: float = 0.0  # time inside the function, as the runtime measured it
    cold: bool = False  # True if this invocation had to start a new instance
    cpu_s: float = 0.0  # CPU time the instance used during the invocation (cgroup or /proc)
    peak_memory_bytes: int = 0  # the instance's peak memory during the invocation
    logs: str = ""  # what the call printed (stdout and stderr), capped by the shim (64 KiB)


class Executor(Protocol):
    """Runs functions. Implementations own their instances and clean them up in `aclose`."""

    kind: str  # short label shown to users, e.g. "docker" or "process (UNSANDBOXED)"
    sandboxed: bool

    async def start(self) -> None:
        """Prepare (e.g. remove orphaned containers of a previous run). Called once before use."""
        ...

    async def invoke(self, fn: FunctionSpec, payload: bytes, *, timeout_s: float) -> ExecResult:
        """Run `fn` on `payload` (JSON bytes). See the module docstring for the error contract."""
        ...

    async def aclose(self) -> None:
        """Stop and remove every instance this executor started."""
        ...
