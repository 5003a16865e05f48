"""Outbound pacing and the playout ledger: how fast to send, and what the caller has heard.

Rules of this file: pure. No asyncio, no clock: every method that needs the
time takes ``now`` (monotonic seconds). The I/O shell (:mod:`gateway.outbound`)
sleeps and writes; this file only decides and counts.

**Pacer.** Twilio plays what we send in order and buffers the rest (up to 10
minutes). ``horizon`` is the moment Twilio's buffer would run dry if we sent
nothing more. We keep ``horizon - now`` (the *lead*) at about ``lead_s``: a
frame may go while the lead is at most ``lead_s``, and then ``per_wake`` frames go
together (one write, one wake-up per ``per_wake`` frames), so the lead never exceeds
``lead_s + per_wake * frame_s``. If the sender stalls past the horizon the buffer ran dry
mid-utterance: that is an *underrun* (counted, with its gap); the horizon
restarts at ``now`` and the catch-up is a burst of at most ``max_burst``
frames, never more than the lead allows. A short lead keeps ``clear`` cheap
(little audio to drop) and wastes little TTS; a longer one absorbs event-loop
stalls. The end of an utterance (queue empty) is not an underrun.

**Ledger.** Each sentence is queued with a unique mark name. Twilio echoes a
mark when the audio before it has played, or at once when ``clear`` empties
its buffer. So: an echo before we sent ``clear`` = heard; a mark still pending
when we sent ``clear`` = cleared, whatever comes back later. Twilio plays in
order, so an echo also settles every earlier pending sentence as heard.
A sentence restarted after a ``clear`` (a provider died mid-sentence, see
:mod:`gateway.sentence_audio`) keeps its marks: :meth:`Ledger.resend` makes
the echo that ``clear`` provokes count for nothing, and the mark is sent again.
One ledger per call, shared by the call session and the conversation layer
(which tags entries with its own turn numbers).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

_EPS = 1e-9


class Pacer:
    def __init__(self, lead_s: float = 0.1, frame_s: float = 0.02, max_burst: int | None = None,
                 underrun_tolerance_s: float = 0.005, per_wake: int = 1) -> None:
        if lead_s < 0 or frame_s <= 0 or per_wake < 1:
            raise ValueError("lead_s must be >= 0, frame_s > 0 and per_wake >= 1")
        self.lead_s = lead_s
        self.frame_s = frame_s
        self.per_wake = per_wake
        # Most frames one `take` may return; default: what the lead holds (a full refill after a stall).
        self.max_burst = (max_burst if max_burst is not None
                          else int(math.floor(lead_s / frame_s + _EPS)) + per_wake)
        if self.max_burst < 1:
            raise ValueError("max_burst must be >= 1")
        self.underrun_tolerance_s = underrun_tolerance_s
        self.horizon = 0.0  # when Twilio's buffer runs dry
        self.streaming = False  # frames sent since the last end of utterance / clear
        self.frames_sent = 0
        self.underruns = 0
        self.underrun_gaps: list[float] = []  # seconds of silence the caller heard, per underrun
        self.last_lateness: float | None = None  # last take() mid-utterance: how late the sender woke
        self.max_lateness = 0.0

    def buffered(self, now: float) -> float:
        """Seconds of audio still queued at Twilio (the lead)."""
        return max(0.0, self.horizon - now)

    def take(self, now: float, queued: int) -> int:
        """How many of the ``queued`` frames to send now; the caller sends exactly that many."""
        if queued <= 0:
            return 0
        late = now - self.next_send_at()  # how late we woke, stall included (reported mid-utterance only)
        if self.horizon < now:
            gap = now - self.horizon
            if self.streaming and gap > self.underrun_tolerance_s:
                self.underruns += 1
                self.underrun_gaps.append(gap)
            self.horizon = now
        room = self.lead_s - (self.horizon - now)
        if room < -_EPS:
            return 0
        n = min(queued, self.max_burst, int(math.floor(room / self.frame_s + _EPS)) + self.per_wake)
        if self.streaming:
            self.last_lateness = max(0.0, late)
            self.max_lateness = max(self.max_lateness, self.last_lateness)
        self.horizon += n * self.frame_s
        self.frames_sent += n
        self.streaming = True
        return n

    def next_send_at(self) -> float:
        """Earliest time the next frame may go (the lead has dropped to ``lead_s``)."""
        return self.horizon - self.lead_s

    def end_of_audio(self) -> None:
        """The queue ran empty on purpose (sentence or turn done): the coming silence is not an underrun."""
        self.streaming = False

    def reset(self, now: float) -> None:
        """After ``clear``: Twilio's buffer is empty now."""
        self.horizon = now
        self.streaming = False


class SentenceState(enum.Enum):
    QUEUED = "queued"  # audio queued locally or at Twilio, mark not echoed yet
    HEARD = "heard"  # mark echoed before any clear: the caller heard it all
    CLEARED = "cleared"  # dropped by clear (locally or at Twilio) before playing out


@dataclass(slots=True)
class _Entry:
    mark: str
    text: str
    turn: int
    state: SentenceState = SentenceState.QUEUED
    mark_sent: bool = False
    ignore_echoes: int = 0  # echoes provoked by a restart's clear (the mark is sent again)


@dataclass(frozen=True, slots=True)
class Echo:
    """What a mark echo meant."""

    mark: str
    heard: tuple[str, ...]  # marks this echo settled as heard (itself and earlier pending ones), in order
    known: bool  # False: a mark we never sent (logged by the caller)
    after_clear: bool  # an echo of a mark that clear had already settled (not played)


@dataclass(slots=True)
class Ledger:
    _entries: dict[str, _Entry] = field(default_factory=dict)  # insertion order = playout order
    clears: int = 0
    unknown_echoes: int = 0

    def queue(self, mark: str, text: str, turn: int = 0) -> None:
        """A sentence whose audio (then ``mark``) is queued for sending."""
        if mark in self._entries:
            raise ValueError(f"mark {mark!r} already used in this call")
        self._entries[mark] = _Entry(mark, text, turn)

    def mark_sent(self, mark: str) -> None:
        entry = self._entries.get(mark)
        if entry is not None:
            entry.mark_sent = True

    def echoed(self, mark: str) -> Echo:
        entry = self._entries.get(mark)
        if entry is None:
            self.unknown_echoes += 1
            return Echo(mark, (), known=False, after_clear=False)
        if entry.state is SentenceState.CLEARED:
            return Echo(mark, (), known=True, after_clear=True)
        if entry.ignore_echoes:
            entry.ignore_echoes -= 1
            return Echo(mark, (), known=True, after_clear=True)
        if entry.state is SentenceState.HEARD:
            return Echo(mark, (), known=True, after_clear=False)
        settled: list[str] = []
        for e in self._entries.values():
            if e.state is SentenceState.QUEUED and e.mark_sent:
                e.state = SentenceState.HEARD
                settled.append(e.mark)
            if e is entry:
                break
        if not settled or settled[-1] != mark:  # echo of a mark not recorded as sent: trust Twilio
            entry.state = SentenceState.HEARD
            settled.append(mark)
        return Echo(mark, tuple(settled), known=True, after_clear=False)

    def resend(self, mark: str) -> bool:
        """A restart's ``clear`` is about to be sent with ``mark`` pending at Twilio: its provoked echo is
        ignored and the mark will be sent again. False (nothing to do) if it is not sent-and-pending."""
        entry = self._entries.get(mark)
        if entry is None or entry.state is not SentenceState.QUEUED or not entry.mark_sent:
            return False
        entry.mark_sent = False
        entry.ignore_echoes += 1
        return True

    def unplayed_sent(self, exclude: str | None = None) -> list[str]:
        """Marks sent to Twilio and not echoed yet (their audio may still be playing)."""
        return [e.mark for e in self._entries.values()
                if e.state is SentenceState.QUEUED and e.mark_sent and e.mark != exclude]

    def replace_text(self, mark: str, text: str) -> None:
        """The sentence was replaced (e.g. by the apology): ``heard_text`` reports what was really said."""
        entry = self._entries.get(mark)
        if entry is not None:
            entry.text = text

    def cleared(self, turn: int | None = None) -> list[str]:
        """``clear`` was sent (or queued audio dropped): every pending sentence is cleared. Returns their marks."""
        self.clears += 1
        gone = [e.mark for e in self._entries.values()
                if e.state is SentenceState.QUEUED and (turn is None or e.turn == turn)]
        for mark in gone:
            self._entries[mark].state = SentenceState.CLEARED
        return gone

    def _marks(self, state: SentenceState, turn: int | None) -> list[str]:
        return [e.mark for e in self._entries.values() if e.state is state and (turn is None or e.turn == turn)]

    def heard(self, turn: int | None = None) -> list[str]:
        return self._marks(SentenceState.HEARD, turn)

    def queued(self, turn: int | None = None) -> list[str]:
        return self._marks(SentenceState.QUEUED, turn)

    def cleared_marks(self, turn: int | None = None) -> list[str]:
        return self._marks(SentenceState.CLEARED, turn)

    def state(self, mark: str) -> SentenceState | None:
        entry = self._entries.get(mark)
        return entry.state if entry is not None else None

    def heard_text(self, turn: int | None = None) -> str:
        return " ".join(self._entries[m].text for m in self.heard(turn) if self._entries[m].text)

    def outstanding(self, turn: int | None = None) -> int:
        return len(self.queued(turn))

    def forget_before(self, turn: int) -> None:
        """Drop settled sentences of turns before ``turn`` (bounded memory on long calls)."""
        self._entries = {m: e for m, e in self._entries.items()
                         if e.turn >= turn or e.state is SentenceState.QUEUED}
