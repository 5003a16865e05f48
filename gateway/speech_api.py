"""The synthesis endpoint: ``POST /v1/audio/speech`` and ``GET /v1/voices``, compatible with ChatTTS servers.

Accepts the ChatTTS server API's JSON exactly (:mod:`tts.chattts_protocol`: ``text``, ``voice``,
``speed``, ``temperature``, ``top_p``, ``top_k``, ``response_format``, ``use_refine``)
and OpenAI's ``input``/``model``. Every request runs through the same
fallback policy as calls (ChatTTS → Cartesia → Piper, hedged per sentence,
shared breakers); each ChatTTS preset maps to a Cartesia voice and a Piper
voice (``tts/data/voices.json`` or ``VOICEGW_VOICES_FILE``).

Response headers: ``X-Processing-Time`` (s), ``X-RTF`` (processing / audio),
``X-Audio-Duration`` (s), ``X-Sample-Rate``, ``X-TTS-Provider`` (the provider
of each sentence, comma-separated, deduplicated in order) and, when a
fallback happened, ``X-TTS-Fallback`` (the reasons).
"""

from __future__ import annotations

import json
import logging
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.auth import open_api_refusal, operator_key_ok
from gateway.http_limits import SPEECH_MAX_BODY, BodyError, read_body
from gateway.services import Services
from gateway.speech_stream import PCMStreamResponse
from tts.base import TTSError
from tts.breaker import BreakerRegistry
from tts.chattts_protocol import read_hints
from tts.fallback import Speaker
from tts.render import API_PRIORITY, FORMATS, MEDIA_TYPES, OUTPUT_RATE, encode_off_loop, mp3_available, render
from tts.settings import CHATTTS_PRESETS, CartesiaVoice, ChatTTSPreset, ChatTTSVoice, PiperVoice, TTSConfig

log = logging.getLogger("voicegw.tts.api")

MAX_TEXT_CHARS = 4000


class SpeechRequest(BaseModel):
    """The ChatTTS server API's request body (plus OpenAI's ``input`` and ``model``); unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    text: str | None = None
    input: str | None = None
    model: str | None = None
    voice: ChatTTSPreset = "female_1"
    speed: float = Field(default=1.0, ge=0.5, le=2.0)
    temperature: float = Field(default=0.3, ge=0.1, le=1.0)
    top_p: float = Field(default=0.7, ge=0.1, le=1.0)
    top_k: int = Field(default=20, ge=1, le=100)
    response_format: str = "wav"
    use_refine: bool = False
    #: A whole voice (an agent's ``tts`` section: chain and per-provider settings), as the console's
    #: "Play sample" sends it; when given, ``voice``/``speed``/... are not used.
    tts: TTSConfig | None = None


def load_voice_map(path: Path | None = None) -> dict[str, dict[str, str]]:
    """Preset → {"cartesia": voice id, "piper": voice}; raises ValueError naming what is wrong."""
    raw = path.read_text() if path else resources.files("tts").joinpath("data/voices.json").read_text()
    data = json.loads(raw)
    out: dict[str, dict[str, str]] = {}
    for preset in CHATTTS_PRESETS:
        entry = data.get(preset)
        if not isinstance(entry, dict) or not entry.get("cartesia") or not entry.get("piper"):
            raise ValueError(f"{path or 'voices.json'}: {preset}: needs 'cartesia' and 'piper' voices")
        out[preset] = {"cartesia": str(entry["cartesia"]), "piper": str(entry["piper"])}
    return out


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"message": message, "type": "invalid_request_error" if status < 500 else "server_error"}
    if field:
        body["field"] = field
    body.update(extra)
    return JSONResponse({"error": body}, status_code=status)


def _field_error(exc: ValidationError) -> JSONResponse:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
    message = f"{field}: {err['msg']}"
    if field == "voice":
        message = f"voice: unknown voice {err.get('input')!r}; known: {', '.join(CHATTTS_PRESETS)}"
    return _error(400, message, field)


class _Busy:
    """A non-blocking counter of requests in progress (the event loop is single-threaded: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


def speech_routes(services: Services) -> list[BaseRoute]:
    """The speech API's routes (mounted by :func:`gateway.app.create_app`); shares engines, metrics and breakers
    with calls."""
    voices = load_voice_map(services.settings.voices_file)
    if services.breakers is None:
        services.breakers = BreakerRegistry()
    breakers = services.breakers

    settings = services.settings
    # At most this many requests synthesize at once; the rest are refused at once, never queued (issue 15).
    busy = _Busy(settings.api_max_concurrent)

    def refused(request: Request) -> Response | None:
        refusal = open_api_refusal(settings.host, settings.api_key, settings.allow_open_api)
        if refusal is not None:
            return _error(403, refusal)
        if not operator_key_ok(request.headers.get("authorization"), settings.api_key):
            return _error(401, "missing or invalid bearer token (VOICEGW_API_KEY)")
        return None

    async def speech(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        if not busy.enter():
            services.metrics.api_refused.labels("busy").inc()
            return JSONResponse({"error": {"message": f"busy: {busy.limit} speech requests in progress "
                                           "(VOICEGW_API_MAX_CONCURRENT); retry shortly", "type": "rate_limit_error"}},
                                status_code=429, headers={"Retry-After": "1"})
        try:
            return await _speech(request)
        finally:
            busy.leave()

    async def _speech(request: Request) -> Response:
        try:
            payload = json.loads(await read_body(request, SPEECH_MAX_BODY))
        except BodyError as exc:
            return _error(exc.status, f"body: {exc.message}", "body")
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
            return _error(400, "body: not valid JSON", "body")
        if not isinstance(payload, dict):
            return _error(400, "body: expected a JSON object", "body")
        try:
            body = SpeechRequest.model_validate(payload)
        except ValidationError as exc:
            return _field_error(exc)
        field = "text" if body.text is not None else "input"
        text = (body.text if body.text is not None else body.input or "").strip()
        if not text:
            return _error(400, f"{field}: must not be empty", field)
        if len(text) > MAX_TEXT_CHARS:
            return _error(400, f"{field}: too long ({len(text)} characters, at most {MAX_TEXT_CHARS})", field)
        hints = read_hints(request.headers)
        if hints.stream:  # X-Audio-Stream: pcm_s16le (the remote ChatTTS engine): raw PCM as it is synthesized
            engine = services.engines.get("chattts")
            if engine is None or not engine.ready:
                why = (getattr(engine, "load_error", None) or "loading") if engine is not None else "not configured"
                return _error(503, f"chattts is not available: {why}")
            voice = ChatTTSVoice(voice=body.voice, speed=body.speed, temperature=body.temperature, top_p=body.top_p,
                                 top_k=body.top_k, use_refine=body.use_refine, seed=hints.seed)
            request_id = request.headers.get("x-request-id") or f"api-{uuid.uuid4().hex[:12]}"
            return PCMStreamResponse(engine, text, voice, hints, request_id, services.draining)
        fmt = body.response_format.lower()
        if fmt not in FORMATS or (fmt == "mp3" and not mp3_available()):
            supported = [f for f in FORMATS if f != "mp3" or mp3_available()]
            return _error(400, f"response_format: {body.response_format!r} is not supported; "
                               f"supported: {', '.join(supported)}", "response_format", supported=supported)
        mapped = voices[body.voice]
        config = body.tts if body.tts is not None else TTSConfig(
            provider="chattts", fallback=["cartesia", "piper"],
            chattts=ChatTTSVoice(voice=body.voice, speed=body.speed, temperature=body.temperature,
                                 top_p=body.top_p, top_k=body.top_k, use_refine=body.use_refine),
            cartesia=CartesiaVoice(voice_id=mapped["cartesia"], speed=min(1.5, max(0.6, body.speed)),
                                   transport="http"),
            piper=PiperVoice(voice=mapped["piper"], speed=body.speed),
        )
        speaker = Speaker(services.engines, config, services.metrics, breakers)
        request_id = f"api-{uuid.uuid4().hex[:12]}"
        try:
            rendered = await render(speaker, text, request_id=request_id, priority=API_PRIORITY)
        except TTSError as exc:
            log.error("speech %s: no provider could speak: %s", request_id, exc.reason)
            return _error(503, f"no TTS provider could synthesize the text: {exc.reason}")
        if not rendered.providers:
            return _error(400, f"{field}: nothing to say", field)
        audio = await encode_off_loop(rendered.pcm, fmt)
        providers = list(dict.fromkeys(rendered.providers))
        for p in providers:
            services.metrics.tts_rtf.labels(p).observe(rendered.rtf)
        headers = {
            "X-Processing-Time": f"{rendered.processing_s:.3f}",
            "X-RTF": f"{rendered.rtf:.3f}",
            "X-Audio-Duration": f"{rendered.duration_s:.3f}",
            "X-Sample-Rate": str(8000 if fmt == "mulaw" else OUTPUT_RATE),
            "X-TTS-Provider": ",".join(providers),
            "X-Request-Id": request_id,
        }
        if rendered.fallbacks:
            headers["X-TTS-Fallback"] = "; ".join(rendered.fallbacks)[:500].encode("ascii", "replace").decode()
        return Response(audio, media_type=MEDIA_TYPES[fmt], headers=headers)

    async def list_voices(request: Request) -> Response:
        if (denied := refused(request)) is not None:
            return denied
        ready = {name: bool(e.ready) for name, e in services.engines.items()}
        return JSONResponse({
            "voices": [{"id": preset, "providers": {"chattts": preset, **voices[preset]}}
                       for preset in CHATTTS_PRESETS],
            "providers": ready,
            "formats": [f for f in FORMATS if f != "mp3" or mp3_available()],
        })

    return [
        Route("/v1/audio/speech", speech, methods=["POST"]),
        Route("/v1/voices", list_voices, methods=["GET"]),
    ]
