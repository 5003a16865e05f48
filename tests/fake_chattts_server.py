"""A loopback stand-in for a plain ChatTTS HTTP server (the seed's protocol), for compatibility tests.

What a plain server does: ``POST /v1/audio/speech`` with the seed's JSON
(``text, voice, speed, temperature, top_p, top_k, response_format, use_refine``)
answers the whole file once synthesized (``audio/wav``, or ``audio/mpeg`` when
asked for ``mp3``), with ``X-Processing-Time``/``X-RTF`` headers; ``GET /health``
answers ``{"status": "healthy", "model_loaded": true}``. It knows nothing of
voicegw's streaming header and ignores it. Runs under real uvicorn in a thread
on a free port. Faults (:class:`Behaviour`): an error status, a wrong content
type, a truncated WAV, a slow drip, a delay; every request is recorded.

The audio is a deterministic function of the text (:func:`samples_for`), so a
test can check that what the client decoded is exactly what was sent.
"""

from __future__ import annotations

import asyncio
import io
import time
import wave
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.loopback_server import ThreadedServer

SEED_FIELDS = ("text", "voice", "speed", "temperature", "top_p", "top_k", "response_format", "use_refine")
RATE = 24000


def samples_for(text: str, seconds: float = 0.5, rate: int = RATE) -> npt.NDArray[np.int16]:
    """The fake's int16 audio for a text: a tone whose pitch depends on the text."""
    f = 200 + zlib.crc32(text.encode()) % 400
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * f * t)).astype(np.int16)


def wav_file(samples: npt.NDArray[np.int16], rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def float_wav_file(samples: npt.NDArray[np.float32], rate: int = RATE) -> bytes:
    """A 32-bit float WAV (what torchaudio/soundfile write for ChatTTS's float output)."""
    data = samples.astype("<f4").tobytes()
    fmt = (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little") + (
        rate * 4).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def mp3_file(samples: npt.NDArray[np.int16], rate: int = RATE) -> bytes:
    import lameenc

    enc = lameenc.Encoder()
    enc.set_bit_rate(64)
    enc.set_in_sample_rate(rate)
    enc.set_channels(1)
    enc.set_quality(2)
    return bytes(enc.encode(samples.astype("<i2").tobytes())) + bytes(enc.flush())


@dataclass
class Behaviour:
    seconds: float = 0.5  # audio per request
    delay_s: float = 0.0  # "synthesis time" before the answer
    status: int | None = None  # answer this error status (JSON body)
    content_type: str | None = None  # override the answer's content type
    truncate: bool = False  # a WAV whose data chunk declares more bytes than are sent
    drip_s: float | None = None  # send the body 64 bytes at a time, this long apart
    float_wav: bool = False  # 32-bit float WAV instead of 16-bit
    health_status: int = 200
    model_loaded: bool = True


@dataclass
class Recorded:
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    health: int = 0
    disconnects: int = 0


class FakeChatTTSServer:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.recorded = Recorded()
        self._server = ThreadedServer(self.app(), "fake ChatTTS server")

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    def reset(self) -> None:
        self.behaviour.__dict__.update(Behaviour().__dict__)
        self.recorded = Recorded()

    async def speech(self, request: Request) -> Response:
        body = await request.json()
        self.recorded.bodies.append(body)
        self.recorded.headers.append(dict(request.headers))
        b = self.behaviour
        missing = [k for k in SEED_FIELDS if k not in body]
        if missing:
            return JSONResponse({"detail": f"missing fields {missing}"}, status_code=422)
        t0 = time.monotonic()
        if b.delay_s:
            await asyncio.sleep(b.delay_s)
        if b.status is not None:
            return JSONResponse({"detail": "CUDA out of memory"}, status_code=b.status)
        pcm = samples_for(body["text"], b.seconds)
        if body["response_format"] == "mp3":
            data, media = mp3_file(pcm), "audio/mpeg"
        elif b.float_wav:
            data, media = float_wav_file(pcm.astype(np.float32) / np.float32(32768)), "audio/wav"
        else:
            data, media = wav_file(pcm), "audio/wav"
        if b.truncate:
            data = data[: len(data) // 2]
        headers = {"X-Processing-Time": f"{time.monotonic() - t0:.3f}", "X-RTF": "0.100"}
        media = b.content_type or media
        if b.drip_s is None:
            return Response(data, media_type=media, headers=headers)
        drip = b.drip_s

        async def slowly() -> AsyncIterator[bytes]:
            try:
                for i in range(0, len(data), 64):
                    yield data[i:i + 64]
                    await asyncio.sleep(drip)
            except asyncio.CancelledError:
                self.recorded.disconnects += 1
                raise

        return StreamingResponse(slowly(), media_type=media, headers=headers)

    async def health(self, request: Request) -> Response:
        self.recorded.health += 1
        b = self.behaviour
        return JSONResponse({"status": "healthy" if b.model_loaded else "loading", "model_loaded": b.model_loaded},
                            status_code=b.health_status)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/audio/speech", self.speech, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
        ])

    def start(self) -> FakeChatTTSServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
