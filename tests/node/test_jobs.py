"""Asynchronous invocations: submit and poll, callbacks, failed jobs kept for inspection, bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from p2pfaas import codec, rpc, signing, sim
from p2pfaas.client import AsyncClient
from p2pfaas.clock import wall_time
from p2pfaas.errors import Busy, InvokeTimeout, NotFound, Refused
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Ack, InvokeRequest, InvokeResult, NodeInfo
from p2pfaas.node.jobs import Jobs
from p2pfaas.placement.wire import JobPoll, JobStatus, JobSubmit
from tests.placement.harness import placement_net


async def poll_as(
    client: AsyncClient,
    node: NodeInfo,
    invocation_id: str,
    keys: KeyPair,
    *,
    node_id: str = "",
    at: float = 0.0,
) -> JobStatus:
    """POST a JobPoll for `invocation_id` signed by `keys` to `node` (naming `node_id`, else the node)."""
    poll = JobPoll(invocation_id, node_id or node.node_id, at or wall_time(), b"", b"")
    url = f"{node.url}/v1/jobs/{invocation_id}"
    return await rpc.call(client.session, "POST", url, JobStatus, signing.sign(poll, keys), timeout_s=5)


async def finished_callback(client: AsyncClient, node: NodeInfo, invocation_id: str) -> JobStatus:
    """The job's status once its callback is no longer pending (virtual time: no wall-clock wait)."""
    for _ in range(300):
        status = await poll_as(client, node, invocation_id, client.keys)
        if status.callback != "pending":
            return status
        await asyncio.sleep(0.2)
    raise AssertionError(f"the callback of {invocation_id} stayed pending")


def test_submit_poll_and_wait_return_the_result_and_a_resubmission_is_the_same_job(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=21, nodes=3, mean_run_s=0.5) as pn:
            job = await pn.client.submit("echo", {"n": 1})
            assert await pn.client.poll(job) is None  # still running
            outcome = await pn.client.wait(job, poll_s=0.2)
            assert outcome.value == {"echo": {"n": 1}} and outcome.invocation_id == job.invocation_id
            # Submitting the same signed request again is the same job, not a second run.
            status = await rpc.call(
                pn.client.session,
                "POST",
                f"{job.node.url}/v1/jobs",
                JobStatus,
                JobSubmit(request=job.request, callback_url=""),
                timeout_s=5,
            )
            assert status.job_state == "done" and status.result is not None
            assert pn.executions() == 1

    sim.run(main, seed=21)


def test_a_failed_job_stays_inspectable_and_raises_the_typed_error(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=22, nodes=2) as pn:
            job = await pn.client.submit("echo", 1, timeout_s=0.01)  # shorter than the modelled run
            with pytest.raises(InvokeTimeout):
                await pn.client.wait(job, poll_s=0.2)
            status = await poll_as(pn.client, job.node, job.invocation_id, pn.client.keys)
            assert status.job_state == "failed" and status.result is not None and not status.result.ok
            assert "timeout" in status.error
            with pytest.raises(NotFound):
                await poll_as(pn.client, job.node, "nope", pn.client.keys)

    sim.run(main, seed=22)


def test_the_callback_url_receives_the_signed_result(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        # The hook is on a private address: the nodes' operator allows that range.
        async with placement_net(net, tmp_path, seed=23, nodes=2, callback_allow=("10.0.3.0/24",)) as pn:
            got: asyncio.Queue[InvokeResult] = asyncio.Queue()

            async def callback(request: web.Request) -> web.Response:
                got.put_nowait(codec.decode_as(InvokeResult, await request.read()))
                return rpc.reply(Ack())

            app = web.Application()
            app.add_routes([web.post("/done", callback)])
            runner = web.AppRunner(app)
            await runner.setup()
            hook_ip = net.add_host("10.0.3.1")
            with net.on_host(hook_ip):
                await web.TCPSite(runner, hook_ip, 9000).start()
            try:
                job = await pn.client.submit("echo", "cb", callback_url=f"http://{hook_ip}:9000/done")
                result = await asyncio.wait_for(got.get(), 30)
                assert result.invocation_id == job.invocation_id and result.ok
                signing.verify(result)
                assert result.signer in {n.keys.public.raw for n in pn.nodes}
                status = await finished_callback(pn.client, job.node, job.invocation_id)
                assert status.callback == "delivered"
            finally:
                await runner.cleanup()

    sim.run(main, seed=23)


def _request(keys: KeyPair, i: int) -> InvokeRequest:
    unsigned = InvokeRequest(f"id{i}", "a" * 64, b"1", 5.0, None, b"", b"")
    return signing.sign(unsigned, keys)


async def test_finished_jobs_are_kept_within_their_bound_and_refused_when_too_many_pend() -> None:
    keys, node = KeyPair.generate(), KeyPair.generate()
    release = asyncio.Event()

    async def run(request: InvokeRequest) -> InvokeResult:
        await release.wait()
        return signing.sign(
            InvokeResult(
                request.invocation_id, request.digest, True, b"1", "", "", "", 0.1, False, None, b"", b""
            ),
            node,
        )

    jobs = Jobs(run=run, max_finished=2, max_pending=3)
    for i in range(3):
        assert jobs.submit(JobSubmit(_request(keys, i), "")).job_state in ("queued", "running")
    with pytest.raises(Busy):
        jobs.submit(JobSubmit(_request(keys, 3), ""))
    release.set()
    await jobs.aclose()
    assert jobs.status("id2").job_state == "done"
    with pytest.raises(NotFound):
        jobs.status("id0")  # the oldest finished job made room


# --- hole 11: a job's state is its lessee's alone ------------------------------------------------


def test_only_the_submitting_lessee_reads_a_job(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=25, nodes=2) as pn:
            job = await pn.client.submit("echo", "mine")
            outcome = await pn.client.wait(job, poll_s=0.2)  # the owner's client signs its polls
            assert outcome.value == {"echo": "mine"}
            url = f"{job.node.url}/v1/jobs/{job.invocation_id}"
            with pytest.raises(Refused) as unsigned:  # what used to hand out the signed result
                await rpc.call(pn.client.session, "GET", url, JobStatus, timeout_s=5)
            assert unsigned.value.status == 403
            stranger = KeyPair.generate()
            with pytest.raises(NotFound) as theirs:  # a stranger who knows the id: as if unknown
                await poll_as(pn.client, job.node, job.invocation_id, stranger)
            with pytest.raises(NotFound) as unknown:
                await poll_as(pn.client, job.node, "f" * 32, stranger)
            assert str(theirs.value).replace(job.invocation_id, "ID") == str(unknown.value).replace(
                "f" * 32, "ID"
            )
            keys = pn.client.keys
            other_node = next(n for n in pn.nodes if n.keys.key_id != job.node.node_id).keys.key_id
            for bad in (dict(node_id=other_node), dict(at=wall_time() - 3600), dict(at=wall_time() + 3600)):
                with pytest.raises(Refused) as refused:  # replayed elsewhere, stale, from the future
                    await poll_as(pn.client, job.node, job.invocation_id, keys, **bad)
                assert refused.value.status == 403, bad
            forged = signing.sign(
                JobPoll(job.invocation_id, job.node.node_id, wall_time(), b"", b""), stranger
            )
            forged = JobPoll(
                forged.invocation_id, forged.node_id, forged.issued_at, keys.public.raw, forged.signature
            )
            with pytest.raises(Refused) as refused:  # the owner's key named, a stranger's signature
                await rpc.call(pn.client.session, "POST", url, JobStatus, forged, timeout_s=5)
            assert refused.value.status == 403
            mine = await poll_as(pn.client, job.node, job.invocation_id, keys)
            assert mine.job_state == "done" and mine.result is not None and mine.result.ok

    sim.run(main, seed=25)


async def test_jobs_poll_checks_signer_node_and_freshness() -> None:
    keys, node, stranger = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    now = [1_000.0]

    async def run(request: InvokeRequest) -> InvokeResult:
        return signing.sign(
            InvokeResult(
                request.invocation_id, request.digest, True, b"1", "", "", "", 0.1, False, None, b"", b""
            ),
            node,
        )

    jobs = Jobs(run=run, node_id=node.key_id, clock=lambda: now[0])
    jobs.submit(JobSubmit(_request(keys, 0), ""))
    await jobs.aclose()

    def ask(by: KeyPair, *, at: float = 1_000.0, node_id: str = node.key_id, job: str = "id0") -> JobPoll:
        return signing.sign(JobPoll(job, node_id, at, b"", b""), by)

    assert jobs.poll(ask(keys)).job_state == "done"
    assert jobs.poll(ask(keys, at=1_000.0 + 299)).job_state == "done"  # within the skew
    for refused in (ask(keys, at=1_000.0 - 301), ask(keys, node_id=stranger.key_id)):
        with pytest.raises(Refused):
            jobs.poll(refused)
    for not_found in (ask(stranger), ask(keys, job="id9")):
        with pytest.raises(NotFound):
            jobs.poll(not_found)


# --- hole 8: callbacks go only where the node's operator lets them -------------------------------


def test_a_callback_to_a_private_address_is_refused_by_default_and_nothing_reaches_it(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=27, nodes=2) as pn:  # no callback_allow
            hits: list[str] = []

            async def callback(request: web.Request) -> web.Response:
                hits.append(request.path)
                return rpc.reply(Ack())

            app = web.Application()
            app.add_routes([web.post("/done", callback)])
            runner = web.AppRunner(app)
            await runner.setup()
            hook_ip = net.add_host("10.0.3.1")  # the volunteer's LAN, as far as the node can tell
            with net.on_host(hook_ip):
                await web.TCPSite(runner, hook_ip, 9000).start()
            try:
                job = await pn.client.submit("echo", "cb", callback_url=f"http://{hook_ip}:9000/done")
                assert (await pn.client.wait(job, poll_s=0.2)).value == {"echo": "cb"}  # polling still works
                status = await finished_callback(pn.client, job.node, job.invocation_id)
                assert status.callback.startswith("refused: 10.0.3.1 is a private address"), status.callback
                assert hits == []
            finally:
                await runner.cleanup()

    sim.run(main, seed=27)


async def test_a_refused_callback_is_not_retried_and_a_failing_one_is_retried_a_bounded_number_of_times() -> (
    None
):
    from p2pfaas.node.callbacks import CallbackFailed, CallbackRefused

    keys, node = KeyPair.generate(), KeyPair.generate()
    calls: list[str] = []

    async def run(request: InvokeRequest) -> InvokeResult:
        return signing.sign(
            InvokeResult(
                request.invocation_id, request.digest, True, b"1", "", "", "", 0.1, False, None, b"", b""
            ),
            node,
        )

    async def callback(url: str, result: InvokeResult) -> None:
        calls.append(url)
        if "refused" in url:
            raise CallbackRefused("127.0.0.1 is a loopback address")
        raise CallbackFailed("HTTP 500")

    jobs = Jobs(run=run, callback=callback, callback_tries=3, callback_backoff_s=0.0)
    jobs.submit(JobSubmit(_request(keys, 0), "http://refused.example/"))
    jobs.submit(JobSubmit(_request(keys, 1), "http://failing.example/"))
    await jobs.aclose()
    assert calls.count("http://refused.example/") == 1
    assert calls.count("http://failing.example/") == 3
    assert jobs.status("id0").callback == "refused: 127.0.0.1 is a loopback address"
    assert jobs.status("id1").callback.startswith("failed: HTTP 500 (try 3 of 3)")
