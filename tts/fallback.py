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

The decisions are :class:`tts.race.Race`'s (pure: events in, actions out, time
passed in); this module is the asyncio runner that carries them out: it runs
each attempt as a task, feeds the race what the tasks deliver and when its
timer is due, and turns its actions into task starts and cancellations,
yielded audio and restarts, logs and metrics.

Every sentence is logged with the provider that spoke it, why any fallback
happened and the gap it caused; ``voicegw_tts_*`` metrics are updated.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass

from audio.formats import AudioChunk
from tts.base import SynthesisRequest, TTSEngine, TTSError
from tts.breaker import BreakerRegistry
from tts.metrics import TTSMetrics
from tts.race import (
    Action,
    Cancel,
    CircuitOpened,
    Emit,
    Failed,
    Fallback,
    Finished,
    FirstAudio,
    Gap,
    Hedge,
    Race,
    Restart,
    Start,
)
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

    # ---- the sentence loop: an asyncio runner for tts.race.Race ------------------------------
    async def _speak(
        self, text: str, order: list[str], use_breakers: bool, language: str, priority: int,
        request_id: str, turn_id: str,
    ) -> AsyncIterator[SpeechAudio | SpeechRestart]:
        if not text.strip():
            return
        if not order:
            raise TTSError("all", "no TTS provider is configured and ready")
        race = Race(order, self.clock(), self.budget_s, self.give_up_s, self.breakers if use_breakers else None)
        events: asyncio.Queue[tuple[int, object]] = asyncio.Queue()
        tasks: dict[int, asyncio.Task[None]] = {}
        meta = {"turn_id": turn_id or request_id}

        def run(actions: list[Action]) -> Iterator[SpeechAudio | SpeechRestart | Finished]:
            """Carry out the race's actions; yields what the consumer must get (and the end)."""
            for action in actions:
                if isinstance(action, Start):
                    request = SynthesisRequest(
                        text=text, settings=self.config.section(action.provider), language=language,
                        priority=priority, deadline=action.deadline, request_id=request_id, meta=dict(meta),
                    )
                    engine = self.engines[action.provider]
                    tasks[action.attempt] = asyncio.create_task(
                        self._pump(action.attempt, action.provider, engine, request, events))
                elif isinstance(action, Cancel):
                    tasks[action.attempt].cancel()
                elif isinstance(action, Emit):
                    assert isinstance(chunk, AudioChunk)
                    yield SpeechAudio(chunk, action.provider)
                elif isinstance(action, Restart):
                    yield SpeechRestart(action.provider, action.reason)
                elif isinstance(action, Finished):
                    self._done(action, request_id)
                    yield action
                elif isinstance(action, Failed):
                    raise TTSError("all", action.reason)
                else:
                    self._observe(action)

        chunk: object = None
        try:
            for out in run(race.start()):
                if isinstance(out, Finished):
                    return
                yield out
            while True:
                if events.empty():  # queued events go before timers: audio that arrived is not a stall
                    wake = race.next_wake()
                    assert wake is not None
                    try:  # asyncio.timeout, not wait_for: 3.11's wait_for drops a cancel that meets an event
                        async with asyncio.timeout(max(0.0, wake - self.clock())):
                            attempt, chunk = await events.get()
                    except TimeoutError:
                        actions = race.timer(self.clock())
                        chunk = None
                    else:
                        actions = self._feed(race, attempt, chunk)
                else:
                    attempt, chunk = events.get_nowait()
                    actions = self._feed(race, attempt, chunk)
                for out in run(actions):
                    if isinstance(out, Finished):
                        return
                    yield out
        finally:
            for action in race.abandon(self.clock()):
                if isinstance(action, Cancel):
                    tasks[action.attempt].cancel()
            if tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*tasks.values(), return_exceptions=True)

    def _feed(self, race: Race, attempt: int, item: object) -> list[Action]:
        now = self.clock()
        if isinstance(item, AudioChunk):
            return race.audio(attempt, item.duration, now)
        if item is _END:
            return race.end(attempt, now)
        assert isinstance(item, TTSError)
        return race.error(attempt, item.reason, now)

    def _observe(self, action: Action) -> None:
        """Logs and metrics for the race's reports."""
        m = self.metrics
        if isinstance(action, Fallback):
            log.warning("tts %s: %s", action.provider, action.reason)
            if m:
                m.fallbacks.labels(action.provider, action.kind).inc()
        elif isinstance(action, Hedge):
            log.info("tts %s: no audio within %.0f ms, hedging with the next provider",
                     action.provider, action.budget_s * 1000)
        elif isinstance(action, CircuitOpened):
            log.warning("tts %s: circuit opened after repeated failures (%s)", action.provider, action.reason)
        elif isinstance(action, FirstAudio):
            if m:
                m.sentence_first_audio.labels(action.provider).observe(action.seconds)
        elif isinstance(action, Gap):
            if m:
                m.tts_fallback_gap.labels(action.provider).observe(action.seconds)

    def _done(self, f: Finished, request_id: str) -> None:
        chain = self.config.chain()
        if self.config.sticky_fallback and chain and f.provider != chain[0] and self.sticky != f.provider:
            self.sticky = f.provider
            log.info("tts: staying on %s for the rest of the call (sticky_fallback)", f.provider)
        report = SentenceReport(
            request_id=request_id, provider=f.provider, first_audio_s=f.first_audio_s,
            processing_s=f.processing_s, audio_s=f.audio_s, fallbacks=f.fallbacks, restarts=f.restarts,
            gap_s=f.gap_s,
        )
        self.reports.append(report)
        if self.metrics:
            self.metrics.tts_sentences.labels(f.provider).inc()
            self.metrics.tts_processing.labels(f.provider).observe(report.processing_s)
        rtf = report.processing_s / report.audio_s if report.audio_s > 0 else 0.0
        log.info(
            "tts sentence %s: provider=%s processing_ms=%.0f audio_ms=%.0f rtf=%.3f first_audio_ms=%.0f "
            "fallback=%s gap_ms=%.0f restarts=%d",
            request_id or "-", f.provider, report.processing_s * 1000, report.audio_s * 1000, rtf,
            report.first_audio_s * 1000, " | ".join(f.fallbacks) or "none", f.gap_s * 1000, f.restarts,
            extra={"provider": f.provider, "processing_ms": round(report.processing_s * 1000),
                   "audio_ms": round(report.audio_s * 1000), "rtf": round(rtf, 3),
                   "fallbacks": list(f.fallbacks), "gap_ms": round(f.gap_s * 1000)},
        )

    @staticmethod
    async def _pump(
        attempt: int, provider: str, engine: TTSEngine, request: SynthesisRequest,
        events: asyncio.Queue[tuple[int, object]],
    ) -> None:
        try:
            async for chunk in engine.synthesize(request):
                if chunk.num_samples:
                    events.put_nowait((attempt, chunk))
            events.put_nowait((attempt, _END))
        except TTSError as exc:
            events.put_nowait((attempt, exc))
        except Exception as exc:  # an engine bug must not end the call: it becomes a fallback reason
            log.exception("tts %s: unexpected engine error", provider)
            events.put_nowait((attempt, TTSError(provider, f"engine error: {exc!r}")))
