"""Asynchronous invocations from the client's side: submit, poll, wait (issue #6).

`submit` signs the invocation once and posts it as a `JobSubmit` to an entry node (trying the next
one if a node is gone or busy). `poll` asks that node for the job's state; if the node has gone, the
same signed request (same invocation id) is submitted elsewhere, so the invocation still runs, at
most once per node, and is charged once. A finished job returns the same `InvokeOutcome`, or raises
the same typed errors, as a synchronous `invoke`.

A poll is a `JobPoll` signed with the client's key (the one that signed the request) naming the
node and the time: nodes show a job only to its lessee. `wait` gives up after `timeout_s` (by
default the request's own timeout plus `WAIT_MARGIN_S` for queueing and moves) with TimeoutError;
the job may still finish, and `poll` may be called again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from p2pfaas import rpc, signing
from p2pfaas.client.outcome import InvokeOutcome, decode_outcome
from p2pfaas.clock import wall_time
from p2pfaas.errors import ExecutorError, Refused, Unreachable
from p2pfaas.identity import KeyPair
from p2pfaas.messages import InvokeRequest, InvokeResult, NodeInfo
from p2pfaas.placement.wire import JobPoll, JobStatus, JobSubmit

WAIT_MARGIN_S = 300.0  # beyond the request's timeout: queueing, forwarding, a move to another node


class JobClient(Protocol):
    """What jobs need of the client (`AsyncClient` is one): signing, entry nodes, its session."""

    keys: KeyPair
    request_timeout_s: float

    @property
    def session(self) -> aiohttp.ClientSession: ...

    async def signed_request(self, name: str, payload: Any, timeout_s: float | None) -> InvokeRequest: ...

    async def entry_nodes(
        self, invocation_id: str, node_url: str | None, *, refresh: bool
    ) -> list[NodeInfo]: ...

    def for_node(self, request: InvokeRequest, node: NodeInfo) -> InvokeRequest: ...

    async def executing_node(self, result: InvokeResult, entry: NodeInfo) -> NodeInfo: ...

    def paid_for(self, request: InvokeRequest, result: InvokeResult, node: NodeInfo) -> None: ...


@dataclass
class Job:
    """A submitted invocation: keep it to poll. `node` changes if the job had to move."""

    request: InvokeRequest
    callback_url: str
    node: NodeInfo
    resubmissions: int = 0

    @property
    def invocation_id(self) -> str:
        return self.request.invocation_id


async def submit(
    client: JobClient,
    name: str,
    payload: Any = None,
    *,
    timeout_s: float | None = None,
    callback_url: str = "",
) -> Job:
    request = await client.signed_request(name, payload, timeout_s)
    return await _submit(client, request, callback_url, avoid=set())


async def _submit(client: JobClient, request: InvokeRequest, callback_url: str, avoid: set[str]) -> Job:
    failures: list[str] = []
    for refresh in (False, True):
        for node in await client.entry_nodes(request.invocation_id, None, refresh=refresh):
            if node.node_id in avoid:
                continue
            avoid.add(node.node_id)
            request = client.for_node(request, node)  # a paid job's ticket pays this node
            msg = JobSubmit(request=request, callback_url=callback_url)
            try:
                await rpc.call(
                    client.session,
                    "POST",
                    f"{node.url}/v1/jobs",
                    JobStatus,
                    msg,
                    timeout_s=client.request_timeout_s,
                )
            except (Unreachable, Refused) as exc:
                if isinstance(exc, Refused) and exc.status != 503:
                    raise
                failures.append(str(exc))
                continue
            return Job(request=request, callback_url=callback_url, node=node)
    raise Unreachable(f"no node took job {request.invocation_id}: " + ("; ".join(failures) or "no nodes"))


async def poll(client: JobClient, job: Job) -> InvokeOutcome | None:
    """The outcome if the job has finished, None while it is queued or running."""
    url = f"{job.node.url}/v1/jobs/{job.invocation_id}"
    ask = signing.sign(JobPoll(job.invocation_id, job.node.node_id, wall_time(), b"", b""), client.keys)
    try:
        status = await rpc.call(
            client.session, "POST", url, JobStatus, ask, timeout_s=client.request_timeout_s
        )
    except Unreachable:
        # The node is gone: the same signed request goes elsewhere (exactly once per node).
        moved = await _submit(client, job.request, job.callback_url, avoid={job.node.node_id})
        job.node = moved.node
        job.resubmissions += 1
        return None
    if status.job_state in ("queued", "running"):
        return None
    if status.result is None:
        raise ExecutorError(
            f"job failed before it produced a result: {status.error}",
            invocation_id=job.invocation_id,
            node_id=job.node.node_id,
        )
    executed_by = await client.executing_node(status.result, job.node)
    outcome = decode_outcome(job.request, status.result, executed_by)
    client.paid_for(job.request, status.result, executed_by)
    return outcome


async def wait(
    client: JobClient, job: Job, *, poll_s: float = 0.5, timeout_s: float | None = None
) -> InvokeOutcome:
    """Poll until the job finishes; the outcome, or the typed error of its failure.

    Raises TimeoutError after `timeout_s` (default: the request's timeout plus WAIT_MARGIN_S).
    """
    loop = asyncio.get_running_loop()
    limit = job.request.timeout_s + WAIT_MARGIN_S if timeout_s is None else timeout_s
    deadline = loop.time() + limit
    while True:
        outcome = await poll(client, job)
        if outcome is not None:
            return outcome
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError(
                f"job {job.invocation_id} did not finish within {limit:g} s; poll it again later"
            )
        await asyncio.sleep(min(poll_s, left))
