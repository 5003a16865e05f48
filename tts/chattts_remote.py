"""Remote ChatTTS engine: ChatTTS on a separate speech server, over the seed's HTTP protocol.

The I/O shell around :mod:`tts.chattts_protocol`. One ``POST {url}/v1/audio/speech``
per sentence, on one shared ``httpx.AsyncClient`` (keep-alive pool), with the
seed's timeouts: 10 s to connect, 60 s for the whole generation. Against a
plain ChatTTS server the answer is a whole WAV (or MP3) file; against voicegw
(``VOICEGW_ROLE=speech``) it is raw PCM streamed as it is synthesized, so the
first audio leaves the GPU pod with the first chunk.

* **Cancel**: a sentence cancelled by the Speaker (barge-in, hang-up, a lost
  hedge race) closes its request's connection; voicegw notices the disconnect
  at once and frees that sentence's batch row at the next GPT step.
* **Health**: ``GET {url}/health`` every ``health_interval_s`` (every second
  while failing). It decides :attr:`RemoteChatTTSEngine.ready` (the Speaker
  skips an unready engine; readiness reports it as degraded, with the reason,
  never as a reason to take the pod out of service) and it feeds the circuit
  breakers: a failed probe, or a refused connection, trips them open; a good
  probe closes them, so calls return to ChatTTS without waiting out a cool-down.
* **Failures** are :class:`~tts.base.TTSError` with short reasons (``server
  error (500): …``, ``unexpected content type 'text/html'``, ``truncated WAV: …``,
  ``connection lost mid-sentence``, ``timeout``), so the Speaker falls back
  per sentence exactly as for the in-process worker.

Text is normalized here (:func:`tts.normalize.chattts_text`), since a plain
ChatTTS server would delete digits and symbols; voicegw's server normalizing
it again changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import httpx
import numpy as np

from audio.formats import AudioChunk, AudioFormat, Encoding
from tts.base import SynthesisRequest, TTSError
from tts.breaker import BreakerRegistry
from tts.chattts_protocol import (
    HEALTH_PATH,
    MAX_FILE_BYTES,
    SPEECH_PATH,
    AnswerError,
    Decoded,
    PCMStream,
    classify,
    error_detail,
    parse_health,
    parse_wav,
    request_body,
    request_headers,
)
from tts.normalize import chattts_text
from tts.settings import ChatTTSVoice

log = logging.getLogger("voicegw.tts.chattts_remote")


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    #: Base URL of the speech server (``CHATTTS_API_URL``), e.g. ``http://chattts:8080``.
    url: str
    #: Sent as a bearer token (voicegw's ``VOICEGW_API_KEY`` on the speech server).
    api_key: str | None = None
    connect_timeout_s: float = 10.0
    generation_timeout_s: float = 60.0
    #: Ask for a PCM stream (voicegw); plain servers ignore the request and answer a file.
    stream: bool = True
    response_format: Literal["wav", "mp3"] = "wav"
    health_path: str = HEALTH_PATH
    health_interval_s: float = 5.0
    health_timeout_s: float = 3.0
    max_connections: int = 200
    max_keepalive_connections: int = 50
    keepalive_expiry_s: float = 30.0
    #: Whole-file answers are handed on in pieces of this length.
    file_chunk_s: float = 0.2


@dataclass
class RemoteStats:
    requests: int = 0
    bytes_sent: int = 0  # request bodies
    bytes_received: int = 0  # response bodies
    streamed: int = 0  # answers that were PCM streams
    files: int = 0  # answers that were whole files
    cancelled: int = 0  # requests closed before their answer ended
    failures: int = 0
    #: The speech server's own time to first audio for the last streamed answer (its X-First-Audio-Ms), so
    #: the hop's cost is what the client measured beyond it (bench/remote_tts.py).
    last_server_first_audio_ms: float | None = None


@dataclass(slots=True)
class _Health:
    error: str | None = "not checked yet"
    checked: bool = False


class RemoteChatTTSEngine:
    """A :class:`~tts.base.TTSEngine` speaking to a ChatTTS server (voicegw or a plain one)."""

    def __init__(
        self,
        config: RemoteConfig,
        *,
        name: str = "chattts_remote",
        breakers: BreakerRegistry | None = None,
        breaker_names: Iterable[str] = (),
        extra_urls: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config
        self.breakers = breakers
        self.breaker_names = tuple(dict.fromkeys([name, *breaker_names]))
        self.clock = clock
        self.stats = RemoteStats()
        self._urls = list(dict.fromkeys(u.rstrip("/") for u in [config.url, *extra_urls]))
        self._health: dict[str, _Health] = {}
        self._client: httpx.AsyncClient | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._closed = False
        self._warned_speaker = False
        self._wake = asyncio.Event()

    # ---- state ---------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return not self._closed and any(h.error is None for h in self._health.values())

    @property
    def load_error(self) -> str | None:
        """Why the engine is not available (None while healthy or before the first probe)."""
        if self._closed or self.ready:
            return None
        errors = [f"{url}: {h.error}" for url, h in self._health.items() if h.checked and h.error]
        return f"speech server unhealthy: {'; '.join(errors)}" if errors else None

    def health(self) -> dict[str, str]:
        return {url: h.error or "ok" for url, h in self._health.items()}

    # ---- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        """Open the pool, probe every server once (bounded by the health timeout), then keep probing."""
        if self._client is None:
            cfg = self.config
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(cfg.generation_timeout_s, connect=cfg.connect_timeout_s),
                limits=httpx.Limits(max_connections=cfg.max_connections,
                                    max_keepalive_connections=cfg.max_keepalive_connections,
                                    keepalive_expiry=cfg.keepalive_expiry_s),
            )
            self._health = {url: _Health() for url in self._urls}
            await asyncio.gather(*(self._probe(url) for url in self._urls))
            self._monitor = asyncio.create_task(self._watch(), name=f"{self.name}-health")

    async def aclose(self) -> None:
        self._closed = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        if self._client is not None:
            await self._client.aclose()

    # ---- health ----------------------------------------------------------------
    async def _watch(self) -> None:
        while not self._closed:
            failing = any(h.error for h in self._health.values())
            # asyncio.timeout, not wait_for: 3.11's wait_for swallows a cancel that meets a set event.
            with contextlib.suppress(TimeoutError):  # woken early by a request that found the server gone
                async with asyncio.timeout(1.0 if failing else self.config.health_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            await asyncio.gather(*(self._probe(url) for url in self._urls))

    async def _probe(self, url: str) -> None:
        assert self._client is not None
        timeout = httpx.Timeout(self.config.health_timeout_s)
        try:
            resp = await self._client.get(url + self.config.health_path, timeout=timeout)
            error = parse_health(resp.status_code, resp.content)
        except httpx.HTTPError as exc:
            error = _describe(exc)
        self._set_health(url, error)

    def _set_health(self, url: str, error: str | None) -> None:
        health = self._health.setdefault(url, _Health())
        was_ok, first = health.checked and health.error is None, not health.checked
        health.error, health.checked = error, True
        now = self.clock()
        if error is None and not was_ok:
            if not first:
                log.info("%s: speech server %s healthy again", self.name, url)
            for name in self.breaker_names if self.breakers is not None else ():
                self.breakers.get(name).record_success(now)  # type: ignore[union-attr]
        elif error is not None and (was_ok or first):
            log.warning("%s: speech server %s unhealthy: %s", self.name, url, error)
            for name in self.breaker_names if self.breakers is not None else ():
                self.breakers.get(name).trip(now, f"health: {error}")  # type: ignore[union-attr]

    def _suspect(self, url: str, reason: str) -> None:
        """A request could not connect: mark the server down now and re-probe at once."""
        self._set_health(url, reason)
        self._wake.set()

    # ---- synthesis ---------------------------------------------------------------
    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        if self._client is None or self._closed:
            raise TTSError(self.name, "not started")
        s = request.settings_as(ChatTTSVoice)
        url = (getattr(s, "url", None) or self.config.url).rstrip("/")  # tts.chattts_remote.url, per agent
        health = self._health.get(url)
        if health is not None and health.error is not None and health.checked:
            raise TTSError(self.name, f"speech server unhealthy: {health.error}")
        if getattr(s, "speaker", None) and not self._warned_speaker:
            self._warned_speaker = True  # the seed's protocol has no field for it
            log.warning("%s: a custom ChatTTS speaker string cannot be sent to a speech server; it speaks the "
                        "preset %r instead", self.name, getattr(s, "voice", "female_1"))
        text = chattts_text(request.text, request.language)
        if not text.strip(" ,.，。、"):
            return  # nothing ChatTTS could say
        cfg = self.config
        deadline_ms = None if request.deadline is None else (request.deadline - time.monotonic()) * 1000
        headers = request_headers(stream=cfg.stream, request_id=request.request_id, priority=request.priority,
                                  deadline_ms=deadline_ms, seed=s.seed, api_key=cfg.api_key)
        body = request_body(text, s, cfg.response_format)
        t0 = time.monotonic()
        ended = False
        self.stats.requests += 1
        try:
            async with self._client.stream("POST", url + SPEECH_PATH, json=body, headers=headers) as resp:
                self.stats.bytes_sent += len(resp.request.content)
                if resp.status_code != 200:
                    detail = error_detail(await _read_capped(resp, 4000, self.stats))
                    kind = "server error" if resp.status_code >= 500 else "refused"
                    raise TTSError(self.name, f"{kind} ({resp.status_code})" + (f": {detail}" if detail else ""))
                answer = classify(200, resp.headers, b"")
                if answer.kind == "stream":
                    self.stats.streamed += 1
                    with contextlib.suppress(ValueError):
                        self.stats.last_server_first_audio_ms = float(resp.headers.get("x-first-audio-ms", "x"))
                    fmt = AudioFormat(Encoding.PCM_S16, answer.sample_rate)
                    pcm = PCMStream()
                    async for data in resp.aiter_bytes():
                        self.stats.bytes_received += len(data)
                        samples = pcm.feed(data)
                        if len(samples):
                            yield AudioChunk(samples, fmt)
                        _check_deadline(t0, cfg.generation_timeout_s, self.name)
                    pcm.finish()
                else:
                    self.stats.files += 1
                    data = await _read_capped(resp, MAX_FILE_BYTES, self.stats, t0, cfg.generation_timeout_s,
                                              self.name)
                    decoded = parse_wav(data) if answer.kind == "wav" else await asyncio.to_thread(_decode_mp3, data)
                    log.info("%s %s: %s answer, %.2f s of audio in %.3f s (server processing %s s, rtf %s)",
                             self.name, request.request_id or "-", answer.kind,
                             len(decoded.samples) / decoded.sample_rate, time.monotonic() - t0,
                             resp.headers.get("x-processing-time", "?"), resp.headers.get("x-rtf", "?"))
                    for chunk in _pieces(decoded, cfg.file_chunk_s):
                        yield chunk
                ended = True
        except AnswerError as exc:
            self.stats.failures += 1
            raise TTSError(self.name, str(exc)) from None
        except httpx.ConnectError as exc:
            self.stats.failures += 1
            reason = _describe(exc)
            self._suspect(url, reason)
            raise TTSError(self.name, f"speech server unreachable: {reason}") from None
        except httpx.TimeoutException as exc:
            self.stats.failures += 1
            raise TTSError(self.name, _describe(exc)) from None
        except httpx.HTTPError as exc:  # RemoteProtocolError, ReadError: the answer broke off
            self.stats.failures += 1
            self._wake.set()  # is the server gone? The next probe says so at once
            raise TTSError(self.name, f"connection lost mid-sentence: {_describe(exc)}") from None
        except TTSError:
            self.stats.failures += 1
            raise
        finally:
            if not ended:
                self.stats.cancelled += 1


def _check_deadline(t0: float, limit_s: float, name: str) -> None:
    if time.monotonic() - t0 > limit_s:
        raise TTSError(name, f"timeout (generation over {limit_s:g} s)")


async def _read_capped(
    resp: httpx.Response, cap: int, stats: RemoteStats, t0: float | None = None, limit_s: float = 0.0,
    name: str = "",
) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for data in resp.aiter_bytes():
        size += len(data)
        stats.bytes_received += len(data)
        if size > cap:
            raise AnswerError(f"answer larger than {cap} bytes")
        parts.append(data)
        if t0 is not None:
            _check_deadline(t0, limit_s, name)
    return b"".join(parts)


def _pieces(decoded: Decoded, chunk_s: float) -> list[AudioChunk]:
    x = decoded.samples
    enc = Encoding.PCM_S16 if x.dtype == np.int16 else Encoding.PCM_F32
    fmt = AudioFormat(enc, decoded.sample_rate)
    step = max(1, int(chunk_s * decoded.sample_rate))
    return [AudioChunk(x[i:i + step].copy(), fmt) for i in range(0, len(x), step)]


def _decode_mp3(data: bytes) -> Decoded:
    """MP3 → mono float32, with PyAV (installed with the speech-recognition extra)."""
    try:
        import av
    except ImportError:
        raise AnswerError("an MP3 answer needs PyAV (pip install av); ask the server for wav") from None
    import io

    try:
        with av.open(io.BytesIO(data), mode="r", format="mp3") as container:
            stream = container.streams.audio[0]
            rate = int(stream.rate or 0)
            frames = [f.to_ndarray().astype(np.float32) for f in container.decode(stream)]
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        raise AnswerError(f"undecodable MP3: {exc}") from None
    if not frames or not rate:
        raise AnswerError("MP3 answer without audio")
    # packed (1, n*ch) or planar (ch, n): average channels to mono
    layouts = [f.reshape(-1) if f.shape[0] == 1 else f.mean(axis=0) for f in frames]
    return Decoded(rate, np.concatenate(layouts).astype(np.float32))


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, httpx.PoolTimeout):
        return "connection pool exhausted"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout (no data from the server)"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
