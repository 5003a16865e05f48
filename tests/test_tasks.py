"""TaskGroup: tracked tasks, counted in a parent, all cancelled and awaited on close, failures noted."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.tasks import TaskGroup, cancel_and_wait


async def test_spawned_tasks_are_counted_until_they_finish_in_the_group_and_its_parent() -> None:
    process = TaskGroup()
    call = TaskGroup(parent=process)
    release = asyncio.Event()
    task = call.spawn(release.wait(), "waits")
    assert call.live == 1 and process.live == 1
    release.set()
    assert await task is True
    await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    assert call.live == 0 and process.live == 0


async def test_aclose_cancels_and_awaits_every_task_and_swallows_their_errors() -> None:
    group = TaskGroup()
    forever = group.spawn(asyncio.Event().wait(), "forever")

    async def fails_when_cancelled() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("cleanup bug")

    buggy = group.spawn(fails_when_cancelled(), "buggy")
    await asyncio.sleep(0)
    await group.aclose()
    assert forever.cancelled() and buggy.done() and group.live == 0


async def test_a_task_failing_on_its_own_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    process = TaskGroup()
    call = TaskGroup(parent=process)

    async def boom() -> None:
        raise ValueError("bad frame")

    task = call.spawn(boom(), "outbound")
    await asyncio.wait([task])
    await asyncio.sleep(0)
    failures = [r for r in caplog.records if r.name == "voicegw.tasks"]
    assert len(failures) == 1 and failures[0].levelno == logging.WARNING
    assert "task outbound ended with ValueError('bad frame')" in failures[0].getMessage()


async def test_cancel_and_wait_waits_for_the_child_and_never_swallows_the_callers_own_cancellation() -> None:
    group = TaskGroup()
    cleaned = asyncio.Event()

    async def child() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)
            cleaned.set()

    task = group.spawn(child(), "child")
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled() and cleaned.is_set()

    unwinding, release = asyncio.Event(), asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            unwinding.set()
            await release.wait()

    rounds = 0

    async def loop() -> None:  # like the conversation's brain: each round may cancel a child, then goes on
        nonlocal rounds
        while True:
            rounds += 1
            child = group.spawn(slow_to_end(), f"child-{rounds}")
            await asyncio.sleep(0)
            await cancel_and_wait(child)

    looping = group.spawn(loop(), "loop")
    await asyncio.wait_for(unwinding.wait(), 5)
    looping.cancel()  # while it waits for the child to end
    release.set()
    done, _ = await asyncio.wait([looping], timeout=5)
    assert looping in done and looping.cancelled() and rounds == 1
    await group.aclose()
