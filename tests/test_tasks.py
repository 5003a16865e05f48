"""TaskGroup: tracked tasks, counted in a parent, all cancelled and awaited on close, failures noted."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.tasks import TaskGroup


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
