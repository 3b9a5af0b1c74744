"""Asynchronous invocations: submit now, poll (or be called back) later.

`Jobs` accepts a `JobSubmit` (the lessee's signed `InvokeRequest` plus an optional callback URL),
answers at once with its state, and runs it through the router like any invocation, so placement,
forwarding and exactly-once per invocation id are the same. Submitting the same invocation id again
returns the existing job rather than a second run. A job moves QUEUED -> RUNNING -> DONE or FAILED
(illegal transitions raise). Finished jobs are kept for `retain_s` and at most `max_finished`, oldest
dropped first; failed ones keep their node-signed result (or the error that stopped them) so they can
be inspected. With a callback URL the signed `InvokeResult` is POSTed there (by
`node.callbacks.CallbackSender`: public addresses only unless the operator allows a range, no
redirects), retried at most `callback_tries` times with backoff when delivery fails, never when the
URL is refused; the job's status says which (`JobStatus.callback`). The callback is best effort,
polling stays authoritative.

Only the lessee who submitted a job may read it: `poll` takes a `JobPoll` signed by the key that
signed the job's request, naming this node and fresh within `POLL_SKEW_S`. Knowing the invocation id
(every node that forwarded or replicated the call does) is not enough; an unknown id and someone
else's job get the same 404, so a poll tells a stranger nothing.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from p2pfaas import signing
from p2pfaas.backoff import Backoff
from p2pfaas.clock import wall_time
from p2pfaas.errors import Busy, NotFound, P2PFaaSError, Refused
from p2pfaas.lifecycle import TaskSet
from p2pfaas.messages import InvokeRequest, InvokeResult
from p2pfaas.node.callbacks import CallbackRefused
from p2pfaas.placement.wire import JobPoll, JobStatus, JobSubmit

log = logging.getLogger(__name__)

Runner = Callable[[InvokeRequest], Awaitable[InvokeResult]]
Callback = Callable[[str, InvokeResult], Awaitable[None]]  # url, result; raises P2PFaaSError on failure

POLL_SKEW_S = 300.0  # a JobPoll's issued_at may be this far from the node's wall clock


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


_ALLOWED = {
    JobState.QUEUED: {JobState.RUNNING, JobState.FAILED},
    JobState.RUNNING: {JobState.DONE, JobState.FAILED},
    JobState.DONE: set(),
    JobState.FAILED: set(),
}


@dataclass
class _Job:
    request: InvokeRequest
    callback_url: str
    state: JobState = JobState.QUEUED
    result: InvokeResult | None = None
    error: str = ""
    finished_at: float = 0.0
    callback_attempts: int = 0
    callback_state: str = ""

    def move(self, to: JobState) -> None:
        if to not in _ALLOWED[self.state]:
            raise AssertionError(f"job {self.request.invocation_id}: {self.state.value} -> {to.value}")
        self.state = to

    def status(self) -> JobStatus:
        return JobStatus(
            invocation_id=self.request.invocation_id,
            job_state=self.state.value,
            result=self.result,
            error=self.error[:4000],
            callback=self.callback_state[:1000],
        )


@dataclass
class Jobs:
    """Driven by the node app's /v1/jobs handlers; runs each job as a task it owns."""

    run: Runner
    callback: Callback | None = None
    retain_s: float = 3600.0
    max_finished: int = 10_000
    max_pending: int = 10_000
    callback_tries: int = 4
    callback_backoff_s: float = 0.5
    node_id: str = ""  # this node's id: the one a JobPoll must name ("" takes any, for tests)
    clock: Callable[[], float] = wall_time  # against which a JobPoll's issued_at is checked
    # Not a cachetools TTLCache: only finished jobs expire or are evicted, never one still running.
    _jobs: OrderedDict[str, _Job] = field(default_factory=OrderedDict)
    _tasks: TaskSet = field(default_factory=TaskSet)

    def submit(self, msg: JobSubmit) -> JobStatus:
        signing.verify(msg.request)  # SignatureError -> 403: never queue what the lessee did not sign
        self._expire()
        job = self._jobs.get(msg.request.invocation_id)
        if job is not None:
            return job.status()
        if self.pending() >= self.max_pending:
            raise Busy(f"{self.pending()} asynchronous invocations pending here")
        job = _Job(msg.request, msg.callback_url, callback_state="pending" if msg.callback_url else "")
        self._jobs[msg.request.invocation_id] = job
        self._tasks.spawn(self._run(job), name=f"job {msg.request.invocation_id}")
        return job.status()

    def poll(self, msg: JobPoll) -> JobStatus:
        """The job's state for the lessee that submitted it; raise NotFound for anyone else.

        A bad signature is a SignatureError (403) and a stale poll or one meant for another node a
        403, both before the job table is read; an unknown id and another lessee's job are the same
        NotFound, so the answer tells a stranger nothing about which ids exist.
        """
        signing.verify(msg)
        if self.node_id and msg.node_id != self.node_id:
            raise Refused("this job poll was signed for another node", status=403)
        if abs(self.clock() - msg.issued_at) > POLL_SKEW_S:
            raise Refused(
                f"this job poll is stale or from the future (over {POLL_SKEW_S:.0f} s off)", status=403
            )
        self._expire()
        job = self._jobs.get(msg.invocation_id)
        if job is None or job.request.signer != msg.signer:
            raise NotFound(
                f"no job {msg.invocation_id[:80]} of yours here (unknown, or its result has expired)"
            )
        return job.status()

    def status(self, invocation_id: str) -> JobStatus:
        """The job's state, for the node itself (no caller check: not for an HTTP route)."""
        self._expire()
        job = self._jobs.get(invocation_id)
        if job is None:
            raise NotFound(f"no job {invocation_id[:80]} here (unknown, or its result has expired)")
        return job.status()

    def pending(self) -> int:
        return sum(1 for j in self._jobs.values() if j.state in (JobState.QUEUED, JobState.RUNNING))

    async def _run(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        job.move(JobState.RUNNING)
        try:
            result = await self.run(job.request)
        except P2PFaaSError as exc:
            job.error = f"{type(exc).__name__}: {exc}"
            job.move(JobState.FAILED)
        else:
            job.result = result
            job.error = "" if result.ok else f"{result.error_type}: {result.error_message}"
            job.move(JobState.DONE if result.ok else JobState.FAILED)
        finally:
            job.finished_at = loop.time()
        if job.callback_url and job.result is not None and self.callback is not None:
            await self._call_back(job, job.result)
        elif job.callback_url:
            job.callback_state = "failed: no result to send" if job.result is None else "failed: no sender"

    async def _call_back(self, job: _Job, result: InvokeResult) -> None:
        assert self.callback is not None
        for attempt in range(self.callback_tries):
            job.callback_attempts += 1
            try:
                await self.callback(job.callback_url, result)
            except CallbackRefused as exc:  # not allowed: asking again would not change that
                job.callback_state = f"refused: {exc}"
                log.info("callback for %s refused: %s", job.request.invocation_id, exc)
                return
            except P2PFaaSError as exc:
                job.callback_state = f"failed: {exc} (try {attempt + 1} of {self.callback_tries})"
                log.info("callback for %s to %s failed: %s", job.request.invocation_id, job.callback_url, exc)
            else:
                job.callback_state = "delivered"
                return
            if attempt + 1 < self.callback_tries:
                await asyncio.sleep(Backoff(self.callback_backoff_s).pause_s(attempt + 1))

    def _expire(self) -> None:
        now = asyncio.get_running_loop().time()
        finished = [(i, j) for i, j in self._jobs.items() if j.state in (JobState.DONE, JobState.FAILED)]
        excess = len(finished) - self.max_finished
        for k, (invocation_id, job) in enumerate(finished):
            if k < excess or now - job.finished_at > self.retain_s:
                del self._jobs[invocation_id]

    async def aclose(self) -> None:
        """Wait for running jobs (draining keeps them); their results stay pollable until then."""
        await self._tasks.wait()
