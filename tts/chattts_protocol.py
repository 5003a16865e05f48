"""The ChatTTS HTTP server protocol (the seed's ``POST /v1/audio/speech``): requests and answers, pure parts.

Rules of this file: pure. No network, no clocks, no asyncio, no randomness:
bytes and header mappings in, typed values or :class:`AnswerError` out. The
client engine (:mod:`tts.chattts_remote`) and voicegw's own speech endpoint
(``gateway.speech_api``) both speak through these definitions.

The wire contract::

    POST {url}/v1/audio/speech      content-type: application/json
    {"text", "voice", "speed", "temperature", "top_p", "top_k", "response_format", "use_refine"}

A plain ChatTTS server answers ``200`` with the whole file (``audio/wav`` or
``audio/mpeg``). A client that can take a stream adds the request header
``X-Audio-Stream: pcm_s16le``; a server that streams (voicegw) then answers
``200`` with ``Content-Type: audio/L16;rate=24000;channels=1``, the same
``X-Audio-Stream`` header and ``X-Sample-Rate``, and sends raw little-endian
16-bit mono PCM in chunked transfer as it is synthesized. A stream that ends
without its terminating chunk (the server failed mid-sentence) is an error,
not a short sentence. Servers that do not know the header ignore it, so the
same request works against both. Optional request headers that only voicegw
reads (plain servers ignore them): ``X-Request-Id``, ``X-Priority`` (0 = the
first sentence of a turn), ``X-Deadline-Ms`` (first audio is useless after
this many ms: a queue too deep refuses at once) and ``X-ChatTTS-Seed``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tts.settings import ChatTTSVoice

SPEECH_PATH = "/v1/audio/speech"
HEALTH_PATH = "/health"
STREAM_HEADER = "x-audio-stream"
STREAM_FORMAT = "pcm_s16le"
STREAM_RATE = 24000
STREAM_MEDIA_TYPE = f"audio/L16;rate={STREAM_RATE};channels=1"
#: The eight fields of the seed's request body, in its order.
SEED_FIELDS = ("text", "voice", "speed", "temperature", "top_p", "top_k", "response_format", "use_refine")
WAV_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"})
MP3_TYPES = frozenset({"audio/mpeg", "audio/mp3"})
#: A whole-file answer larger than this is refused (60 s of 24 kHz float32 stereo is 11.5 MB).
MAX_FILE_BYTES = 32 * 1024 * 1024

AnswerKind = Literal["stream", "wav", "mp3"]


class AnswerError(Exception):
    """The server's answer cannot be used; the message is short and loggable."""


def request_body(text: str, settings: ChatTTSVoice | None, response_format: str = "wav") -> dict[str, Any]:
    """The seed's JSON body for one sentence from ChatTTS voice settings (None: their defaults)."""
    s = settings if settings is not None else ChatTTSVoice()
    return {
        "text": text, "voice": s.voice, "speed": s.speed, "temperature": s.temperature, "top_p": s.top_p,
        "top_k": s.top_k, "response_format": response_format, "use_refine": s.use_refine,
    }


def request_headers(
    *, stream: bool, request_id: str = "", priority: int = 1, deadline_ms: float | None = None,
    seed: int | None = None, api_key: str | None = None,
) -> dict[str, str]:
    headers = {"x-priority": str(priority)}
    if stream:
        headers[STREAM_HEADER] = STREAM_FORMAT
    if request_id:
        headers["x-request-id"] = request_id.encode("ascii", "replace").decode()[:200]
    if deadline_ms is not None:
        headers["x-deadline-ms"] = str(max(0, round(deadline_ms)))
    if seed is not None:
        headers["x-chattts-seed"] = str(seed)
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


@dataclass(frozen=True, slots=True)
class StreamHints:
    """What voicegw reads from a client's optional headers."""

    stream: bool
    priority: int = 1
    deadline_ms: float | None = None
    seed: int | None = None


def read_hints(headers: Any) -> StreamHints:
    """Parse the optional request headers; malformed values are ignored (a plain client never sends them)."""

    def number(key: str) -> int | None:
        raw = headers.get(key)
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None

    priority = number("x-priority")
    deadline = number("x-deadline-ms")
    return StreamHints(
        stream=(headers.get(STREAM_HEADER) or "").strip().lower() == STREAM_FORMAT,
        priority=min(9, max(0, priority)) if priority is not None else 1,
        deadline_ms=float(deadline) if deadline is not None and deadline >= 0 else None,
        seed=number("x-chattts-seed"),
    )


def _media_type(content_type: str) -> tuple[str, dict[str, str]]:
    main, *params = content_type.split(";")
    out: dict[str, str] = {}
    for p in params:
        key, _, value = p.partition("=")
        out[key.strip().lower()] = value.strip().strip('"')
    return main.strip().lower(), out


@dataclass(frozen=True, slots=True)
class Answer:
    kind: AnswerKind
    sample_rate: int = STREAM_RATE  # streams only; files carry their own


def classify(status: int, headers: Any, head: bytes = b"") -> Answer:
    """What a ``200`` answer holds, from its headers (and, for ``application/octet-stream``, its first bytes).

    Raises :class:`AnswerError` for an error status or a content type that is not audio we can read.
    """
    if status != 200:
        raise AnswerError(f"server error ({status})" if status >= 500 else f"refused ({status})")
    media, params = _media_type(headers.get("content-type") or "")
    if media == "audio/l16" or (headers.get(STREAM_HEADER) or "").lower() == STREAM_FORMAT:
        if media != "audio/l16":
            raise AnswerError(f"stream announced with content type {media or 'none'!r}, expected audio/L16")
        if params.get("channels", "1") != "1":
            raise AnswerError(f"stream has {params['channels']} channels, expected 1")
        rate = params.get("rate") or headers.get("x-sample-rate") or ""
        if not rate.isdigit() or not 8000 <= int(rate) <= 48000:
            raise AnswerError(f"stream sample rate {rate!r} is missing or out of range")
        return Answer("stream", int(rate))
    if media in WAV_TYPES:
        return Answer("wav")
    if media in MP3_TYPES:
        return Answer("mp3")
    if media == "application/octet-stream" and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Answer("wav")
    raise AnswerError(f"unexpected content type {media or 'none'!r}")


def error_detail(body: bytes) -> str:
    """A short reason from an error body: the seed's/voicegw's JSON message, else the first line of text."""
    text = body[:2000].decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text.splitlines()[0][:200] if text else ""
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message")
        if err is not None:
            return str(err)[:200]
    return text[:200]


# ---- whole WAV files ----------------------------------------------------------------------------------
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # writers that stream a WAV leave the sizes unset


@dataclass(frozen=True, slots=True, eq=False)
class Decoded:
    sample_rate: int
    samples: npt.NDArray[np.float32] | npt.NDArray[np.int16]  # mono


def parse_wav(data: bytes) -> Decoded:
    """Decode a whole WAV (16/32-bit integer or 32-bit float PCM, any channel count → mono).

    Raises :class:`AnswerError` for anything else, and for a truncated file (fewer data bytes than its
    ``data`` chunk declares): a truncated answer is a failed sentence, never a short one.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AnswerError("not a WAV file (no RIFF/WAVE header)")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + size > len(data):
                raise AnswerError("truncated WAV: incomplete fmt chunk")
            tag, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == _EXTENSIBLE and size >= 40:
                tag = struct.unpack_from("<H", data, body + 24)[0]  # first two bytes of the sub-format GUID
            fmt = (tag, channels, rate, align, bits)
        elif cid == b"data":
            if fmt is None:
                raise AnswerError("WAV data before its fmt chunk")
            end = len(data) if size in _UNKNOWN_SIZES else body + size
            if end > len(data):
                raise AnswerError(f"truncated WAV: {len(data) - body} of {size} data bytes")
            return _samples(data[body:end], *fmt)
        pos = body + size + (size & 1)
    raise AnswerError("truncated WAV: no data chunk" if fmt else "truncated WAV: no fmt chunk")


def _samples(raw: bytes, tag: int, channels: int, rate: int, align: int, bits: int) -> Decoded:
    if channels < 1 or not 8000 <= rate <= 48000:
        raise AnswerError(f"WAV with {channels} channels at {rate} Hz is not speech audio")
    kinds = {(_PCM, 16): "<i2", (_PCM, 32): "<i4", (_FLOAT, 32): "<f4"}
    dtype = kinds.get((tag, bits))
    if dtype is None or align != channels * bits // 8:
        raise AnswerError(f"unsupported WAV encoding (format {tag}, {bits} bits)")
    if len(raw) % align:
        raise AnswerError(f"truncated WAV: {len(raw)} data bytes is not a whole number of frames")
    x = np.frombuffer(raw, dtype=dtype).reshape(-1, channels)
    if dtype == "<i2":
        mono16 = x[:, 0] if channels == 1 else x.mean(axis=1).astype(np.int16)
        return Decoded(rate, np.ascontiguousarray(mono16, dtype=np.int16))
    scale = 1.0 / 2147483648.0 if dtype == "<i4" else 1.0
    mono = x.astype(np.float32).mean(axis=1) * np.float32(scale)
    return Decoded(rate, np.nan_to_num(mono.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0))


# ---- streamed PCM -----------------------------------------------------------------------------------------
class PCMStream:
    """Cut a raw s16le byte stream into whole samples, whatever the transfer chunk boundaries."""

    def __init__(self) -> None:
        self._rest = b""
        self.bytes_received = 0

    def feed(self, data: bytes) -> npt.NDArray[np.int16]:
        self.bytes_received += len(data)
        buf = self._rest + data
        whole = len(buf) - (len(buf) & 1)
        self._rest = buf[whole:]
        return np.frombuffer(buf[:whole], dtype="<i2").astype(np.int16)

    def finish(self) -> None:
        """The stream ended cleanly; raises :class:`AnswerError` if it stopped inside a sample."""
        if self._rest:
            raise AnswerError("truncated stream: ends inside a sample")


def parse_health(status: int, body: bytes) -> str | None:
    """None when a health answer says the server can synthesize, else why not.

    Accepts the seed's ``{"status": "healthy"|"ok", "model_loaded": true}`` and voicegw's own answer; a
    ``200`` without a JSON body counts as healthy (a bare liveness route).
    """
    if status != 200:
        detail = error_detail(body)
        return f"health {status}" + (f": {detail}" if detail else "")
    try:
        data = json.loads(body or b"null")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if data.get("model_loaded") is False:
        return "model not loaded"
    status_word = str(data.get("status", "ok")).lower()
    if status_word not in ("ok", "healthy", "ready", "up"):
        return f"status {status_word!r}"
    return None
