"""Per-turn latency bookkeeping of one conversation: from the caller's last word to the reply's first frame heard.

Rules of this file: pure. No asyncio, no clock, no network: the conversation (:mod:`gateway.conversation`)
says what happened, with the time (its clock), and publishes what :meth:`LatencyBook.heard` returns
(``voicegw_mouth_to_ear_seconds``, ``voicegw_turn_stage_seconds``, the call summary, the console).

A reply's first sentence carries a *start mark*; its echo is the moment the caller started hearing the
reply. For a turn that answers the caller (it has an *origin*: when the caller stopped speaking), that echo
gives the mouth-to-ear latency, and, when the turn answers a :class:`gateway.listener.TurnEnd`, a
:class:`gateway.ops.logs.TurnLatency` with every stage on the way (endpoint wait, recognition, logic first
output, first audio, first heard). A speculative reply (prepared, audio held, before the turn was confirmed)
has no origin until :meth:`LatencyBook.confirmed`; an abandoned one is :meth:`LatencyBook.forget`-ten.
Only the latest turn is kept: a new turn's origin and timing replace the older ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.ops.logs import TurnLatency

if TYPE_CHECKING:
    from gateway.listener import TurnEnd


@dataclass
class _Timing:
    """What is known about an answered turn's latency, until its first frame is heard."""

    end: TurnEnd
    speculative: bool = False
    logic_first_at: float | None = None
    released_at: float | None = None

    def record(self, turn: int, first_frame_at: float | None, heard_at: float) -> TurnLatency:
        origin = self.end.stopped_at

        def ms(at: float | None) -> float | None:
            return None if at is None else round((at - origin) * 1000.0, 1)

        # a held reply's audio left at its release, not when its first frame was queued
        first_audio = None if first_frame_at is None else max(first_frame_at, self.released_at or first_frame_at)
        return TurnLatency(
            turn=turn, why=self.end.why, speculative=self.speculative,
            endpoint_wait_ms=round((self.end.decided_at - origin) * 1000.0, 1),
            recognition_ms=round(self.end.recognition_s * 1000.0, 1),
            logic_first_ms=ms(self.logic_first_at), first_audio_ms=ms(first_audio), first_heard_ms=ms(heard_at),
        )


@dataclass(frozen=True, slots=True)
class FirstHeard:
    """An answered turn's start mark was heard."""

    turn: int
    at: float  # when the echo arrived
    mouth_to_ear_s: float  # the caller stopped speaking → the reply's first frame played
    latency: TurnLatency | None  # the stages, when the turn answered a TurnEnd


class LatencyBook:
    def __init__(self) -> None:
        self._origin: dict[int, float] = {}  # turn → when the caller stopped speaking
        self._start_marks: dict[str, int] = {}  # start mark → its turn, until heard
        self._timing: dict[int, _Timing] = {}  # answered turn → its latency so far

    def turn_started(self, turn: int, origin: float | None, answers: TurnEnd | None, held: bool) -> None:
        """Turn ``turn`` starts, answering the caller who stopped speaking at ``origin`` (None: not an answer to
        speech), after the caller turn ``answers`` (None: none known). ``held``: the speculative reply, timed
        only once :meth:`confirmed`."""
        if origin is not None:
            self._origin = {turn: origin}
        if held:
            self._origin.pop(turn, None)
        elif answers is not None and origin == answers.stopped_at:
            self._timing = {turn: _Timing(answers)}

    def start_mark(self, mark: str, turn: int) -> None:
        """``mark`` is sent before turn ``turn``'s first frame."""
        self._start_marks[mark] = turn

    def logic_output(self, turn: int, now: float) -> None:
        """The agent logic produced output for ``turn`` (only the first one counts)."""
        timing = self._timing.get(turn)
        if timing is not None and timing.logic_first_at is None:
            timing.logic_first_at = now

    def confirmed(self, turn: int, answers: TurnEnd, logic_first_at: float | None, now: float) -> None:
        """The speculative reply ``turn`` answers ``answers`` after all: its held audio is released ``now``."""
        self._origin[turn] = answers.stopped_at
        self._timing[turn] = _Timing(answers, True, logic_first_at, now)

    def forget(self, turn: int) -> list[str]:
        """Turn ``turn`` never happened (an abandoned speculative reply); returns its start marks."""
        self._origin.pop(turn, None)
        self._timing.pop(turn, None)
        marks = [m for m, t in self._start_marks.items() if t == turn]
        for mark in marks:
            del self._start_marks[mark]
        return marks

    def heard(self, mark: str, now: float, first_frame_at: float | None) -> FirstHeard | None:
        """Mark ``mark`` was heard ``now``; ``first_frame_at``: when its sentence's first frame was queued (when
        it is a start mark). Not None: it started an answer to the caller (reported once)."""
        turn = self._start_marks.pop(mark, None)
        if turn is None or turn not in self._origin:
            return None
        timing = self._timing.pop(turn, None)
        latency = None if timing is None else timing.record(turn, first_frame_at, now)
        return FirstHeard(turn, now, now - self._origin.pop(turn), latency)
