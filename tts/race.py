"""The per-sentence race between providers: who starts, who is cancelled, who speaks, when to restart.

Rules of this file: pure, sans-I/O. No asyncio, no clock (every method takes
``now``), no logging, no metrics. :class:`Race` is fed events about the
provider attempts of one sentence (:meth:`Race.audio`, :meth:`Race.end`,
:meth:`Race.error`, :meth:`Race.timer`) and answers with actions for the
runner (:class:`tts.fallback.Speaker`) to carry out, in order: start or
cancel an attempt, emit the audio just fed, tell the consumer to restart the
sentence, report a fallback, finish or fail. :meth:`Race.next_wake` says when
:meth:`Race.timer` is due. The circuit breakers (:mod:`tts.breaker`, pure too)
are consulted and updated here, with the same ``now``.

The policy, per sentence (docs/tts-fallback.md):

* providers are tried in order, skipping those whose breaker is open (all of
  them open: tried anyway);
* **hedging**: no audio within the budget → the next provider starts on the
  same sentence; the first to deliver audio owns the sentence, the others are
  cancelled (a loser that had missed its budget counts as a failure);
* an attempt that fails before any audio hands over at once;
* **restart, never splice**: if the owner fails or stalls (no new audio by the
  time what it delivered has played out, plus the budget) the consumer is told
  to restart and the next provider speaks the whole sentence; with no provider
  left to take over, the owner is given until ``give_up_s`` before it counts as
  stalled;
* an attempt with no audio at all after ``give_up_s`` is abandoned.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass, field

from tts.breaker import BreakerRegistry


# ---- actions (what the runner must do, in order) --------------------------------------------------
@dataclass(frozen=True, slots=True)
class Start:
    """Start attempt ``attempt`` of the sentence on ``provider``; ``deadline`` for engines with queues."""

    attempt: int
    provider: str
    deadline: float | None


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop attempt ``attempt`` (a no-op for one that already ended)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Emit:
    """Pass the audio chunk just fed for ``attempt`` to the consumer."""

    attempt: int
    provider: str


@dataclass(frozen=True, slots=True)
class Restart:
    """The consumer discards the sentence's unplayed audio: what follows restarts it from its start."""

    provider: str  # the provider that failed
    reason: str


@dataclass(frozen=True, slots=True)
class Fallback:
    """``provider`` was passed over for this sentence (``kind``: error, slow, stall, timeout, no_audio,
    circuit_open)."""

    provider: str
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class Hedge:
    """``provider`` has no audio within the budget: the next provider starts alongside it."""

    provider: str
    budget_s: float


@dataclass(frozen=True, slots=True)
class CircuitOpened:
    provider: str
    reason: str


@dataclass(frozen=True, slots=True)
class FirstAudio:
    """The sentence's first kept audio, ``seconds`` after it started."""

    provider: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Gap:
    """Silence a fallback caused before ``provider``'s audio."""

    provider: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Finished:
    """The sentence is complete, spoken by ``provider``."""

    provider: str
    first_audio_s: float
    processing_s: float
    audio_s: float
    fallbacks: tuple[str, ...]
    restarts: int
    gap_s: float


@dataclass(frozen=True, slots=True)
class Failed:
    """No provider could speak the sentence; ``reason`` lists every provider's."""

    reason: str


Action = Start | Cancel | Emit | Restart | Fallback | Hedge | CircuitOpened | FirstAudio | Gap | Finished | Failed


# ---- state ------------------------------------------------------------------------------------------
@dataclass(eq=False, slots=True)
class _Attempt:
    id: int
    provider: str
    started: float
    live: bool = True
    first_audio: float | None = None
    last_audio: float = 0.0
    audio_s: float = 0.0

    def horizon(self) -> float:
        """When the audio delivered so far has played out, if playout began at first audio."""
        assert self.first_audio is not None
        return max(self.first_audio + self.audio_s, self.last_audio)


@dataclass(eq=False)
class Race:
    """One sentence. ``breakers`` None: breakers are neither consulted nor updated (the apology)."""

    order: list[str]
    t0: float
    budget_s: float
    give_up_s: float
    breakers: BreakerRegistry | None = None
    pending: collections.deque[str] = field(init=False)
    attempts: dict[int, _Attempt] = field(init=False, default_factory=dict)
    owner: _Attempt | None = field(init=False, default=None)
    reasons: list[str] = field(init=False, default_factory=list)
    restarts: int = field(init=False, default=0)
    finished: bool = field(init=False, default=False)
    _skipped: list[str] = field(init=False, default_factory=list)
    _forced: bool = field(init=False, default=False)
    _silence_from: float | None = field(init=False, default=None)
    _gap_s: float = field(init=False, default=0.0)
    _first_audio_s: float | None = field(init=False, default=None)
    _ids: itertools.count[int] = field(init=False, default_factory=itertools.count)

    def __post_init__(self) -> None:
        if not self.order:
            raise ValueError("a race needs at least one provider")
        self.pending = collections.deque(self.order)

    # ---- events ---------------------------------------------------------------------------------
    def start(self) -> list[Action]:
        out: list[Action] = []
        self._start_next(self.t0, out)
        self._keep_running(self.t0, out)
        return out

    def audio(self, attempt: int, duration_s: float, now: float) -> list[Action]:
        """Attempt ``attempt`` delivered a chunk of ``duration_s`` seconds."""
        a = self.attempts[attempt]
        if not a.live or self.finished:
            return []  # a cancelled loser's late chunk
        out: list[Action] = []
        if self.owner is None:
            self._take_ownership(a, now, out)
        a.audio_s += duration_s
        a.last_audio = now
        out.append(Emit(a.id, a.provider))
        return out

    def end(self, attempt: int, now: float) -> list[Action]:
        """Attempt ``attempt`` finished its stream."""
        a = self.attempts[attempt]
        if not a.live or self.finished:
            return []
        out: list[Action] = []
        if a is self.owner:
            self._done(a, now, out)
            return out
        self._fail(a, now, "no_audio", "finished without audio", out)
        self._keep_running(now, out)
        return out

    def error(self, attempt: int, reason: str, now: float) -> list[Action]:
        """Attempt ``attempt`` raised (``reason`` is short and loggable)."""
        a = self.attempts[attempt]
        if not a.live or self.finished:
            return []
        out: list[Action] = []
        was_owner = a is self.owner
        self._fail(a, now, "error", reason, out)
        if was_owner:
            self.owner, self._silence_from = None, now
            self.restarts += 1
            out.append(Restart(a.provider, reason))
        self._keep_running(now, out)
        return out

    def timer(self, now: float) -> list[Action]:
        """Called at (or after) :meth:`next_wake`: stalls, give-ups and hedges."""
        if self.finished:
            return []
        out: list[Action] = []
        owner = self.owner
        if owner is not None:
            if now < owner.horizon() + self._stall_grace():
                return out
            reason = f"stalled mid-sentence ({now - owner.last_audio:.2f} s without audio)"
            horizon = owner.horizon()
            self._fail(owner, now, "stall", reason, out)
            self.owner, self._silence_from = None, horizon
            self.restarts += 1
            self._start_next(now, out)
            out.append(Restart(owner.provider, reason))
            self._keep_running(now, out)
            return out
        for a in self._live():
            if now >= a.started + self.give_up_s:
                self._fail(a, now, "timeout", f"no audio within {self.give_up_s:.1f} s", out)
        live = self._live()
        if self.pending and (not live or now >= max(a.started for a in live) + self.budget_s):
            if live:
                slow = max(live, key=lambda a: a.started)
                self.reasons.append(f"{slow.provider}: no audio within {self.budget_s * 1000:.0f} ms, hedging")
                out.append(Hedge(slow.provider, self.budget_s))
            self._start_next(now, out)
        self._keep_running(now, out)
        return out

    def abandon(self, now: float) -> list[Action]:
        """The consumer stopped (barge-in, hang-up) or the race ended: cancel whatever is still running."""
        out: list[Action] = []
        leftovers = [a for a in self._live() if a is not self.owner]
        if self.owner is not None and self.owner.live:
            leftovers.append(self.owner)
        for a in leftovers:
            a.live = False
            out.append(Cancel(a.id))
            if self.breakers is not None:
                self.breakers.get(a.provider).release(now)
        self.finished = True
        return out

    def next_wake(self) -> float | None:
        """When :meth:`timer` is due; None once the race is over."""
        if self.finished:
            return None
        if self.owner is not None:  # stall watch: silence beyond the audio delivered so far
            return self.owner.horizon() + self._stall_grace()
        live = self._live()
        if not live:
            return None
        wakes = [a.started + self.give_up_s for a in live]
        if self.pending:
            wakes.append(max(a.started for a in live) + self.budget_s)  # hedge timer
        return min(wakes)

    # ---- pieces ---------------------------------------------------------------------------------
    def _stall_grace(self) -> float:
        """Silence past the owner's delivered audio that counts as a stall.

        While another provider could take over, the first-audio budget. With none left, a restart could only
        end in the apology (spoken by the same last voice, if any): a slow last voice, such as Piper on a
        starved CPU, is given until ``give_up_s`` instead.
        """
        return self.budget_s if self.pending else max(self.budget_s, self.give_up_s)

    def _live(self) -> list[_Attempt]:
        return [a for a in self.attempts.values() if a.live]

    def _start_next(self, now: float, out: list[Action]) -> None:
        while self.pending:
            name = self.pending.popleft()
            if self.breakers is not None and not self._forced and not self.breakers.get(name).allow(now):
                self._skipped.append(name)
                self._fallback(name, "circuit_open", "circuit open", out)
                continue
            deadline = None if name == self.order[-1] else now + self.budget_s
            a = _Attempt(next(self._ids), name, now)
            self.attempts[a.id] = a
            out.append(Start(a.id, name, deadline))
            return
        if self._skipped and not self._forced and not self._live() and self.owner is None:
            self._forced = True  # every remaining provider is behind an open breaker: try them anyway
            self.pending.extend(self._skipped)
            self._start_next(now, out)

    def _keep_running(self, now: float, out: list[Action]) -> None:
        """Nothing running: start the next provider, or fail the sentence when none is left."""
        if self.finished or self._live():
            return
        if self.pending or (self._skipped and not self._forced):
            self._start_next(now, out)
        if not self._live():
            self.finished = True
            out.append(Failed("; ".join(self.reasons) or "no TTS provider is available"))

    def _fail(self, a: _Attempt, now: float, kind: str, reason: str, out: list[Action]) -> None:
        a.live = False
        out.append(Cancel(a.id))
        if self.breakers is not None and self.breakers.get(a.provider).record_failure(now, reason):
            out.append(CircuitOpened(a.provider, reason))
        self._fallback(a.provider, kind, reason, out)

    def _fallback(self, provider: str, kind: str, reason: str, out: list[Action]) -> None:
        self.reasons.append(f"{provider}: {reason}")
        out.append(Fallback(provider, kind, reason))

    def _take_ownership(self, a: _Attempt, now: float, out: list[Action]) -> None:
        self.owner = a
        a.first_audio = now
        if self._first_audio_s is None:
            self._first_audio_s = now - self.t0
            out.append(FirstAudio(a.provider, now - self.t0))
        silence_from = self._silence_from if self._silence_from is not None else (self.t0 if self.reasons else None)
        if silence_from is not None:
            gap = max(0.0, now - silence_from)
            self._gap_s += gap
            out.append(Gap(a.provider, gap))
            self._silence_from = None
        for loser in self._live():
            if loser is a:
                continue
            loser.live = False
            out.append(Cancel(loser.id))
            if self.breakers is not None:
                breaker = self.breakers.get(loser.provider)
                if loser.started < a.started and now - loser.started >= self.budget_s:
                    reason = f"slow (no audio in {self.budget_s * 1000:.0f} ms, lost to {a.provider})"
                    breaker.record_failure(now, reason)
                    self._fallback(loser.provider, "slow", reason, out)
                else:
                    breaker.release(now)

    def _done(self, owner: _Attempt, now: float, out: list[Action]) -> None:
        owner.live = False
        self.finished = True
        if self.breakers is not None:
            self.breakers.get(owner.provider).record_success(now)
        out.append(Finished(
            provider=owner.provider, first_audio_s=self._first_audio_s or 0.0, processing_s=now - self.t0,
            audio_s=owner.audio_s, fallbacks=tuple(self.reasons), restarts=self.restarts, gap_s=self._gap_s,
        ))
