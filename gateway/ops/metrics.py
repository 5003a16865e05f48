"""Prometheus metrics: every series the gateway exports (the speech layer's are in :mod:`tts.metrics`).

Rules of this file: definitions only; no I/O, no clock. Exposition (``/metrics``
or a separate port) lives in :mod:`gateway.app`. Each app instance gets its own
:class:`Metrics` (own registry) so tests and several in-process gateways never
share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tts.metrics import LATENCY_BUCKETS, TTSMetrics

_LAT = LATENCY_BUCKETS
# Frame lateness: fine below the 10 ms "audible risk" line so p99 can be read from the buckets.
_MS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.05, 0.1, 0.25)


class Metrics(TTSMetrics):
    """Every series the gateway exports: the speech layer's (:class:`TTSMetrics`) plus the call-level ones."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.active_calls = Gauge("voicegw_active_calls", "Calls in progress", ["agent"], registry=r)
        self.calls_total = Counter("voicegw_calls_total", "Calls by outcome", ["agent", "outcome"], registry=r)
        self.call_duration = Histogram(
            "voicegw_call_duration_seconds", "Call duration", ["agent"],
            buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600), registry=r,
        )
        self.webhook_rejected = Counter(
            "voicegw_webhook_rejected_total", "Webhook/stream requests rejected", ["reason"], registry=r
        )
        self.mouth_to_ear = Histogram(
            "voicegw_mouth_to_ear_seconds", "End of caller speech → first reply audio heard (mark echo)",
            ["agent"], buckets=_LAT, registry=r,
        )
        self.frames_sent = Counter("voicegw_frames_sent_total", "20 ms media frames sent", registry=r)
        self.underruns = Counter(
            "voicegw_underruns_total", "Times the lead at Twilio ran dry mid-utterance", registry=r
        )
        self.frame_lateness = Histogram(
            "voicegw_frame_lateness_seconds",
            "How late each write of audio (1 to VOICEGW_PLAYOUT_FRAMES_PER_WRITE frames) left after its first frame's "
            "pacing deadline",
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
        self.turn_stage = Histogram(
            "voicegw_turn_stage_seconds", "Per answered turn, seconds after the caller stopped speaking: "
            "endpoint_wait, recognition (compute), logic_first, first_audio, first_heard",
            ["agent", "stage"], buckets=_LAT, registry=r,
        )
        self.bounded = Counter(
            "voicegw_bounded_total", "Inputs dropped or refused by a bound (unknown_mark, dtmf, recording_jump, "
            "gateway_full, pending_streams)", ["what"], registry=r,
        )
        self.api_refused = Counter(
            "voicegw_api_refused_total", "Speech API requests refused before synthesis", ["reason"], registry=r
        )
        self.stt_seconds = Histogram(
            "voicegw_stt_seconds", "Speech-to-text time per utterance", buckets=_LAT, registry=r
        )
