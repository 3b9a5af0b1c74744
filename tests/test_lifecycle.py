"""`TaskSet`: every background task has an owner that ends it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from p2pfaas.lifecycle import TaskSet


async def test_cancel_ends_every_task_and_waits_for_each() -> None:
    tasks = TaskSet()
    ended: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits still runs to its end
            ended.append(name)

    spawned = [tasks.spawn(forever(name), name=name) for name in ("a", "b")]
    await asyncio.sleep(0)
    assert len(tasks) == 2
    await tasks.cancel()
    assert sorted(ended) == ["a", "b"]
    assert all(task.cancelled() for task in spawned)
    assert len(tasks) == 0


async def test_a_finished_task_is_forgotten() -> None:
    tasks = TaskSet()
    task = tasks.spawn(asyncio.sleep(0, result=7))
    assert await task == 7
    await asyncio.sleep(0)
    assert len(tasks) == 0


async def test_wait_covers_tasks_spawned_meanwhile_and_logs_errors(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet()
    done: list[str] = []

    async def child() -> None:
        await asyncio.sleep(0)
        done.append("child")

    async def parent() -> None:
        tasks.spawn(child())
        raise RuntimeError("boom")

    tasks.spawn(parent())
    with caplog.at_level(logging.ERROR, logger="p2pfaas.lifecycle"):
        await tasks.wait()
    assert done == ["child"]
    assert "a background task failed" in caplog.text and "boom" in caplog.text
