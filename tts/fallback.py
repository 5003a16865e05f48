"""Speak one sentence through the agent's provider chain.

Walking-skeleton version: providers are tried in order; a provider that fails
before producing audio is skipped; one that fails mid-sentence is followed by a
:class:`SpeechRestart` and the next provider speaks the whole sentence again.
(Deadline hedging and circuit breaking deepen this module.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from agents.spec import TTSConfig
from gateway.audio import AudioChunk
from gateway.metrics import Metrics
from tts.base import SynthesisRequest, TTSEngine, TTSError

log = logging.getLogger("voicegw.tts")


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    chunk: AudioChunk
    provider: str


@dataclass(frozen=True, slots=True)
class SpeechRestart:
    """Discard not-yet-played audio of this sentence; what follows restarts it."""

    provider: str
    reason: str


class Speaker:
    def __init__(
        self,
        engines: Mapping[str, TTSEngine],
        config: TTSConfig,
        metrics: Metrics | None = None,
        breakers: object | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engines = engines
        self.config = config
        self.metrics = metrics
        self.clock = clock

    def _settings(self, provider: str) -> object:
        return getattr(self.config, provider, None)

    async def speak(
        self, text: str, *, language: str = "en", priority: int = 1, request_id: str = "", turn_id: str = ""
    ) -> AsyncIterator[SpeechAudio | SpeechRestart]:
        reasons: list[str] = []
        for name in self.config.chain():
            engine = self.engines.get(name)
            if engine is None or not engine.ready:
                continue
            request = SynthesisRequest(
                text=text, settings=self._settings(name), language=language, priority=priority,
                request_id=request_id, meta={"turn_id": turn_id},
            )
            started = self.clock()
            produced = False
            try:
                async for chunk in engine.synthesize(request):
                    if not produced and self.metrics:
                        self.metrics.sentence_first_audio.labels(name).observe(self.clock() - started)
                    produced = True
                    yield SpeechAudio(chunk, name)
            except TTSError as exc:
                reasons.append(exc.reason)
                log.warning("tts %s failed on sentence %s: %s", name, request_id, exc.reason)
                if self.metrics:
                    self.metrics.fallbacks.labels(name, "error").inc()
                if produced:
                    yield SpeechRestart(name, exc.reason)
                continue
            if self.metrics:
                self.metrics.tts_sentences.labels(name).inc()
                self.metrics.tts_processing.labels(name).observe(self.clock() - started)
            return
        raise TTSError("all", "; ".join(reasons) or "no TTS provider is available")
