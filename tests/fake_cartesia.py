"""A loopback fake of Cartesia's TTS API, speaking the wire protocol the official SDK uses.

Endpoints: ``POST /tts/bytes`` (streamed raw audio) and ``GET /tts/websocket``
(contexts: ``continue``, ``flush`` → ``flush_done``, ``continue: false`` →
``done``, ``{"cancel": true}``). Runs under real uvicorn in a thread on a free
port. Faults are switched on through :class:`Behaviour`; every request is
recorded for assertions.

The audio it returns spells the transcript (``<transcript>`` repeated as mu-law
bytes) so tests can check which sentence was spoken, in full.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.loopback_server import ThreadedServer

API_KEY = "sk_car_test"
CHUNK = 400  # bytes per chunk (50 ms of 8 kHz mu-law)


def audio_for(transcript: str, size: int = 1600) -> bytes:
    """The fake's audio for a transcript: 1600 bytes = 200 ms."""
    label = f"<{transcript.strip()}>".encode()
    return (label * (size // len(label) + 1))[:size]


@dataclass
class Behaviour:
    http_status: int | None = None  # /tts/bytes answers this error status
    ws_reject_status: int | None = None  # refuse the WebSocket upgrade with this status
    first_chunk_delay: float = 0.0  # seconds before the first chunk (HTTP and WS)
    chunk_delay: float = 0.005
    disconnect_after_chunks: int | None = None  # drop the connection after N chunks (HTTP and WS)
    ws_error: dict[str, Any] | None = None  # answer generation requests with this error message
    audio_bytes: int = 1600


@dataclass
class Recorded:
    http: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    ws_headers: list[dict[str, str]] = field(default_factory=list)
    ws_messages: list[dict[str, Any]] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    cancelled_mid_generation: list[str] = field(default_factory=list)
    connections: int = 0


class FakeCartesia:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.recorded = Recorded()
        self._server = ThreadedServer(self.app(), "fake Cartesia", ws="websockets-sansio")

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        return self._server.url

    def reset(self) -> None:
        # In place: open connections hold a reference to the behaviour object.
        self.behaviour.__dict__.update(Behaviour().__dict__)
        self.recorded = Recorded()

    # ---- HTTP --------------------------------------------------------------
    async def tts_bytes(self, request: Request) -> Response:
        body = await request.json()
        self.recorded.http.append((dict(request.headers), body))
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return JSONResponse({"title": "Unauthorized", "message": "Invalid API key"}, 401)
        b = self.behaviour
        if b.http_status is not None:
            return JSONResponse({"title": "Error", "message": f"injected {b.http_status}"}, b.http_status)
        fmt = body.get("output_format", {})
        if fmt != {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000}:
            return JSONResponse({"title": "Bad Request", "message": f"unexpected output_format {fmt}"}, 400)

        async def stream() -> AsyncIterator[bytes]:
            await asyncio.sleep(b.first_chunk_delay)
            audio = audio_for(body["transcript"], b.audio_bytes)
            for n, i in enumerate(range(0, len(audio), CHUNK)):
                if b.disconnect_after_chunks is not None and n == b.disconnect_after_chunks:
                    raise ConnectionResetError("injected disconnect")  # uvicorn aborts the response
                yield audio[i : i + CHUNK]
                await asyncio.sleep(b.chunk_delay)

        return StreamingResponse(stream(), media_type="application/octet-stream")

    # ---- WebSocket -----------------------------------------------------------
    async def tts_websocket(self, ws: WebSocket) -> None:
        self.recorded.ws_headers.append(dict(ws.headers))
        b = self.behaviour
        if b.ws_reject_status is not None or ws.headers.get("authorization") != f"Bearer {API_KEY}":
            await ws.send_denial_response(JSONResponse({"title": "Unauthorized"}, b.ws_reject_status or 401))
            return
        await ws.accept()
        self.recorded.connections += 1
        buffers: dict[str, str] = {}
        flushes: dict[str, int] = {}
        cancelled: set[str] = set()
        tasks: set[asyncio.Task[None]] = set()
        sent = 0
        lock = asyncio.Lock()

        async def send(msg: dict[str, Any]) -> None:
            nonlocal sent
            async with lock:
                if msg["type"] == "chunk":
                    if b.disconnect_after_chunks is not None and sent >= b.disconnect_after_chunks:
                        await ws.close(1011)
                        raise WebSocketDisconnect(1011)
                    sent += 1
                await ws.send_text(json.dumps(msg))

        async def generate(ctx: str, text: str, flush_id: int | None, final: bool) -> None:
            await asyncio.sleep(b.first_chunk_delay)
            audio = audio_for(text, b.audio_bytes) if text.strip() else b""
            for i in range(0, len(audio), CHUNK):
                if ctx in cancelled:
                    self.recorded.cancelled_mid_generation.append(ctx)
                    return
                msg = {"type": "chunk", "context_id": ctx, "data": base64.b64encode(audio[i : i + CHUNK]).decode(),
                       "done": False, "status_code": 206, "step_time": 1.0}
                if flush_id is not None:
                    msg["flush_id"] = flush_id
                await send(msg)
                await asyncio.sleep(b.chunk_delay)
            if ctx in cancelled:
                return
            if flush_id is not None:
                await send({"type": "flush_done", "context_id": ctx, "done": False, "flush_done": True,
                            "flush_id": flush_id, "status_code": 206})
            if final:
                await send({"type": "done", "context_id": ctx, "done": True, "status_code": 200})

        chains: dict[str, asyncio.Task[None]] = {}

        async def after(prev: asyncio.Task[None] | None, ctx: str, text: str, flush_id: int | None,
                        final: bool) -> None:
            if prev is not None:
                await asyncio.gather(prev, return_exceptions=True)
            await generate(ctx, text, flush_id, final)

        try:
            while True:
                msg = json.loads(await ws.receive_text())
                self.recorded.ws_messages.append(msg)
                ctx = str(msg.get("context_id", ""))
                if msg.get("cancel"):
                    self.recorded.cancels.append(ctx)
                    cancelled.add(ctx)
                    continue
                if b.ws_error is not None:
                    await send({"type": "error", "context_id": ctx, "done": True, **b.ws_error})
                    continue
                buffers[ctx] = buffers.get(ctx, "") + str(msg.get("transcript", ""))
                final = msg.get("continue") is False
                if not (msg.get("flush") or final):
                    continue  # the real server waits for more text (max_buffer_delay_ms)
                flush_id = None
                if msg.get("flush"):
                    flushes[ctx] = flushes.get(ctx, 0) + 1
                    flush_id = flushes[ctx]
                text, buffers[ctx] = buffers[ctx], ""
                task = asyncio.create_task(after(chains.get(ctx), ctx, text, flush_id, final))
                chains[ctx] = task
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for t in list(tasks):
                t.cancel()

    # ---- lifecycle -----------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/tts/bytes", self.tts_bytes, methods=["POST"]),
            WebSocketRoute("/tts/websocket", self.tts_websocket),
        ])

    def start(self) -> FakeCartesia:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
