"""Asynchronous invocations: submit and poll, callbacks, failed jobs kept for inspection, bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from p2pfaas import codec, rpc, signing, sim
from p2pfaas.errors import Busy, InvokeTimeout, NotFound
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Ack, InvokeRequest, InvokeResult
from p2pfaas.node.jobs import Jobs
from p2pfaas.placement.wire import JobStatus, JobSubmit
from tests.placement.harness import placement_net


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
            url = f"{job.node.url}/v1/jobs/{job.invocation_id}"
            status = await rpc.call(pn.client.session, "GET", url, JobStatus, timeout_s=5)
            assert status.job_state == "failed" and status.result is not None and not status.result.ok
            assert "timeout" in status.error
            with pytest.raises(NotFound):
                await rpc.call(
                    pn.client.session, "GET", f"{job.node.url}/v1/jobs/nope", JobStatus, timeout_s=5
                )

    sim.run(main, seed=22)


def test_the_callback_url_receives_the_signed_result(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=23, nodes=2) as pn:
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
            finally:
                await runner.cleanup()

    sim.run(main, seed=23)


def test_a_job_whose_node_dies_is_resubmitted_under_the_same_id(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=24, nodes=3, mean_run_s=2.0) as pn:
            job = await pn.client.submit("echo", "survive")
            first = job.node
            net.crash(first.url.split("//")[1].split(":")[0])
            outcome = await pn.client.wait(job, poll_s=0.5)
            assert outcome.value == {"echo": "survive"}
            assert job.resubmissions >= 1 and job.node.node_id != first.node_id
            assert outcome.invocation_id == job.invocation_id

    sim.run(main, seed=24)


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
