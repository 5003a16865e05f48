"""Graceful drain: the state and the policy, without the signal handling.

Rules of this file: no asyncio, no clocks, no signals; time arrives as
``now`` (monotonic seconds). The I/O shell (:mod:`gateway.serve`) calls
:meth:`Drain.begin` on SIGTERM (or ``POST /admin/drain``), asks
:meth:`Drain.refusal` for every new call and :meth:`Drain.step` on a timer.

The policy: once draining, readiness is false at once; new calls are refused
politely (a redirect to another deployment when ``redirect_url`` is set, or a
short "please call back" message); calls already in progress continue until
they end or ``timeout_s`` passes, then the process exits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

CALL_BACK = "Sorry, we are performing maintenance right now. Please call back in a few minutes. Goodbye."


@dataclass(frozen=True, slots=True)
class Refusal:
    """How to answer a new call while draining: redirect when a URL is set, else say ``message``."""

    message: str
    redirect_url: str | None = None


class Step(enum.Enum):
    SERVE = "serve"  # not draining, or draining with calls still inside the time limit
    EXIT_IDLE = "exit_idle"  # draining and no call left
    EXIT_TIMEOUT = "exit_timeout"  # draining and the time limit passed with calls still active


class Drain:
    def __init__(self, timeout_s: float, redirect_url: str | None = None, message: str = CALL_BACK) -> None:
        if timeout_s < 0:
            raise ValueError("drain timeout must not be negative")
        self.timeout_s = timeout_s
        self.redirect_url = redirect_url
        self.message = message
        self.started_at: float | None = None

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    def begin(self, now: float) -> bool:
        """Start draining; True the first time, False if already draining (the deadline never moves)."""
        if self.started_at is not None:
            return False
        self.started_at = now
        return True

    @property
    def deadline(self) -> float | None:
        return None if self.started_at is None else self.started_at + self.timeout_s

    def remaining(self, now: float) -> float | None:
        deadline = self.deadline
        return None if deadline is None else max(0.0, deadline - now)

    def refusal(self) -> Refusal | None:
        """None while serving normally; how to turn a new call away while draining."""
        if not self.draining:
            return None
        return Refusal(self.message, self.redirect_url)

    def step(self, now: float, active_calls: int) -> Step:
        deadline = self.deadline
        if deadline is None:
            return Step.SERVE
        if active_calls <= 0:
            return Step.EXIT_IDLE
        if now >= deadline:
            return Step.EXIT_TIMEOUT
        return Step.SERVE

    def status(self, now: float) -> dict[str, object]:
        """For ``/readyz``: whether draining and how long until the process exits at the latest."""
        remaining = self.remaining(now)
        return {"draining": self.draining, "drain_remaining_s": None if remaining is None else round(remaining, 1)}
