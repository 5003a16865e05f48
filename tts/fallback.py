"""Speak one sentence through the agent's provider chain: hedging, restart, breakers, stickiness.

The sentence is the unit of work. Per sentence:

* Providers are tried in the agent's order (``TTSConfig.chain()``), skipping
  engines that are missing, not ``ready``, or whose circuit breaker is open
  (when every breaker is open the chain is tried as is: a breaker saves time,
  it is never a reason to stay silent).
* **Hedging.** If the running provider has produced no audio within
  ``first_audio_budget_ms``, the next provider starts on the same sentence in
  parallel; whichever delivers audio first owns the sentence and the others
  are cancelled. A provider that fails before any audio hands over at once.
* **Restart, never splice.** If the owner fails mid-sentence (raises, or
  stalls: no new audio by the time what it delivered has played out, plus the
  budget) a :class:`SpeechRestart` is emitted and the next provider speaks the
  *whole* sentence from its start. The consumer discards what it had not yet
  played of that sentence. A sentence completes exactly once.
* **Breakers** (one :class:`~tts.breaker.BreakerRegistry` per process) count
  errors, stalls and lost races after a missed budget; a half-open breaker
  lets one real sentence through as the probe (still protected by hedging).
* **Stickiness** (``sticky_fallback``): once a fallback provider has spoken a
  sentence, this Speaker (one per call) starts with it from then on.

Every sentence is logged with the provider that spoke it, why any fallback
happened and the gap it caused; ``voicegw_tts_*`` metrics are updated.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from audio.formats import AudioChunk
from tts.base import SynthesisRequest, TTSEngine, TTSError
from tts.breaker import BreakerRegistry
from tts.metrics import TTSMetrics
from tts.registry import TTSConfigBase

log = logging.getLogger("voicegw.tts")

#: A provider that has produced no audio at all after this long is abandoned (even the last one).
GIVE_UP_S = 8.0


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    chunk: AudioChunk
    provider: str


@dataclass(frozen=True, slots=True)
class SpeechRestart:
    """Discard not-yet-played audio of this sentence; what follows restarts it from its start."""

    provider: str  # the provider that failed
    reason: str


@dataclass(frozen=True, slots=True)
class SentenceReport:
    """What happened to one sentence (also logged)."""

    request_id: str
    provider: str  # who spoke it
    first_audio_s: float  # sentence start → first audio that was kept
    processing_s: float  # sentence start → last audio
    audio_s: float  # duration of the audio that was kept
    fallbacks: tuple[str, ...] = ()  # "chattts: slow (no audio in 400 ms)", ...
    restarts: int = 0
    gap_s: float = 0.0  # silence caused by fallbacks (0 when the first provider spoke it)


_END = object()


@dataclass(eq=False, slots=True)
class _Attempt:
    provider: str
    started: float
    task: asyncio.Task[None] | None = None
    live: bool = True
    first_audio: float | None = None
    last_audio: float = 0.0
    audio_s: float = 0.0

    def horizon(self) -> float:
        """When the audio delivered so far has played out, if playout began at first audio."""
        assert self.first_audio is not None
        return max(self.first_audio + self.audio_s, self.last_audio)


@dataclass(slots=True)
class _Sentence:
    """Book-keeping for one ``speak`` call."""

    t0: float
    pending: collections.deque[str]
    skipped: list[str] = field(default_factory=list)
    forced: bool = False
    attempts: list[_Attempt] = field(default_factory=list)
    owner: _Attempt | None = None
    reasons: list[str] = field(default_factory=list)
    restarts: int = 0
    silence_from: float | None = None  # start of the silence a fallback is causing
    gap_s: float = 0.0
    first_audio_s: float | None = None

    def live(self) -> list[_Attempt]:
        return [a for a in self.attempts if a.live]


class Speaker:
    """One per call (stickiness is per call); engines and breakers are shared by the process."""

    def __init__(
        self,
        engines: Mapping[str, TTSEngine],
        config: TTSConfigBase,
        metrics: TTSMetrics | None = None,
        breakers: BreakerRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engines = engines
        self.config = config
        self.metrics = metrics
        self.breakers = breakers if breakers is not None else BreakerRegistry()
        self.clock = clock
        self.budget_s = config.first_audio_budget_ms / 1000.0
        self.give_up_s = GIVE_UP_S
        self.sticky: str | None = None
        self.reports: collections.deque[SentenceReport] = collections.deque(maxlen=500)

    # ---- public ----------------------------------------------------------
    def order(self) -> list[str]:
        """Usable providers for the next sentence, in the order they will be tried."""
        chain = [p for p in self.config.chain() if (e := self.engines.get(p)) is not None and e.ready]
        if self.sticky in chain:
            i = chain.index(self.sticky)
            chain = chain[i:] + chain[:i]
        return chain

    def speak(
        self, text: str, *, language: str = "en", priority: int = 1, request_id: str = "", turn_id: str = ""
    ) -> AsyncIterator[SpeechAudio | SpeechRestart]:
        """Audio for one sentence; raises ``TTSError("all", reasons)`` when every provider failed."""
        return self._speak(text, self.order(), True, language, priority, request_id, turn_id)

    def apologize(self, text: str, *, language: str = "en", request_id: str = "apology") -> AsyncIterator[
        SpeechAudio | SpeechRestart
    ]:
        """Last words when :meth:`speak` failed: the agent's ``last_resort`` first, breakers ignored, then
        anything ready."""
        first = [self.config.last_resort] if self.config.last_resort else []
        chain = [p for p in (*first, *self.config.chain()) if (e := self.engines.get(p)) is not None and e.ready]
        return self._speak(text, list(dict.fromkeys(chain)), False, language, 0, request_id, "")

    # ---- the sentence loop -----------------------------------------------
    async def _speak(
        self, text: str, order: list[str], use_breakers: bool, language: str, priority: int,
        request_id: str, turn_id: str,
    ) -> AsyncIterator[SpeechAudio | SpeechRestart]:
        if not text.strip():
            return
        if not order:
            raise TTSError("all", "no TTS provider is configured and ready")
        s = _Sentence(t0=self.clock(), pending=collections.deque(order))
        events: asyncio.Queue[tuple[_Attempt, object]] = asyncio.Queue()
        meta = {"turn_id": turn_id or request_id}
        last_provider = order[-1]

        def start_next(now: float) -> None:
            while s.pending:
                name = s.pending.popleft()
                if use_breakers and not s.forced and not self.breakers.get(name).allow(now):
                    s.skipped.append(name)
                    self._fallback(s, name, "circuit_open", "circuit open")
                    continue
                deadline = None if name == last_provider else now + self.budget_s
                request = SynthesisRequest(
                    text=text, settings=self.config.section(name), language=language, priority=priority,
                    deadline=deadline, request_id=request_id, meta=dict(meta),
                )
                attempt = _Attempt(name, now)
                attempt.task = asyncio.create_task(self._pump(attempt, self.engines[name], request, events))
                s.attempts.append(attempt)
                return
            if s.skipped and not s.forced and not s.live() and s.owner is None:
                s.forced = True  # every remaining provider is behind an open breaker: try them anyway
                s.pending.extend(s.skipped)
                start_next(now)

        def fail(attempt: _Attempt, now: float, kind: str, reason: str) -> None:
            attempt.live = False
            if attempt.task is not None:
                attempt.task.cancel()
            if use_breakers and self.breakers.get(attempt.provider).record_failure(now, reason):
                log.warning("tts %s: circuit opened after repeated failures (%s)", attempt.provider, reason)
            self._fallback(s, attempt.provider, kind, reason)

        try:
            start_next(s.t0)
            while True:
                if not s.live():
                    if s.pending or (s.skipped and not s.forced):
                        start_next(self.clock())
                    if not s.live():
                        raise TTSError("all", "; ".join(s.reasons) or "no TTS provider is available")
                if events.empty():  # queued events go before timers: audio that arrived is not a stall
                    try:
                        wait = max(0.0, self._next_wake(s) - self.clock())
                        attempt, item = await asyncio.wait_for(events.get(), wait)
                    except TimeoutError:
                        restart = self._on_timer(s, self.clock(), start_next, fail)
                        if restart is not None:
                            yield restart
                        continue
                else:
                    attempt, item = events.get_nowait()
                now = self.clock()
                if not attempt.live:
                    continue  # a cancelled loser's late event
                if isinstance(item, AudioChunk):
                    if s.owner is None:
                        self._take_ownership(s, attempt, now, use_breakers)
                    attempt.audio_s += item.duration
                    attempt.last_audio = now
                    yield SpeechAudio(item, attempt.provider)
                elif item is _END:
                    if attempt is s.owner:
                        self._done(s, attempt, now, request_id, use_breakers)
                        return
                    fail(attempt, now, "no_audio", "finished without audio")
                else:
                    assert isinstance(item, TTSError)
                    was_owner = attempt is s.owner
                    fail(attempt, now, "error", item.reason)
                    if was_owner:
                        s.owner, s.silence_from = None, now
                        s.restarts += 1
                        yield SpeechRestart(attempt.provider, item.reason)
        finally:
            leftovers = [a for a in s.attempts if a.live and a is not s.owner] + (
                [s.owner] if s.owner is not None and s.owner.live else []
            )
            for a in leftovers:
                a.live = False
                if a.task is not None:
                    a.task.cancel()
                if use_breakers:
                    self.breakers.get(a.provider).release(self.clock())
            tasks = [a.task for a in s.attempts if a.task is not None]
            if tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*tasks, return_exceptions=True)

    # ---- pieces of the loop ------------------------------------------------
    def _next_wake(self, s: _Sentence) -> float:
        if s.owner is not None:  # stall watch: silence beyond the audio delivered so far
            return s.owner.horizon() + self.budget_s
        live = s.live()
        wakes = [a.started + self.give_up_s for a in live]
        if s.pending and live:
            wakes.append(max(a.started for a in live) + self.budget_s)  # hedge timer
        return min(wakes)

    def _on_timer(
        self, s: _Sentence, now: float, start_next: Callable[[float], None],
        fail: Callable[[_Attempt, float, str, str], None],
    ) -> SpeechRestart | None:
        owner = s.owner
        if owner is not None:
            if now < owner.horizon() + self.budget_s:
                return None
            reason = f"stalled mid-sentence ({now - owner.last_audio:.2f} s without audio)"
            horizon = owner.horizon()
            fail(owner, now, "stall", reason)
            s.owner, s.silence_from = None, horizon
            s.restarts += 1
            start_next(now)
            return SpeechRestart(owner.provider, reason)
        for a in s.live():
            if now >= a.started + self.give_up_s:
                fail(a, now, "timeout", f"no audio within {self.give_up_s:.1f} s")
        live = s.live()
        if s.pending and (not live or now >= max(a.started for a in live) + self.budget_s):
            if live:
                slow = max(live, key=lambda a: a.started)
                s.reasons.append(f"{slow.provider}: no audio within {self.budget_s * 1000:.0f} ms, hedging")
                log.info("tts %s: no audio within %.0f ms, hedging with the next provider",
                         slow.provider, self.budget_s * 1000)
            start_next(now)
        return None

    def _take_ownership(self, s: _Sentence, attempt: _Attempt, now: float, use_breakers: bool) -> None:
        s.owner = attempt
        attempt.first_audio = now
        if s.first_audio_s is None:
            s.first_audio_s = now - s.t0
            if self.metrics:
                self.metrics.sentence_first_audio.labels(attempt.provider).observe(now - s.t0)
        silence_from = s.silence_from if s.silence_from is not None else (s.t0 if s.reasons else None)
        if silence_from is not None:
            gap = max(0.0, now - silence_from)
            s.gap_s += gap
            if self.metrics:
                self.metrics.tts_fallback_gap.labels(attempt.provider).observe(gap)
            s.silence_from = None
        for loser in s.live():
            if loser is attempt:
                continue
            loser.live = False
            if loser.task is not None:
                loser.task.cancel()
            if use_breakers:
                breaker = self.breakers.get(loser.provider)
                if loser.started < attempt.started and now - loser.started >= self.budget_s:
                    reason = f"slow (no audio in {self.budget_s * 1000:.0f} ms, lost to {attempt.provider})"
                    breaker.record_failure(now, reason)
                    self._fallback(s, loser.provider, "slow", reason)
                else:
                    breaker.release(now)

    def _done(self, s: _Sentence, owner: _Attempt, now: float, request_id: str, use_breakers: bool) -> None:
        owner.live = False
        if use_breakers:
            self.breakers.get(owner.provider).record_success(now)
        chain = self.config.chain()
        if self.config.sticky_fallback and chain and owner.provider != chain[0] and self.sticky != owner.provider:
            self.sticky = owner.provider
            log.info("tts: staying on %s for the rest of the call (sticky_fallback)", owner.provider)
        report = SentenceReport(
            request_id=request_id, provider=owner.provider, first_audio_s=s.first_audio_s or 0.0,
            processing_s=now - s.t0, audio_s=owner.audio_s, fallbacks=tuple(s.reasons), restarts=s.restarts,
            gap_s=s.gap_s,
        )
        self.reports.append(report)
        if self.metrics:
            self.metrics.tts_sentences.labels(owner.provider).inc()
            self.metrics.tts_processing.labels(owner.provider).observe(report.processing_s)
        rtf = report.processing_s / report.audio_s if report.audio_s > 0 else 0.0
        log.info(
            "tts sentence %s: provider=%s processing_ms=%.0f audio_ms=%.0f rtf=%.3f first_audio_ms=%.0f "
            "fallback=%s gap_ms=%.0f restarts=%d",
            request_id or "-", owner.provider, report.processing_s * 1000, report.audio_s * 1000, rtf,
            report.first_audio_s * 1000, " | ".join(s.reasons) or "none", s.gap_s * 1000, s.restarts,
            extra={"provider": owner.provider, "processing_ms": round(report.processing_s * 1000),
                   "audio_ms": round(report.audio_s * 1000), "rtf": round(rtf, 3),
                   "fallbacks": list(s.reasons), "gap_ms": round(s.gap_s * 1000)},
        )

    def _fallback(self, s: _Sentence, provider: str, kind: str, reason: str) -> None:
        s.reasons.append(f"{provider}: {reason}")
        log.warning("tts %s: %s", provider, reason)
        if self.metrics:
            self.metrics.fallbacks.labels(provider, kind).inc()

    @staticmethod
    async def _pump(
        attempt: _Attempt, engine: TTSEngine, request: SynthesisRequest,
        events: asyncio.Queue[tuple[_Attempt, object]],
    ) -> None:
        try:
            async for chunk in engine.synthesize(request):
                if chunk.num_samples:
                    events.put_nowait((attempt, chunk))
            events.put_nowait((attempt, _END))
        except TTSError as exc:
            events.put_nowait((attempt, exc))
        except Exception as exc:  # an engine bug must not end the call: it becomes a fallback reason
            log.exception("tts %s: unexpected engine error", attempt.provider)
            events.put_nowait((attempt, TTSError(attempt.provider, f"engine error: {exc!r}")))
