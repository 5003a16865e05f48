"""The per-turn latency book (pure): what a start mark's echo reports, for plain, speculative and other turns."""

from __future__ import annotations

import pytest

from gateway.listener import TurnEnd
from gateway.ops.logs import TurnLatency
from gateway.turn_latency import FirstHeard, LatencyBook


def ended(stopped_at: float, decided_after: float = 0.3) -> TurnEnd:
    return TurnEnd("what time is it", stopped_at, stopped_at + decided_after, 0.05, "complete")


def test_answered_turn_reports_every_stage_once() -> None:
    book = LatencyBook()
    book.turn_started(1, 10.0, ended(10.0), held=False)
    book.start_mark("turn1-start", 1)
    book.logic_output(1, 10.4)
    book.logic_output(1, 10.5)  # only the first output counts
    first = book.heard("turn1-start", 11.0, first_frame_at=10.6)
    assert first == FirstHeard(1, 11.0, 1.0, TurnLatency(
        turn=1, why="complete", speculative=False, endpoint_wait_ms=300.0, recognition_ms=50.0,
        logic_first_ms=400.0, first_audio_ms=600.0, first_heard_ms=1000.0))
    assert book.heard("turn1-start", 12.0, None) is None  # reported once


def test_speculative_turn_is_timed_from_its_release() -> None:
    book = LatencyBook()
    book.turn_started(2, 20.0, ended(19.0), held=True)  # prepared before the turn was confirmed
    book.start_mark("turn2-start", 2)
    assert book.heard("turn2-start", 20.2, 20.1) is None  # not confirmed: nothing to report
    book.start_mark("turn2-start", 2)
    book.confirmed(2, ended(20.0), logic_first_at=19.9, now=20.5)
    first = book.heard("turn2-start", 21.0, first_frame_at=20.1)
    assert first is not None and first.latency is not None
    assert first.mouth_to_ear_s == pytest.approx(1.0)
    assert first.latency.speculative
    assert first.latency.logic_first_ms == pytest.approx(-100.0)  # before the turn ended
    assert first.latency.first_audio_ms == pytest.approx(500.0)  # held until the release, not when queued


def test_forgotten_turn_reports_nothing_and_returns_its_start_marks() -> None:
    book = LatencyBook()
    book.turn_started(3, 30.0, ended(30.0), held=False)
    book.start_mark("turn3-start", 3)
    book.start_mark("other", 4)
    assert book.forget(3) == ["turn3-start"]
    assert book.heard("turn3-start", 31.0, 30.5) is None


def test_turn_without_an_origin_or_a_turn_end() -> None:
    book = LatencyBook()
    book.turn_started(1, None, None, held=False)  # a digit: nobody stopped speaking
    book.start_mark("turn1-start", 1)
    assert book.heard("turn1-start", 1.0, 0.5) is None
    book.turn_started(2, 5.0, ended(4.0), held=False)  # an answer, but to another caller turn: no stages
    book.start_mark("turn2-start", 2)
    assert book.heard("turn2-start", 6.0, 5.5) == FirstHeard(2, 6.0, 1.0, None)


def test_a_new_turn_replaces_the_older_ones() -> None:
    book = LatencyBook()
    book.turn_started(1, 1.0, ended(1.0), held=False)
    book.start_mark("turn1-start", 1)
    book.turn_started(2, 2.0, ended(2.0), held=False)
    book.start_mark("turn2-start", 2)
    assert book.heard("turn1-start", 3.0, 2.5) is None
    first = book.heard("turn2-start", 3.0, 2.5)
    assert first is not None and first.turn == 2 and first.latency is not None
