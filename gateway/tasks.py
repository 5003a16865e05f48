"""Tasks started together and ended together.

A :class:`TaskGroup` tracks every task it spawns until the task finishes;
:meth:`TaskGroup.aclose` cancels those still running and waits for all of them,
swallowing their errors (ending must not fail half-way). A task that fails on
its own is noted in the log when it finishes (its error is never left
unretrieved), whether or not someone awaits it. A group may count its
tasks in a parent too: the process-wide group (``Services.call_tasks``) sees
every call's tasks, so a leak shows in its :attr:`TaskGroup.live`.

Unlike :class:`asyncio.TaskGroup`, one task failing does not cancel the others:
a call's reader, sender and speech tasks end on their own terms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("voicegw.tasks")


def _note_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("task %s ended with %r", task.get_name(), exc)


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has finished, whatever its outcome (a failure is its group's to log).

    Only the caller's own cancellation is raised, never swallowed: a loop that cancels a child (an interrupted
    reply) must still end when it is cancelled itself (issue 15: a swallowed one kept a call alive after the
    caller hung up)."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: no "never retrieved" warning for a task outside any group


class TaskGroup:
    def __init__(self, parent: TaskGroup | None = None) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._parent = parent

    @property
    def live(self) -> int:
        """Tasks spawned here (and in child groups) that have not finished."""
        return sum(1 for task in self._tasks if not task.done())  # done callbacks run one loop turn later

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self._track(task)
        return task

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._parent is not None:
            self._parent._track(task)
        else:
            task.add_done_callback(_note_failure)  # once, by the outermost group

    async def aclose(self) -> None:
        """Cancel every task still running and wait until all have finished."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
