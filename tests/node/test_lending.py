"""Lending on the volunteer's terms (node/lending.py): hours, the owner's use, and pausing a live
node without losing a call."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import shutil
import tempfile
from pathlib import Path

import pytest

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.errors import ConfigError, Refused, Unreachable
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Ack, NodeStatus
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.lending import ActivityGate, Lending, Schedule, lending_change
from p2pfaas.node.settings import NodeConfig, check
from p2pfaas.rpc import call
from tests.functions import write_function

MONDAY = datetime.datetime(2026, 12, 7)  # a Monday


def test_lending_hours_run_past_midnight_and_across_days() -> None:
    schedule = Schedule.parse(["mon-fri 18:00-08:00", "sat-sun 00:00-24:00"])

    def at(day: int, hour: int, minute: int = 0) -> bool:
        return schedule.lending_at(MONDAY + datetime.timedelta(days=day, hours=hour, minutes=minute))

    assert not at(0, 12) and at(0, 18) and at(0, 23, 59) and at(1, 7, 59) and not at(1, 8)
    assert at(4, 20) and at(5, 7) and at(5, 12) and at(6, 23)  # Friday night runs into Saturday
    assert not at(0, 3)  # Sunday's span ends at midnight: Monday morning is not lent
    assert Schedule().lending_at(MONDAY)  # no hours: always
    for bad in ("monday 10:00-12:00", "mon 25:00-26:00", "mon-fri 9-17", "xyz 10:00-11:00"):
        with pytest.raises(ConfigError, match="lend_hours"):
            Schedule.parse([bad])


def test_the_owners_use_pauses_after_a_while_and_resumes_after_a_quiet_period() -> None:
    gate = ActivityGate(busy_load=0.5, busy_for_s=60, quiet_for_s=300)
    assert not gate.update(0.9, now=0) and not gate.update(0.9, now=59)
    assert gate.update(0.9, now=60)  # busy for a minute: paused
    assert gate.update(0.1, now=100) and gate.update(0.9, now=200)  # a dip does not resume it
    assert gate.update(0.1, now=210) and not gate.update(0.1, now=510)  # quiet for 5 minutes
    assert not ActivityGate(busy_load=0).update(99.0, now=0)  # off
    lending = Lending(gate=ActivityGate(busy_load=0.5, busy_for_s=0))
    assert lending.tick(local_time=MONDAY, load_per_core=0.9, now=0) == "its owner is using the machine"
    lending.by_owner = "gaming"
    assert lending.reason() == "paused by its owner: gaming"


def test_lending_settings_are_checked() -> None:
    base = NodeConfig(anchor_url="http://127.0.0.1:9", key_path=Path("k"), work_dir=Path("w"))
    with pytest.raises(ConfigError, match="lend_hours"):
        check(dataclasses.replace(base, lend_hours=("sometimes",)))
    with pytest.raises(ConfigError, match="one worker"):
        check(dataclasses.replace(base, pause_load=0.5, workers=2))


async def test_a_paused_node_finishes_what_runs_takes_nothing_new_and_resumes(tmp_path: Path) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="p2pl-", dir="/tmp"))
    try:
        async with AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor:
            config = NodeConfig(
                anchor_url=anchor.url, key_path=tmp_path / "n" / "key", work_dir=tmp_path / "n", port=0,
                unpaid_owners=True,
            )  # fmt: skip
            async with (
                NodeDaemon(config, executor=UnsandboxedProcessExecutor(work_dir=run_dir)) as node,
                AsyncClient(anchor.url, KeyPair.generate()) as client,
            ):
                await node.announce()
                await client.deploy(write_function(tmp_path, "sleepy", timeout_s=20.0))
                running = asyncio.create_task(client.invoke("sleepy", {"s": 1.0}, node_url=node.url))
                await asyncio.sleep(0.5)  # it is running
                url = f"{node.url}/v1/lending"
                pause = lending_change(node.keys, paused=True, reason="gaming")
                ack = await call(client.session, "POST", url, Ack, pause, timeout_s=10)
                assert ack.detail == "paused by its owner: gaming"
                status = await call(client.session, "GET", f"{node.url}/v1/status", NodeStatus, timeout_s=10)
                assert status.away == "paused by its owner: gaming"
                # New work is refused (503), so its lessee tries another node: here, there is none.
                with pytest.raises(Unreachable, match="does not lend now"):
                    await client.invoke("sleepy", {"s": 0}, node_url=node.url, timeout_s=5)
                assert (await running).value == "woke"  # the call that ran when it paused: not lost
                stranger = lending_change(KeyPair.generate(), paused=False)
                with pytest.raises(Refused, match="own key"):
                    await call(client.session, "POST", url, Ack, stranger, timeout_s=10)
                resume = lending_change(node.keys, paused=False)
                assert (
                    await call(client.session, "POST", url, Ack, resume, timeout_s=10)
                ).detail == "lending"
                assert (await client.invoke("sleepy", {"s": 0}, node_url=node.url)).value == "woke"
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
