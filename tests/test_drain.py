"""Drain policy (pure): readiness, refusals, when to exit."""

from __future__ import annotations

import pytest

from gateway.ops.drain import CALL_BACK, Drain, Refusal, Step


def test_serving_until_begin() -> None:
    d = Drain(timeout_s=30)
    assert not d.draining and d.refusal() is None and d.deadline is None
    assert d.step(now=100.0, active_calls=0) is Step.SERVE
    assert d.status(100.0) == {"draining": False, "drain_remaining_s": None}


def test_begin_is_idempotent_and_deadline_fixed() -> None:
    d = Drain(timeout_s=30)
    assert d.begin(10.0) is True
    assert d.begin(20.0) is False
    assert d.deadline == 40.0 and d.remaining(25.0) == 15.0 and d.remaining(99.0) == 0.0
    assert d.status(25.0) == {"draining": True, "drain_remaining_s": 15.0}


def test_active_calls_continue_until_done_or_timeout() -> None:
    d = Drain(timeout_s=30)
    d.begin(0.0)
    assert d.step(5.0, active_calls=3) is Step.SERVE
    assert d.step(10.0, active_calls=0) is Step.EXIT_IDLE
    assert d.step(29.9, active_calls=1) is Step.SERVE
    assert d.step(30.0, active_calls=1) is Step.EXIT_TIMEOUT


def test_zero_timeout_exits_at_once() -> None:
    d = Drain(timeout_s=0)
    d.begin(5.0)
    assert d.step(5.0, active_calls=2) is Step.EXIT_TIMEOUT


def test_refusal_says_call_back_or_redirects() -> None:
    plain = Drain(timeout_s=1)
    plain.begin(0.0)
    assert plain.refusal() == Refusal(CALL_BACK, None)
    redirect = Drain(timeout_s=1, redirect_url="https://other.example.com/twilio/voice")
    redirect.begin(0.0)
    refusal = redirect.refusal()
    assert refusal is not None and refusal.redirect_url == "https://other.example.com/twilio/voice"


def test_negative_timeout_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        Drain(timeout_s=-1)
