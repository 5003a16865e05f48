"""Cross-call micro-batching policy for the ChatTTS worker.

Rules of this file: pure and synchronous; no threads, no clock (``now`` is
passed in), no torch. The worker thread owns one :class:`Scheduler` behind a
lock and asks it three things: may this request queue (:meth:`admit`), how
long to wait before forming a batch (:meth:`wait_time`), and which requests
form the next batch (:meth:`take_batch`).

Policy:
- The batch is led by the most urgent request (lowest ``priority``, then
  oldest): a turn's first sentence (priority 0) never waits behind later
  sentences. Others join in the same order up to ``max_batch``.
- The worker runs per-row speakers, speed prompts, sampling settings and
  seeds in one batch, so almost everything is compatible; requests carry a
  ``key`` and only equal keys share a batch (the worker keys ``use_refine``
  requests apart: the refine pass is a separate text pass with one seed).
- A batch forms as soon as ``max_batch`` requests wait or the oldest has waited
  ``window_s`` (a few ms: the price of batching when the load is light).
- Admission is bounded (``max_queue``) and deadline-aware: while busy, from
  the measured batch duration and time to first audio, a request whose first
  audio would come after its ``deadline`` is refused at once so the fallback
  can speak. An idle engine always admits (and so keeps measuring).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

__all__ = ["Item", "Scheduler"]


@dataclass(eq=False, slots=True)
class Item:
    """One queued sentence as the scheduler sees it (``payload`` is the worker's job)."""

    priority: int
    enqueued: float
    deadline: float | None
    key: Hashable
    payload: object = None
    cancelled: bool = False


@dataclass(slots=True)
class _Ewma:
    value: float | None = None
    alpha: float = 0.3

    def add(self, x: float) -> None:
        self.value = x if self.value is None else self.value + self.alpha * (x - self.value)


@dataclass(slots=True)
class Scheduler:
    max_batch: int = 8
    max_queue: int = 64
    window_s: float = 0.015
    queue: list[Item] = field(default_factory=list)
    batch_seconds: _Ewma = field(default_factory=_Ewma)
    first_audio_seconds: _Ewma = field(default_factory=_Ewma)
    #: ``now`` at which the running batch started, None when idle.
    running_since: float | None = None

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1 or self.window_s < 0:
            raise ValueError("max_batch and max_queue must be ≥ 1, window_s ≥ 0")

    def _order(self, item: Item) -> tuple[int, float]:
        return (item.priority, item.enqueued)

    def estimate_first_audio(self, priority: int, now: float) -> float:
        """Seconds from ``now`` until a new request of this priority would hear first audio (0 if unknown)."""
        batch = self.batch_seconds.value or 0.0
        ahead = sum(1 for i in self.queue if not i.cancelled and i.priority <= priority)
        wait = 0.0
        if self.running_since is not None:
            wait += max(0.0, self.running_since + batch - now)
        wait += (ahead // self.max_batch) * batch
        return wait + self.window_s + (self.first_audio_seconds.value or 0.0)

    def admit(self, item: Item, now: float) -> str | None:
        """Queue ``item``, or return why not (queue full, deadline cannot be met)."""
        live = sum(1 for i in self.queue if not i.cancelled)
        if live >= self.max_queue:
            return f"queue full ({live} sentences waiting)"
        idle = self.running_since is None and live == 0
        # An idle engine always takes the request: refusing then would never measure again, so one slow
        # spell would shut ChatTTS out for good. Busy, it refuses what it cannot start in time.
        if item.deadline is not None and not idle:
            eta = now + self.estimate_first_audio(item.priority, now)
            if eta > item.deadline:
                return f"queue too deep: first audio expected in {eta - now:.2f}s, after the deadline"
        self.queue.append(item)
        return None

    def wait_time(self, now: float) -> float | None:
        """Seconds to wait before :meth:`take_batch` (0: now); None when nothing is queued."""
        self.queue = [i for i in self.queue if not i.cancelled]
        if not self.queue:
            return None
        if len(self.queue) >= self.max_batch:
            return 0.0
        oldest = min(i.enqueued for i in self.queue)
        return max(0.0, oldest + self.window_s - now)

    def take_batch(self, now: float) -> tuple[list[Item], list[Item]]:
        """(batch to run, items whose deadline passed while queued). Marks the scheduler busy."""
        expired = [i for i in self.queue if i.deadline is not None and i.deadline < now and not i.cancelled]
        live = sorted((i for i in self.queue if not i.cancelled and i not in expired), key=self._order)
        batch: list[Item] = []
        if live:
            head = live[0]
            batch.append(head)
            for other in live[1:]:
                if len(batch) >= self.max_batch:
                    break
                if other.key == head.key:
                    batch.append(other)
        taken = set(map(id, batch + expired))
        self.queue = [i for i in self.queue if id(i) not in taken and not i.cancelled]
        if batch:
            self.running_since = now
        return batch, expired

    def batch_done(self, now: float, first_audio_s: float | None) -> None:
        """The running batch finished; learn its duration and time to first audio."""
        if self.running_since is not None:
            self.batch_seconds.add(now - self.running_since)
        if first_audio_s is not None:
            self.first_audio_seconds.add(first_audio_s)
        self.running_since = None
