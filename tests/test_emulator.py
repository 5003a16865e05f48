"""The emulator's Twilio buffer model (pure, with an injected clock)."""

from __future__ import annotations

from gateway.twilio.emulator import Playout, parse_stream


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _queued(clock: Clock, *sentences: tuple[float, str]) -> Playout:
    """A playout buffer holding these sentences (seconds of audio, then the mark that ends each)."""
    p = Playout(clock)
    for seconds, mark in sentences:
        p.add_audio(seconds)
        p.add_mark(mark)
    return p


def test_marks_echo_when_playout_reaches_them() -> None:
    clock = Clock()
    p = _queued(clock, (1.0, "s1"))
    assert p.due_marks() == []
    clock.t += 0.99
    assert p.due_marks() == [] and not p.idle()
    clock.t += 0.02
    assert p.due_marks() == ["s1"] and p.idle()


def test_a_mark_is_timed_when_playout_reached_it_not_when_it_was_looked_at() -> None:
    clock = Clock()
    p = _queued(clock, (0.5, "a"), (0.25, "b"))
    assert p.next_due() == 100.5
    clock.t += 0.513  # looked at 13 ms after "a" was reached (the emulator's 20 ms sending tick)
    assert p.due() == [(100.5, "a")]
    assert p.next_due() == 100.75
    clock.t += 1.0
    assert p.due() == [(100.75, "b")] and p.next_due() is None


def test_mark_on_empty_buffer_echoes_at_once() -> None:
    p = Playout(Clock())
    p.add_mark("m")
    assert p.due_marks() == ["m"]


def test_starvation_mid_sentence_is_an_underrun_but_silence_after_a_mark_is_not() -> None:
    clock = Clock()
    p = Playout(clock)
    p.add_audio(0.1)
    clock.t += 0.15  # buffer ran dry 50 ms ago, sentence not finished
    assert p.add_audio(0.1) > 0.02
    assert p.underruns == 1
    p.add_mark("s1")
    clock.t += 2.0  # the caller talks; the next turn starts much later
    p.add_audio(0.1)
    assert p.underruns == 1


def test_clear_drops_buffer_and_returns_pending_marks() -> None:
    clock = Clock()
    p = _queued(clock, (1.0, "a"), (1.0, "b"))
    clock.t += 1.5
    assert p.due_marks() == ["a"]
    assert p.clear() == ["b"]
    assert p.idle()


def test_parse_stream_reads_url_and_parameters() -> None:
    twiml = ('<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://gw/twilio/media">'
             '<Parameter name="token" value="t1"/></Stream></Connect></Response>')
    assert parse_stream(twiml) == ("wss://gw/twilio/media", {"token": "t1"})
    assert parse_stream("<Response><Say>hi</Say><Hangup/></Response>") is None
