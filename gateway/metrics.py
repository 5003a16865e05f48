"""Prometheus metrics: every series the gateway exports, defined in one place.

Rules of this file: definitions only; no I/O, no clock. Exposition (``/metrics``
or a separate port) lives in :mod:`gateway.app`. Each app instance gets its own
:class:`Metrics` (own registry) so tests and several in-process gateways never
share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LAT = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
# Frame lateness: fine below the 10 ms "audible risk" line so p99 can be read from the buckets.
_MS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.05, 0.1, 0.25)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.active_calls = Gauge("voicegw_active_calls", "Calls in progress", ["agent"], registry=r)
        self.calls_total = Counter("voicegw_calls_total", "Calls by outcome", ["agent", "outcome"], registry=r)
        self.call_duration = Histogram(
            "voicegw_call_duration_seconds", "Call duration", ["agent"],
            buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600), registry=r,
        )
        self.webhook_rejected = Counter(
            "voicegw_webhook_rejected_total", "Webhook/stream requests rejected", ["reason"], registry=r
        )
        self.sentence_first_audio = Histogram(
            "voicegw_sentence_first_audio_seconds", "Sentence text ready → first audio from the engine",
            ["provider"], buckets=_LAT, registry=r,
        )
        self.mouth_to_ear = Histogram(
            "voicegw_mouth_to_ear_seconds", "End of caller speech → first reply audio heard (mark echo)",
            ["agent"], buckets=_LAT, registry=r,
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
        self.frames_sent = Counter("voicegw_frames_sent_total", "20 ms media frames sent", registry=r)
        self.underruns = Counter(
            "voicegw_underruns_total", "Times the lead at Twilio ran dry mid-utterance", registry=r
        )
        self.frame_lateness = Histogram(
            "voicegw_frame_lateness_seconds", "How late a frame left relative to its pacing deadline",
            buckets=_MS, registry=r,
        )
        self.protocol_errors = Counter(
            "voicegw_protocol_errors_total", "Malformed Twilio messages", ["kind"], registry=r
        )
        self.barge_ins = Counter("voicegw_barge_ins_total", "Caller interruptions", ["agent"], registry=r)
        self.redis_up = Gauge("voicegw_redis_up", "1 when the settings store is reachable", registry=r)
        self.phrase_cache = Counter(
            "voicegw_phrase_cache_total", "Fixed-phrase sentences served from the cache (hit) or synthesized (miss)",
            ["result"], registry=r,
        )
        self.stt_seconds = Histogram(
            "voicegw_stt_seconds", "Speech-to-text time per utterance", buckets=_LAT, registry=r
        )
