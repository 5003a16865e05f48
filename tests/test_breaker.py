"""Circuit breaker: pure state machine, time injected."""

from __future__ import annotations

import pytest

from tts.breaker import Breaker, BreakerPolicy, BreakerRegistry, State

POLICY = BreakerPolicy(failure_threshold=3, cooldown_s=10.0, max_cooldown_s=35.0, probe_timeout_s=5.0)


def opened(now: float = 0.0) -> Breaker:
    b = Breaker(POLICY)
    for _ in range(3):
        b.record_failure(now, "boom")
    return b


def test_opens_after_threshold_consecutive_failures() -> None:
    b = Breaker(POLICY)
    assert not b.record_failure(0.0, "a")
    assert not b.record_failure(1.0, "b")
    assert b.allow(1.5)
    assert b.record_failure(2.0, "c")
    assert b.state(2.0) is State.OPEN
    assert not b.allow(3.0)
    assert b.last_reason == "c"


def test_success_resets_the_count() -> None:
    b = Breaker(POLICY)
    b.record_failure(0.0)
    b.record_failure(0.0)
    b.record_success(0.0)
    b.record_failure(0.0)
    b.record_failure(0.0)
    assert b.state(0.0) is State.CLOSED


def test_half_open_allows_exactly_one_probe_and_success_closes() -> None:
    b = opened(0.0)
    assert b.state(9.9) is State.OPEN
    assert b.state(10.0) is State.HALF_OPEN
    assert b.allow(10.0)
    assert not b.allow(10.1)  # one probe at a time
    b.record_success(11.0)
    assert b.state(11.0) is State.CLOSED
    assert b.allow(11.0) and b.allow(11.0)


def test_failed_probe_reopens_with_doubled_capped_cooldown() -> None:
    b = opened(0.0)
    assert b.allow(10.0)
    assert b.record_failure(10.5, "still down")
    assert b.state(30.0) is State.OPEN  # 20 s now
    assert b.state(30.5) is State.HALF_OPEN
    assert b.allow(30.5)
    b.record_failure(31.0)
    assert b.cooldown == 35.0  # 40 capped at 35
    assert b.allow(66.0)
    b.record_failure(66.0)
    assert b.cooldown == 35.0


def test_lost_probe_slot_is_freed_by_release_or_timeout() -> None:
    b = opened(0.0)
    assert b.allow(10.0)
    b.release(10.2)
    assert b.allow(10.3)  # released: another probe may go
    assert not b.allow(12.0)
    assert b.allow(15.4)  # the probe never reported back within probe_timeout_s


def test_straggler_failure_while_open_does_not_extend() -> None:
    b = opened(0.0)
    assert not b.record_failure(5.0)
    assert b.state(10.0) is State.HALF_OPEN


def test_registry_shares_one_breaker_per_provider() -> None:
    reg = BreakerRegistry(POLICY)
    assert reg.get("cartesia") is reg.get("cartesia")
    for _ in range(3):
        reg.get("cartesia").record_failure(0.0)
    assert reg.states(1.0) == {"cartesia": "open"}
    assert reg.get("piper").allow(1.0)


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(failure_threshold=0)
    with pytest.raises(ValueError):
        BreakerPolicy(cooldown_s=10, max_cooldown_s=5)
