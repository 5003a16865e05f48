"""Prometheus series of the speech layer: synthesis time, real-time factor, fallbacks, ChatTTS batching.

Rules of this file: definitions only; no I/O, no clock. The gateway's
:class:`gateway.ops.metrics.Metrics` extends this class with the call-level
series, so one registry holds both and engines only see the series they record.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_LAT = LATENCY_BUCKETS


class TTSMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.sentence_first_audio = Histogram(
            "voicegw_sentence_first_audio_seconds", "Sentence text ready → first audio from the engine",
            ["provider"], buckets=_LAT, registry=r,
        )
        self.tts_processing = Histogram(
            "voicegw_tts_processing_seconds", "TTS processing time per sentence", ["provider"],
            buckets=_LAT, registry=r,
        )
        self.tts_rtf = Histogram(
            "voicegw_tts_rtf", "TTS real-time factor per sentence (processing / audio)", ["provider"],
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0), registry=r,
        )
        self.tts_sentences = Counter(
            "voicegw_tts_sentences_total", "Sentences spoken by provider", ["provider"], registry=r
        )
        self.chattts_queue_wait = Histogram(
            "voicegw_chattts_queue_wait_seconds", "ChatTTS queue wait", buckets=_LAT, registry=r
        )
        self.chattts_batch_size = Histogram(
            "voicegw_chattts_batch_size", "ChatTTS batch size", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
            registry=r,
        )
        self.fallbacks = Counter(
            "voicegw_tts_fallbacks_total", "TTS fallbacks", ["from_provider", "reason"], registry=r
        )
        self.tts_fallback_gap = Histogram(
            "voicegw_tts_fallback_gap_seconds",
            "Silence a TTS fallback caused: sentence start or failure → first audio of the provider that took over",
            ["provider"], buckets=_LAT, registry=r,
        )
