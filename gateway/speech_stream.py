"""Streamed answers of ``POST /v1/audio/speech``: raw PCM as ChatTTS synthesizes it (voicegw as a speech server).

A client that sends ``X-Audio-Stream: pcm_s16le`` (the remote engine,
:mod:`tts.chattts_remote`) gets ``200`` with ``Content-Type:
audio/L16;rate=24000;channels=1``, ``X-Audio-Stream: pcm_s16le`` and
``X-Sample-Rate: 24000``, then little-endian 16-bit mono PCM in chunked
transfer: the first bytes leave with ChatTTS's first chunk. The wire contract
is in :mod:`tts.chattts_protocol`.

* Only the in-process ChatTTS engine speaks: no fallback here. The telephony
  pod runs its own hedged fallback per sentence; a speech pod that fell back
  to Piper would hide a failure and double the policy.
* Until the first audio, a failure is an ordinary JSON error (``503``). After
  it, the stream is cut without its terminating chunk, which the client reads
  as "connection lost mid-sentence" (never as a short sentence).
* A client that disconnects (barge-in, a lost hedge race, hang-up) is noticed
  at once, not at the next write: the synthesis is cancelled and ChatTTS frees
  that sentence's batch row at its next step.
* While the process drains, answers carry ``Connection: close`` so pooled
  keep-alive connections move to pods that stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from audio.codec import float_to_int16
from audio.formats import AudioChunk
from tts.base import SynthesisRequest, TTSEngine, TTSError
from tts.chattts_protocol import STREAM_FORMAT, STREAM_HEADER, STREAM_MEDIA_TYPE, STREAM_RATE, StreamHints
from tts.render import split_sentences, to_float

log = logging.getLogger("voicegw.tts.api")


def _pcm(chunk: AudioChunk) -> bytes:
    if chunk.format.sample_rate != STREAM_RATE:
        import soxr

        x = soxr.resample(to_float(chunk), chunk.format.sample_rate, STREAM_RATE)
        return float_to_int16(x).astype("<i2").tobytes()
    return float_to_int16(to_float(chunk)).astype("<i2").tobytes()


class PCMStreamResponse(Response):
    """An ASGI response that streams one request's sentences through ``engine``."""

    def __init__(self, engine: TTSEngine, text: str, settings: Any, hints: StreamHints, request_id: str,
                 draining: bool, language: str = "en") -> None:
        super().__init__(status_code=200)
        self.engine, self.settings, self.hints = engine, settings, hints
        self.sentences = split_sentences(text)
        self.request_id, self.draining, self.language = request_id, draining, language
        self.bytes_sent = 0
        self.t_submit = time.monotonic()  # reset when the first sentence goes to the engine
        self.first_audio_ms = 0.0

    async def _audio(self) -> AsyncGenerator[bytes, None]:
        self.t_submit = time.monotonic()
        deadline = None
        if self.hints.deadline_ms is not None:
            deadline = time.monotonic() + self.hints.deadline_ms / 1000
        for i, sentence in enumerate(self.sentences):
            request = SynthesisRequest(
                text=sentence, settings=self.settings, language=self.language,
                priority=self.hints.priority if i == 0 else max(1, self.hints.priority),
                deadline=deadline if i == 0 else None, request_id=f"{self.request_id}-{i + 1}",
            )
            async for chunk in self.engine.synthesize(request):
                if chunk.num_samples:
                    yield _pcm(chunk)

    def _stream_headers(self) -> list[tuple[bytes, bytes]]:
        headers = {
            "content-type": STREAM_MEDIA_TYPE, STREAM_HEADER: STREAM_FORMAT, "x-sample-rate": str(STREAM_RATE),
            "x-request-id": self.request_id, "x-tts-provider": self.engine.name, "cache-control": "no-store",
            # the engine's own time to first audio: what the client measures beyond it is the hop's cost
            "x-first-audio-ms": f"{self.first_audio_ms:.2f}",
        }
        if self.draining:
            headers["connection"] = "close"
        return [(k.encode(), v.encode()) for k, v in headers.items()]

    async def _produce(self, send: Send) -> None:
        t0 = time.monotonic()
        audio = self._audio()
        try:
            try:
                first = await anext(audio)
            except StopAsyncIteration:
                first = b""
            except TTSError as exc:
                log.warning("speech stream %s: %s", self.request_id, exc.reason)
                body = json.dumps({"error": {"message": exc.reason, "type": "server_error"}}).encode()
                await send({"type": "http.response.start", "status": 503,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
            self.first_audio_ms = (time.monotonic() - self.t_submit) * 1000
            await send({"type": "http.response.start", "status": 200, "headers": self._stream_headers()})
            await send({"type": "http.response.body", "body": first, "more_body": True})
            self.bytes_sent += len(first)
            first_s = time.monotonic() - t0
            try:
                async for data in audio:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                    self.bytes_sent += len(data)
            except TTSError as exc:
                # Returning without the final chunk makes the server close the connection: the client
                # sees an incomplete chunked body, i.e. a failed sentence, never a short one.
                log.warning("speech stream %s: failed mid-sentence: %s", self.request_id, exc.reason)
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            log.info("speech stream %s: %d sentence(s), first audio %.0f ms, %.2f s of audio in %.3f s",
                     self.request_id, len(self.sentences), first_s * 1000, self.bytes_sent / 2 / STREAM_RATE,
                     time.monotonic() - t0)
        finally:
            await audio.aclose()  # cancels the sentence in flight (ChatTTS frees its row)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: D102
        producer = asyncio.create_task(self._produce(send), name=f"speech-stream:{self.request_id}")
        listener = asyncio.create_task(_disconnected(receive))
        try:
            done, _ = await asyncio.wait({producer, listener}, return_when=asyncio.FIRST_COMPLETED)
            if producer not in done:
                producer.cancel()
                log.info("speech stream %s: client closed the request, synthesis cancelled", self.request_id)
            with contextlib.suppress(asyncio.CancelledError):
                await producer
        finally:
            listener.cancel()
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
