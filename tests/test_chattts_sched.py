"""tts.chattts_sched: the pure micro-batching policy (no threads, no clock)."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from tts.chattts_sched import Item, Scheduler


def item(priority: int = 1, at: float = 0.0, deadline: float | None = None, key: Hashable = "k") -> Item:
    return Item(priority, at, deadline, key=key)


def test_waits_for_the_window_then_batches_everything_compatible() -> None:
    s = Scheduler(max_batch=4, window_s=0.02)
    a, b = item(at=0.0), item(at=0.005)
    assert s.admit(a, 0.0) is None and s.admit(b, 0.005) is None
    assert s.wait_time(0.005) == pytest.approx(0.015)
    batch, expired = s.take_batch(0.02)
    assert batch == [a, b] and expired == []
    assert s.wait_time(0.02) is None


def test_full_batch_goes_at_once_and_the_rest_waits() -> None:
    s = Scheduler(max_batch=2, window_s=1.0)
    items = [item(at=i * 0.001) for i in range(3)]
    for i in items:
        s.admit(i, 0.0)
    assert s.wait_time(0.003) == 0.0
    assert s.take_batch(0.003)[0] == items[:2]
    assert s.take_batch(1.5)[0] == items[2:]


def test_first_sentence_of_a_turn_leads_the_batch() -> None:
    s = Scheduler(max_batch=2)
    late, urgent, old = item(1, 0.0), item(0, 0.01), item(1, 0.005)
    for i in (late, old, urgent):
        s.admit(i, 0.01)
    assert s.take_batch(0.1)[0] == [urgent, late]


def test_only_equal_keys_share_a_batch() -> None:
    s = Scheduler(max_batch=4)
    plain, refine, plain2 = item(key=("p",)), item(at=0.001, key=("r",)), item(at=0.002, key=("p",))
    for i in (plain, refine, plain2):
        s.admit(i, 0.0)
    assert s.take_batch(0.1)[0] == [plain, plain2]
    assert s.take_batch(0.2)[0] == [refine]


def test_cancelled_items_leave_the_queue() -> None:
    s = Scheduler()
    a, b = item(), item()
    s.admit(a, 0.0)
    s.admit(b, 0.0)
    a.cancelled = True
    assert s.take_batch(1.0)[0] == [b]
    b2 = item()
    s.admit(b2, 1.0)
    b2.cancelled = True
    assert s.wait_time(1.0) is None


def test_bounded_queue_refuses_with_a_reason() -> None:
    s = Scheduler(max_queue=2)
    assert s.admit(item(), 0.0) is None and s.admit(item(), 0.0) is None
    assert s.admit(item(), 0.0) == "queue full (2 sentences waiting)"


def test_deadline_admission_uses_measured_batch_times() -> None:
    s = Scheduler(max_batch=2, window_s=0.0)
    assert s.admit(item(deadline=0.5), 0.0) is None  # nothing measured yet: admitted
    s.take_batch(0.0)
    s.batch_done(2.0, first_audio_s=0.4)  # batches take 2 s, first audio 0.4 s
    s.take_batch(2.0)
    assert s.admit(item(deadline=2.1), 2.0) is None  # idle: always admitted, so it keeps measuring
    s.take_batch(2.0)
    s.admit(item(), 2.0)
    s.admit(item(), 2.0)
    s.running_since = 2.0  # a batch is running until ≈4.0
    reason = s.admit(item(deadline=3.0), 2.0)
    assert reason is not None and reason.startswith("queue too deep")
    assert s.admit(item(deadline=9.0), 2.0) is None
    # an urgent request does not count the lower-priority ones queued ahead of it
    assert s.estimate_first_audio(0, 2.0) < s.estimate_first_audio(1, 2.0)


def test_items_past_their_deadline_are_returned_as_expired() -> None:
    s = Scheduler()
    late, fine = item(deadline=0.1), item(deadline=5.0)
    s.admit(late, 0.0)
    s.admit(fine, 0.0)
    batch, expired = s.take_batch(1.0)
    assert batch == [fine] and expired == [late]


def test_invalid_configuration() -> None:
    with pytest.raises(ValueError):
        Scheduler(max_batch=0)
