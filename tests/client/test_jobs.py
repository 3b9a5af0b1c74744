"""Asynchronous invocations from the client's side (`p2pfaas.client.jobs`), on the simulator: a job whose
node dies is submitted again under its id, and waiting has a deadline."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pfaas import sim
from tests.placement.harness import placement_net


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


def test_wait_gives_up_at_its_deadline_and_the_job_can_be_polled_later(tmp_path: Path) -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with placement_net(net, tmp_path, seed=26, nodes=2, mean_run_s=5.0) as pn:
            job = await pn.client.submit("echo", "slow")
            with pytest.raises(TimeoutError):
                await pn.client.wait(job, poll_s=0.2, timeout_s=0.5)
            outcome = await pn.client.wait(job, poll_s=0.5)  # the default deadline: timeout + margin
            assert outcome.value == {"echo": "slow"}

    sim.run(main, seed=26)
