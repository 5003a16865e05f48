"""Pacer (bounded lead, bounded catch-up, underruns) and Ledger (heard/queued/cleared from mark echoes)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.playout import Ledger, Pacer, SentenceState

F = 0.02


def run_sender(pacer: Pacer, frames: int, wakeups: list[float]) -> list[tuple[float, int]]:
    """Simulate a sender waking at the given times; returns (time, frames sent) per wakeup."""
    sent, left = [], frames
    for now in wakeups:
        n = pacer.take(now, left)
        left -= n
        sent.append((now, n))
    return sent


def test_initial_burst_fills_the_lead_then_one_frame_per_20ms() -> None:
    p = Pacer(lead_s=0.1)
    assert p.take(0.0, 100) == 6  # 120 ms: lead <= 100 ms before each frame
    assert p.buffered(0.0) == pytest.approx(0.12)
    assert p.take(0.0, 100) == 0
    assert p.next_send_at() == pytest.approx(0.02)
    assert p.take(0.019, 100) == 0
    assert p.take(0.02, 100) == 1
    # Steady state: one frame per frame period, lead stays within [lead, lead + frame].
    t = 0.02
    for _ in range(500):
        t = p.next_send_at()
        assert p.take(t, 100) == 1
        assert 0.1 - 1e-9 <= p.buffered(t) <= 0.12 + 1e-9
    assert p.underruns == 0
    assert p.max_lateness < 1e-9


def test_short_stall_within_lead_is_caught_up_without_underrun() -> None:
    p = Pacer(lead_s=0.1)
    p.take(0.0, 100)
    # The loop stalls 60 ms: less than the lead, Twilio still has audio; we send what the lead allows.
    n = p.take(0.06, 100)
    assert n == 3 and p.underruns == 0
    assert p.buffered(0.06) == pytest.approx(0.12)  # back to lead + frame
    assert p.last_lateness == pytest.approx(0.04)


def test_long_stall_is_an_underrun_and_catch_up_is_bounded() -> None:
    p = Pacer(lead_s=0.1)
    p.take(0.0, 1000)  # horizon 0.12
    n = p.take(0.5, 1000)  # ran dry at 0.12: 380 ms of silence heard
    assert p.underruns == 1 and p.underrun_gaps == [pytest.approx(0.38)]
    assert n == 6  # refill the lead only: no attempt to "make up" the 380 ms
    assert p.buffered(0.5) == pytest.approx(0.12)


def test_max_burst_caps_each_take() -> None:
    p = Pacer(lead_s=0.1, max_burst=2)
    assert p.take(0.0, 100) == 2
    assert p.take(0.0, 100) == 2
    assert p.take(0.0, 100) == 2
    assert p.take(0.0, 100) == 0


def test_end_of_audio_and_reset_are_not_underruns() -> None:
    p = Pacer(lead_s=0.06)
    p.take(0.0, 3)
    p.end_of_audio()
    p.take(5.0, 3)  # next sentence much later: silence was intended
    assert p.underruns == 0
    p.reset(5.01)  # clear: Twilio's buffer is empty now
    assert p.buffered(5.01) == 0.0
    assert p.take(5.5, 1) == 1 and p.underruns == 0


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        Pacer(lead_s=-1)
    with pytest.raises(ValueError):
        Pacer(max_burst=0)


def test_two_frames_per_wake_halve_the_wakeups_and_keep_real_time() -> None:
    """per_wake=2: once the lead allows a frame, two go together; the sender wakes every 40 ms and the
    lead stays within [lead, lead + two frames]; over time exactly real time is sent."""
    p = Pacer(lead_s=0.1, per_wake=2)
    assert p.take(0.0, 100) == 7  # the lead filled (120 ms), plus the second frame of the group
    t = p.next_send_at()
    assert t == pytest.approx(0.04)
    for _ in range(500):
        t = p.next_send_at()
        assert p.take(t, 100) == 2
        assert 0.1 - 1e-9 <= p.buffered(t) <= 0.14 + 1e-9
    assert p.frames_sent == 7 + 1000 and p.horizon == pytest.approx(t + 0.14)
    assert p.underruns == 0 and p.max_lateness < 1e-9
    assert p.take(p.next_send_at(), 1) == 1  # the last frame of a sentence goes alone


@settings(max_examples=300, deadline=None)
@given(
    lead_ms=st.integers(0, 300),
    burst=st.one_of(st.none(), st.integers(1, 20)),
    per_wake=st.integers(1, 4),
    steps=st.lists(st.tuples(st.floats(0.0, 0.2), st.integers(0, 30)), min_size=1, max_size=200),
)
def test_never_exceeds_the_lead_and_never_loses_frames(lead_ms: int, burst: int | None, per_wake: int,
                                                       steps: list[tuple[float, int]]) -> None:
    """Whatever the wakeup pattern: the lead at Twilio stays <= lead + one group of frames, bursts are
    bounded, and the frames sent equal the frames taken."""
    p = Pacer(lead_s=lead_ms / 1000, max_burst=burst, per_wake=per_wake)
    now, total = 0.0, 0
    for dt, queued in steps:
        now += dt
        n = p.take(now, queued)
        assert 0 <= n <= min(queued, p.max_burst)
        total += n
        assert p.buffered(now) <= p.lead_s + per_wake * F + 1e-9
        assert all(g > 0 for g in p.underrun_gaps)
    assert p.frames_sent == total
    assert p.underruns == len(p.underrun_gaps)


@settings(max_examples=200, deadline=None)
@given(jitter=st.lists(st.floats(0.0, 0.09), min_size=50, max_size=300))
def test_wakeup_jitter_below_the_lead_never_underruns(jitter: list[float]) -> None:
    """A sender that wakes up to 90 ms late (lead 100 ms) never lets Twilio run dry."""
    p = Pacer(lead_s=0.1)
    now = 0.0
    p.take(now, 10_000)
    for j in jitter:
        now = max(now, p.next_send_at()) + j
        p.take(now, 10_000)
    assert p.underruns == 0


# ---- ledger ---------------------------------------------------------------------------------------------


def sent(ledger: Ledger, *marks: str, turn: int = 0) -> None:
    for m in marks:
        ledger.queue(m, f"text of {m}", turn)
        ledger.mark_sent(m)


def test_echo_means_heard_and_settles_earlier_sentences() -> None:
    led = Ledger()
    sent(led, "greeting-1", "s-2", "s-3")
    assert led.queued() == ["greeting-1", "s-2", "s-3"]
    echo = led.echoed("s-2")  # Twilio plays in order: greeting-1 must have played too
    assert echo.heard == ("greeting-1", "s-2") and echo.known and not echo.after_clear
    assert led.heard() == ["greeting-1", "s-2"] and led.queued() == ["s-3"]
    assert led.heard_text() == "text of greeting-1 text of s-2"
    assert led.echoed("greeting-1").heard == ()  # late duplicate: nothing new


def test_marks_echoed_after_clear_count_as_not_played() -> None:
    led = Ledger()
    sent(led, "a", "b", "c", turn=1)
    led.echoed("a")
    assert led.cleared() == ["b", "c"]
    for m in ("b", "c"):  # clear makes Twilio echo every pending mark
        echo = led.echoed(m)
        assert echo.after_clear and echo.heard == ()
        assert led.state(m) is SentenceState.CLEARED
    assert led.heard(turn=1) == ["a"] and led.cleared_marks() == ["b", "c"] and led.outstanding() == 0
    assert led.heard_text(turn=1) == "text of a"


def test_sentence_queued_but_mark_not_yet_sent_is_cleared_too() -> None:
    led = Ledger()
    sent(led, "a")
    led.queue("b", "unsent")  # audio still in our local queue
    assert led.cleared() == ["a", "b"]
    assert led.echoed("zzz").known is False and led.unknown_echoes == 1


def test_turn_filter_and_forget() -> None:
    led = Ledger()
    sent(led, "t1-a", turn=1)
    sent(led, "t2-a", "t2-b", turn=2)
    led.echoed("t1-a")
    assert led.cleared(turn=2) == ["t2-a", "t2-b"]
    sent(led, "t3-a", turn=3)
    led.forget_before(3)
    assert led.heard() == [] and led.queued() == ["t3-a"]
    with pytest.raises(ValueError):
        led.queue("t3-a", "again")


def test_heard_text_per_turn_follows_echoes_and_clear() -> None:
    """(Moved from the conversation's former HeardLedger.) A reply's start mark has no text; what the caller
    heard of a turn is the text of its sentences echoed before the clear, in order."""
    led = Ledger()
    sent(led, "t1-1", turn=1)
    led.echoed("t1-1")
    led.queue("turn2-start", "", 2)
    for i, text in enumerate(["One.", "Two.", "Three."], 1):
        led.queue(f"t2-{i}", text, 2)
    for m in ("turn2-start", "t2-1", "t2-2"):
        led.mark_sent(m)
    assert led.outstanding(2) == 4 and led.outstanding(1) == 0
    led.echoed("turn2-start")
    led.echoed("t2-1")
    assert led.cleared() == ["t2-2", "t2-3"]
    assert led.state("t2-2") is SentenceState.CLEARED
    assert led.heard_text(2) == "One." and led.heard_text(1) == "text of t1-1"
    assert led.outstanding() == 0
    led.forget_before(2)
    assert led.heard_text(1) == "" and led.heard_text(2) == "One."


def test_restart_clear_echo_is_ignored_and_the_mark_is_sent_again() -> None:
    led = Ledger()
    sent(led, "greeting-1")
    led.echoed("greeting-1")
    sent(led, "turn2-start")  # the reply's first attempt started; its provider then died
    led.queue("t2-1", "Hello.", 2)
    assert led.unplayed_sent() == ["turn2-start"] and led.unplayed_sent(exclude="turn2-start") == []
    assert led.resend("turn2-start") and not led.resend("turn2-start") and not led.resend("greeting-1")
    echo = led.echoed("turn2-start")  # provoked by the restart's clear: not played
    assert echo.heard == () and echo.after_clear and led.state("turn2-start") is SentenceState.QUEUED
    led.mark_sent("turn2-start")  # sent again before the replacement's first frame
    assert led.echoed("turn2-start").heard == ("turn2-start",)
    led.replace_text("t2-1", "Sorry.")
    led.mark_sent("t2-1")
    led.echoed("t2-1")
    assert led.heard_text(2) == "Sorry." and led.clears == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["queue", "echo", "clear"]), st.integers(0, 9)), max_size=80))
def test_ledger_invariants(ops: list[tuple[str, int]]) -> None:
    """Every sentence is in exactly one state; heard never becomes cleared or back; cleared is final."""
    led = Ledger()
    queued: list[str] = []
    ever_heard: set[str] = set()
    ever_cleared: set[str] = set()
    for op, i in ops:
        if op == "queue":
            m = f"m{len(queued)}"
            led.queue(m, m)
            led.mark_sent(m)
            queued.append(m)
        elif op == "echo" and queued:
            led.echoed(queued[i % len(queued)])
        elif op == "clear":
            led.cleared()
        heard, pending, cleared = set(led.heard()), set(led.queued()), set(led.cleared_marks())
        assert heard | pending | cleared == set(queued)
        assert not (heard & pending or heard & cleared or pending & cleared)
        assert ever_heard <= heard and ever_cleared <= cleared
        ever_heard, ever_cleared = heard, cleared
        # Playout is in order: a sentence still pending never precedes one already heard.
        for m in led.queued():
            assert all(queued.index(h) < queued.index(m) for h in led.heard())
