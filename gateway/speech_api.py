"""The synthesis endpoint: ``POST /v1/audio/speech`` and ``GET /v1/voices``, compatible with ChatTTS servers.

Accepts the ChatTTS server API's JSON (:mod:`tts.chattts_protocol`: ``text``, ``voice``, ``speed``,
``temperature``, ``top_p``, ``top_k``, ``response_format``, ``use_refine``; the voice fields'
types, defaults and ranges are :class:`tts.settings.ChatTTSVoice`'s) and
OpenAI's ``input`` (for ``text``) and ``model`` (ignored), as
``Content-Type: application/json`` only (else 415). Validation is strict (no
coercion), unknown fields are refused with a did-you-mean, and a 400 lists
every problem, each with its field (docs/tts-fallback.md). Every request runs through the same
fallback policy as calls (ChatTTS → Cartesia → Piper, hedged per sentence,
shared breakers); each ChatTTS preset maps to a Cartesia voice and a Piper
voice (``tts/data/voices.json`` or ``VOICEGW_VOICES_FILE``).

Response headers: ``X-Processing-Time`` (s), ``X-RTF`` (processing / audio),
``X-Audio-Duration`` (s), ``X-Sample-Rate``, ``X-TTS-Provider`` (the provider
of each sentence, comma-separated, deduplicated in order) and, when a
fallback happened, ``X-TTS-Fallback`` (the reasons); ``X-TTS-Voice-Caveat``
when the engine that spoke has no voice of the preset's kind
(:func:`tts.presets.caveats`).
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, create_model
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.auth import open_api_refusal, operator_key_ok
from gateway.errors import ALL_METHODS, json_error, method_not_allowed, unauthorized
from gateway.http_limits import SPEECH_MAX_BODY, BodyError, read_body
from gateway.services import Services
from gateway.speech_stream import PCMStreamResponse
from tts.base import TTSError
from tts.breaker import BreakerRegistry
from tts.chattts_protocol import read_hints
from tts.fallback import Speaker
from tts.presets import caveats, load_voice_map
from tts.registry import TTSConfig
from tts.render import API_PRIORITY, FORMATS, MEDIA_TYPES, OUTPUT_RATE, encode_off_loop, mp3_available, render
from tts.settings import CARTESIA_SPEED, CHATTTS_PRESETS, CartesiaVoice, ChatTTSVoice, PiperVoice, StrictModel

log = logging.getLogger("voicegw.tts.api")

MAX_TEXT_CHARS = 4000
#: The request fields that are ChatTTS voice settings: type, default and range come from ChatTTSVoice.
VOICE_FIELDS = ("voice", "speed", "temperature", "top_p", "top_k", "use_refine")
#: OpenAI's names, accepted as documented aliases: ``input`` for ``text``; ``model`` is ignored.
ALIASES = {"input": "text"}


class _SpeechBase(StrictModel):
    """The ChatTTS server API's request body (plus OpenAI's ``input`` and ``model``): see :data:`SpeechRequest`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    text: str | None = Field(default=None, description="The text to speak (required; OpenAI's name: `input`).")
    input: str | None = Field(default=None, description="OpenAI's name for `text`.")
    model: str | None = Field(default=None, description="Accepted for OpenAI clients and ignored.")
    response_format: str = Field(default="wav", description=f"One of {', '.join(FORMATS)}.")
    #: A whole voice (an agent's ``tts`` section: chain and per-provider settings), as the console's
    #: "Play sample" sends it; when given, ``voice``/``speed``/... are not used.
    tts: TTSConfig | None = None


#: The request body: the seed's fields (the ChatTTS ones copied from ChatTTSVoice) plus OpenAI's names.
#: Strict: no coercion ("20" is not an integer, true is not a number); unknown fields are refused.
_VOICE: dict[str, Any] = {name: (ChatTTSVoice.model_fields[name].annotation, ChatTTSVoice.model_fields[name])
                          for name in VOICE_FIELDS}
SpeechRequest = create_model("SpeechRequest", __base__=_SpeechBase, __module__=__name__, **_VOICE)
FIELDS = tuple(SpeechRequest.model_fields)


def _json(value: Any) -> str:
    """A client's value as the client wrote it (JSON), never a Python repr."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


_JSON_TYPES = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
               list: "an array", dict: "an object"}


def _problem(err: Any) -> tuple[str, str]:
    """``(field, message)`` for one pydantic error, worded for API clients."""
    field = ".".join(str(p) for p in err["loc"]) or "body"
    typ, value = err["type"], err.get("input")
    got = _JSON_TYPES.get(type(value), "a value")
    if typ == "extra_forbidden":
        close = difflib.get_close_matches(field, FIELDS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!s}?" if close else f"accepted fields: {', '.join(FIELDS)}"
        return field, f"unknown field; {hint}"
    if field == "voice":
        return field, f"unknown voice {_json(value)}; known: {', '.join(CHATTTS_PRESETS)}"
    if typ == "value_error":
        return field, str(err["msg"]).removeprefix("Value error, ")
    if typ in ("float_type", "int_type"):
        kind = "an integer" if typ == "int_type" else "a number"
        return field, f"must be {kind}, not {got} ({_json(value)})"
    if typ == "bool_type":
        return field, f"must be true or false, not {got} ({_json(value)})"
    if typ == "string_type":
        return field, f"must be a string, not {got} ({_json(value)})"
    return field, f"{err['msg']} (got {_json(value)})"


def _invalid(problems: list[tuple[str, str]]) -> JSONResponse:
    message = "; ".join(f"{f}: {m}" for f, m in problems)
    return json_error(400, message, problems[0][0], errors=[{"field": f, "message": m} for f, m in problems])


def _is_json(content_type: str | None) -> bool:
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


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
    voice_caveats = caveats(voices)
    for engine in services.engines:
        unhonoured = [p for (p, e) in voice_caveats if e == engine]
        if unhonoured:  # said once at startup, and again on every response that used such a voice
            example = voice_caveats[(unhonoured[0], engine)]
            log.warning("%s cannot honour voice presets %s (e.g. %s)", engine, ", ".join(unhonoured), example)
    if services.breakers is None:
        services.breakers = BreakerRegistry()
    breakers = services.breakers

    settings = services.settings
    # At most this many requests synthesize at once; the rest are refused at once, never queued (issue 15).
    busy = _Busy(settings.api_max_concurrent)

    def refused(request: Request) -> Response | None:
        refusal = open_api_refusal(settings.host, settings.api_key, settings.allow_open_api)
        if refusal is not None:
            return json_error(403, refusal, type="permission_error")
        if not operator_key_ok(request.headers.get("authorization"), settings.api_key):
            return unauthorized()
        return None

    async def parse(request: Request) -> tuple[Any, JSONResponse | None]:
        if not _is_json(request.headers.get("content-type")):
            got = request.headers.get("content-type") or "none"
            return None, json_error(415, f"body: send JSON with Content-Type: application/json (got {got})", "body")
        try:
            payload = json.loads(await read_body(request, SPEECH_MAX_BODY))
        except BodyError as exc:
            return None, json_error(exc.status, f"body: {exc.message}", "body")
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
            return None, json_error(400, "body: not valid JSON", "body")
        if not isinstance(payload, dict):
            return None, json_error(400, "body: expected a JSON object", "body")
        problems: list[tuple[str, str]] = []
        if payload.get("text") is None and payload.get("input") is None:
            problems.append(("text", "required: the text to speak (OpenAI clients may call it input)"))
        elif payload.get("text") is not None and payload.get("input") is not None:
            problems.append(("text", "send text or input (OpenAI's name for it), not both"))
        try:
            body = SpeechRequest.model_validate(payload)
        except ValidationError as exc:
            problems.extend(_problem(e) for e in exc.errors())
            return None, _invalid(sorted(set(problems), key=problems.index))
        if problems:
            return None, _invalid(problems)
        return body, None

    async def speech(request: Request) -> Response:
        if request.method != "POST":
            return method_not_allowed(request.method, ["POST"])
        if (denied := refused(request)) is not None:
            return denied
        if not busy.enter():
            services.metrics.api_refused.labels("busy").inc()
            return json_error(429, f"busy: {busy.limit} speech requests in progress (VOICEGW_API_MAX_CONCURRENT); "
                                   "retry shortly", type="rate_limit_error", headers={"Retry-After": "1"})
        try:
            return await _speech(request)
        finally:
            busy.leave()

    async def _speech(request: Request) -> Response:
        body, invalid = await parse(request)
        if invalid is not None:
            return invalid
        field = "text" if body.text is not None else "input"
        text = (body.text if body.text is not None else body.input or "").strip()
        if not text:
            return json_error(400, f"{field}: must not be empty", field)
        if len(text) > MAX_TEXT_CHARS:
            return json_error(400, f"{field}: too long ({len(text)} characters, at most {MAX_TEXT_CHARS})", field)
        if not any(ch.isalnum() for ch in text):
            return json_error(400, f"{field}: nothing to say: {_json(text)} has no letters or digits", field)
        hints = read_hints(request.headers)
        if hints.stream:  # X-Audio-Stream: pcm_s16le (the remote ChatTTS engine): raw PCM as it is synthesized
            engine = services.engines.get("chattts")
            if engine is None or not engine.ready:
                why = (getattr(engine, "load_error", None) or "loading") if engine is not None else "not configured"
                return json_error(503, f"chattts is not available: {why}")
            voice = ChatTTSVoice(voice=body.voice, speed=body.speed, temperature=body.temperature, top_p=body.top_p,
                                 top_k=body.top_k, use_refine=body.use_refine, seed=hints.seed)
            request_id = request.headers.get("x-request-id") or f"api-{uuid.uuid4().hex[:12]}"
            return PCMStreamResponse(engine, text, voice, hints, request_id, services.draining)
        fmt = body.response_format.lower()
        supported = [f for f in FORMATS if f != "mp3" or mp3_available()]
        if fmt not in supported:
            return json_error(400, f"response_format: {_json(body.response_format)} is not supported; "
                                   f"supported: {', '.join(supported)}", "response_format", supported=supported)
        mapped = voices[body.voice]
        config = body.tts if body.tts is not None else TTSConfig.model_validate({
            "provider": "chattts", "fallback": ["cartesia", "piper"],
            "chattts": ChatTTSVoice(voice=body.voice, speed=body.speed, temperature=body.temperature,
                                    top_p=body.top_p, top_k=body.top_k, use_refine=body.use_refine),
            "cartesia": CartesiaVoice(voice_id=mapped.cartesia, speed=CARTESIA_SPEED.clamp(body.speed),
                                      transport="http"),
            "piper": PiperVoice(voice=mapped.piper, speed=body.speed),
        })
        speaker = Speaker(services.engines, config, services.metrics, breakers)
        request_id = f"api-{uuid.uuid4().hex[:12]}"
        try:
            rendered = await render(speaker, text, request_id=request_id, priority=API_PRIORITY)
        except TTSError as exc:
            log.error("speech %s: no provider could speak: %s", request_id, exc.reason)
            return json_error(503, f"no TTS provider could synthesize the text: {exc.reason}")
        if not rendered.providers:
            return json_error(400, f"{field}: nothing to say", field)
        audio = await encode_off_loop(rendered.pcm, fmt)
        providers = list(dict.fromkeys(rendered.providers))
        for p in providers:
            services.metrics.tts_rtf.labels(p).observe(rendered.rtf)
        log.info("speech %s: provider=%s processing_s=%.3f audio_s=%.3f rtf=%.3f sentences=%d",
                 request_id, ",".join(providers), rendered.processing_s, rendered.duration_s, rendered.rtf,
                 len(rendered.providers),
                 extra={"provider": ",".join(providers), "processing_s": round(rendered.processing_s, 3),
                        "audio_s": round(rendered.duration_s, 3), "rtf": round(rendered.rtf, 3)})
        headers = {
            "X-Processing-Time": f"{rendered.processing_s:.3f}",
            "X-RTF": f"{rendered.rtf:.3f}",
            "X-Audio-Duration": f"{rendered.duration_s:.3f}",
            "X-Sample-Rate": str(8000 if fmt == "mulaw" else OUTPUT_RATE),
            "X-TTS-Provider": ",".join(providers),
            "X-Request-Id": request_id,
        }
        if rendered.fallbacks:
            headers["X-TTS-Fallback"] = _header("; ".join(rendered.fallbacks))
        notes = [why for p in providers if (why := voice_caveats.get((body.voice, p)))]
        if notes:
            headers["X-TTS-Voice-Caveat"] = _header("; ".join(notes))
        return _audio_response(audio, MEDIA_TYPES[fmt], headers)

    async def list_voices(request: Request) -> Response:
        if request.method != "GET":
            return method_not_allowed(request.method, ["GET"])
        if (denied := refused(request)) is not None:
            return denied
        ready = {name: bool(e.ready) for name, e in services.engines.items()}
        return JSONResponse({
            "voices": [{"id": preset,
                        "providers": {"chattts": preset, "cartesia": voices[preset].cartesia,
                                      "piper": voices[preset].piper},
                        "caveats": {e: why for (p, e), why in voice_caveats.items() if p == preset}}
                       for preset in CHATTTS_PRESETS],
            "providers": ready,
            "formats": [f for f in FORMATS if f != "mp3" or mp3_available()],
        })

    return [
        Route("/v1/audio/speech", speech, methods=ALL_METHODS),
        Route("/v1/voices", list_voices, methods=ALL_METHODS),
    ]


BODY_PIECE = 256 * 1024  # bytes per write: ~0.1 ms of copying, so a long body never holds the loop for a frame


def _audio_response(audio: bytes, media_type: str, headers: dict[str, str]) -> Response:
    """The body in pieces of :data:`BODY_PIECE`, with its Content-Length: 240 s of 24 kHz WAV is 11.5 MB, and
    handed over in one write its copies (HTTP framing, the transport's buffer) held the loop every call shares
    for 9-21 ms."""
    if len(audio) <= BODY_PIECE:
        return Response(audio, media_type=media_type, headers=headers)
    view = memoryview(audio)

    async def pieces() -> AsyncIterator[bytes]:
        for at in range(0, len(view), BODY_PIECE):
            yield bytes(view[at:at + BODY_PIECE])

    headers = {**headers, "Content-Length": str(len(audio))}
    return StreamingResponse(pieces(), media_type=media_type, headers=headers)


def _header(value: str) -> str:
    return value[:500].encode("ascii", "replace").decode()
