"""Circuit breaker per TTS provider: stop asking a provider that keeps failing, probe it back later.

Rules of this file: pure. No clocks, no asyncio, no I/O: every call takes
``now`` (seconds, monotonic). One :class:`BreakerRegistry` per process, shared
by every call, so one call's failures spare the next call the wait.

States (classic three-state breaker)::

    closed --(threshold consecutive failures)--> open
    open   --(cool-down elapsed)--------------> half_open (one probe allowed)
    half_open --probe succeeds--> closed
    half_open --probe fails-----> open (cool-down doubled, up to max_cooldown_s)

Written here rather than taken from a library (pybreaker, aiobreaker) because
those wrap the call and read the wall clock themselves; the Speaker needs a
breaker it can ask and inform around a streaming, hedged attempt, with time
injected for tests.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 3  # consecutive failures that open the breaker
    cooldown_s: float = 30.0  # first open period
    max_cooldown_s: float = 300.0  # open period cap after repeated failed probes
    probe_timeout_s: float = 30.0  # a probe that never reported back frees the slot after this

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if not 0 < self.cooldown_s <= self.max_cooldown_s:
            raise ValueError("need 0 < cooldown_s <= max_cooldown_s")


@dataclass(slots=True)
class Breaker:
    """One provider's breaker."""

    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    failures: int = 0  # consecutive failures while closed
    opened_at: float | None = None  # None while closed
    cooldown: float = 0.0  # current open period
    probe_started: float | None = None  # a half-open probe in flight since
    last_reason: str = ""

    def state(self, now: float) -> State:
        if self.opened_at is None:
            return State.CLOSED
        if now - self.opened_at < self.cooldown:
            return State.OPEN
        return State.HALF_OPEN

    def allow(self, now: float) -> bool:
        """May a request go to this provider now? In half-open, only one probe at a time."""
        state = self.state(now)
        if state is State.CLOSED:
            return True
        if state is State.OPEN:
            return False
        if self.probe_started is not None and now - self.probe_started < self.policy.probe_timeout_s:
            return False
        self.probe_started = now
        return True

    def record_success(self, now: float) -> None:
        self.failures = 0
        self.opened_at = None
        self.cooldown = 0.0
        self.probe_started = None

    def record_failure(self, now: float, reason: str = "") -> bool:
        """Count one failure; returns True when this failure (re)opened the breaker."""
        self.last_reason = reason
        if self.opened_at is not None:  # a failed probe (or a straggler while open): back to open, longer
            probing = self.probe_started is not None or self.state(now) is State.HALF_OPEN
            self.probe_started = None
            if probing:
                self.cooldown = min(self.cooldown * 2, self.policy.max_cooldown_s)
                self.opened_at = now
                return True
            return False
        self.failures += 1
        if self.failures >= self.policy.failure_threshold:
            self.opened_at = now
            self.cooldown = self.policy.cooldown_s
            self.failures = 0
            return True
        return False

    def trip(self, now: float, reason: str = "") -> None:
        """Open now, without counting failures (an outside signal, e.g. a failed health check, says it is down)."""
        self.last_reason = reason
        self.failures, self.probe_started = 0, None
        if self.opened_at is None:
            self.cooldown = self.policy.cooldown_s
        self.opened_at = now

    def release(self, now: float) -> None:
        """The probe neither succeeded nor failed (cancelled, e.g. lost a race): free the probe slot."""
        self.probe_started = None


class BreakerRegistry:
    """Breakers by provider name, created on first use with one policy."""

    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self._breakers: dict[str, Breaker] = {}

    def get(self, provider: str) -> Breaker:
        breaker = self._breakers.get(provider)
        if breaker is None:
            breaker = self._breakers[provider] = Breaker(self.policy)
        return breaker

    def states(self, now: float) -> dict[str, str]:
        return {name: b.state(now).value for name, b in sorted(self._breakers.items())}
