"""What an invocation returned: a node's signed result checked and turned into a value or a typed error.

Nothing here talks to the network: the client and the job poller both hand their results to
`decode_outcome`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from p2pfaas import signing
from p2pfaas.errors import (
    ExecutorError,
    FunctionFailed,
    InvokeError,
    InvokeTimeout,
    MemoryExceeded,
    SignatureError,
)
from p2pfaas.messages import (
    ERROR_EXECUTOR,
    ERROR_MEMORY,
    ERROR_TIMEOUT,
    InvokeRequest,
    InvokeResult,
    NodeInfo,
)

__all__ = ["InvokeOutcome", "decode_outcome"]


@dataclass(frozen=True)
class InvokeOutcome:
    """A successful invocation: the function's return value and where and how it ran."""

    value: Any
    invocation_id: str
    node_id: str
    node_url: str
    duration_s: float
    cold: bool
    price_micro: int = 0  # what the node's signed receipt charges (0 when unpaid or free)
    entry_node_id: str = ""  # the node the call was sent to: another than node_id when it forwarded
    logs: str = ""  # what the call printed (stdout and stderr), as the node signed it (64 KiB at most)


def decode_outcome(request: InvokeRequest, result: InvokeResult, node: NodeInfo) -> InvokeOutcome:
    """The outcome of `request` from `node`'s signed `result`: its value, or the typed error it reports.

    Raises SignatureError when `result` is not `node`'s answer to `request`.
    """
    if result.signer != node.public_key:
        raise SignatureError(f"node {node.node_id[:12]} answered with another key's signature")
    signing.verify(result)
    if result.invocation_id != request.invocation_id or result.digest != request.digest:
        raise SignatureError(f"node {node.node_id[:12]} answered a different invocation")
    ids = {"invocation_id": request.invocation_id, "node_id": node.node_id}
    if not result.ok:
        error: InvokeError
        if result.error_type == ERROR_TIMEOUT:
            error = InvokeTimeout(result.error_message, **ids)
        elif result.error_type == ERROR_MEMORY:
            error = MemoryExceeded(result.error_message, **ids)
        elif result.error_type == ERROR_EXECUTOR:
            error = ExecutorError(result.error_message, **ids)
        else:
            error = FunctionFailed(
                f"{result.error_type}: {result.error_message}",
                error_type=result.error_type,
                traceback=result.traceback,
                **ids,
            )
        error.logs = result.logs
        raise error
    try:
        value = json.loads(result.output) if result.output else None
    except ValueError:
        raise ExecutorError("the node returned output that is not JSON", **ids) from None
    return InvokeOutcome(
        value=value,
        invocation_id=request.invocation_id,
        node_id=node.node_id,
        node_url=node.url,
        duration_s=result.duration_s,
        cold=result.cold,
        price_micro=result.receipt.price_micro if result.receipt is not None else 0,
        logs=result.logs,
    )
