"""Cartesia through the official ``cartesia`` SDK (async): raw 8 kHz mu-law, no transcoding.

Two transports, chosen per agent (``tts.cartesia.transport``):

* ``websocket`` (default): one WebSocket per process, shared by every call;
  one Cartesia *context* per turn (``request.meta["turn_id"]``) so prosody
  carries across the turn's sentences. Each sentence is pushed with
  ``continue: true, flush: true`` and ends at its ``flush_done``. Cancelling the
  consuming task (barge-in, or losing a hedge race) sends ``{"cancel": true}``
  for the context, which is then retired; the turn's next sentence opens a new
  one. A context idle longer than ``context_idle_s`` is retired too (the server
  expires contexts ~1 s after their last audio).
* ``http``: ``POST /tts/bytes`` streamed (``with_streaming_response``).

We read the socket with our own task (the SDK's public ``recv_bytes`` /
``parse_event``) rather than ``AsyncWebSocketContext.receive()``: the SDK's
router never wakes a waiting context when the socket drops (it would hang),
and its reconnect returns the cached dead connection. Here a drop fails every
sentence in flight at once with a clear reason and the next sentence
reconnects.

The client is built with ``max_retries=0`` (no silent retries inside a
sentence's budget; the Speaker falls back instead) and a short timeout.
SDK and socket errors become :class:`~tts.base.TTSError` with a short reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cartesia
import httpx
import websockets.exceptions

from audio.formats import TWILIO_FORMAT, AudioChunk
from tts.base import SynthesisRequest, TTSError
from tts.settings import CartesiaVoice

if TYPE_CHECKING:
    from cartesia.lib._tts import AsyncTTSResourceConnection

log = logging.getLogger("voicegw.tts.cartesia")

#: Twilio-ready output: no header, no transcoding.
OUTPUT_FORMAT: dict[str, Any] = {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000}


def status_reason(status: int, detail: str = "") -> str:
    """A short, loggable reason for an HTTP-style status from Cartesia."""
    known = {
        401: "authentication failed (401): check CARTESIA_API_KEY",
        402: "payment required (402): out of credits",
        403: "forbidden (403)",
        404: "not found (404): check model_id and voice_id",
        429: "rate limited (429)",
    }
    if status in known:
        return known[status]
    if status >= 500:
        return f"server error ({status})"
    return f"request rejected ({status}){': ' + detail[:120] if detail else ''}"


def ws_url_for(base_url: str | None) -> str | None:
    """``http://h:p`` → ``ws://h:p``, ``https://…`` → ``wss://…`` (the SDK would otherwise use wss on any base)."""
    if not base_url:
        return None
    url = httpx.URL(base_url)
    return str(url.copy_with(scheme="wss" if url.scheme == "https" else "ws"))


class _Closed:
    """Put on a context's queue when the socket dropped."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass(eq=False)
class _Context:
    id: str
    turn: str
    key: tuple[Any, ...]  # every field that must stay identical within a context
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    flushes: int = 0
    last_used: float = field(default_factory=time.monotonic)


class CartesiaEngine:
    name = "cartesia"

    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str | None = None,
        websocket_base_url: str | None = None,
        timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
        context_idle_s: float = 0.8,
        max_contexts: int = 512,
    ) -> None:
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.context_idle_s = context_idle_s
        self.max_contexts = max_contexts
        self.client = cartesia.AsyncCartesia(
            api_key=api_key or "unset",
            base_url=base_url,
            websocket_base_url=websocket_base_url or ws_url_for(base_url),
            max_retries=0,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        )
        self._conn: AsyncTTSResourceConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._by_turn: OrderedDict[str, _Context] = OrderedDict()
        self._by_id: dict[str, _Context] = {}
        self._closed = False

    @classmethod
    def from_settings(cls, api_key: str | None, base_url: str | None) -> CartesiaEngine:
        return cls(api_key, base_url=base_url)

    @property
    def ready(self) -> bool:
        """Configured (an API key is set) and not closed. The socket itself connects lazily."""
        return bool(self.api_key) and not self._closed

    async def start(self) -> None:
        """Open the shared WebSocket ahead of the first call (failures are logged, retried lazily)."""
        if not self.ready:
            return
        try:
            await self._connection()
        except TTSError as exc:
            log.warning("cartesia: could not pre-connect: %s", exc.reason)

    # ---- synthesis -----------------------------------------------------------
    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        settings = request.settings_as(CartesiaVoice)
        if settings.language is None:  # the agent's language, unless the agent set one for Cartesia only
            settings = settings.model_copy(update={"language": request.language.split("-")[0].lower()})
        if not self.ready:
            raise TTSError(self.name, "not configured (CARTESIA_API_KEY is not set)")
        inner = self._http(request, settings) if settings.transport == "http" else self._websocket(request, settings)
        async with contextlib.aclosing(inner) as chunks:  # closing us closes it now (context cancel), not at GC
            async for chunk in chunks:
                yield chunk

    def _generation_config(self, settings: CartesiaVoice) -> dict[str, Any]:
        return {"speed": settings.speed} if settings.speed != 1.0 else {}

    async def _http(self, request: SynthesisRequest, settings: CartesiaVoice) -> AsyncGenerator[AudioChunk, None]:
        kwargs: dict[str, Any] = {}
        if gen := self._generation_config(settings):
            kwargs["generation_config"] = gen
        got = False
        try:
            async with self.client.tts.with_streaming_response.generate(
                model_id=settings.model_id, output_format=OUTPUT_FORMAT,  # type: ignore[arg-type]
                transcript=request.text, voice={"id": settings.voice_id},
                language=settings.language,
                **kwargs,
            ) as response:
                async for data in response.iter_bytes():
                    if data:
                        got = True
                        yield AudioChunk(bytes(data), TWILIO_FORMAT)
        except cartesia.APIStatusError as exc:
            raise TTSError(self.name, status_reason(exc.status_code, str(exc.body or ""))) from exc
        except (cartesia.APITimeoutError, httpx.TimeoutException) as exc:  # the SDK wraps only the request
            raise TTSError(self.name, f"timeout ({self.timeout_s:.1f} s)") from exc
        except cartesia.APIConnectionError as exc:
            raise TTSError(self.name, f"connection error: {exc.__cause__ or exc}") from exc
        except httpx.HTTPError as exc:
            where = "mid-sentence" if got else "before audio"
            raise TTSError(self.name, f"connection lost {where}: {type(exc).__name__}") from exc

    async def _websocket(
        self, request: SynthesisRequest, settings: CartesiaVoice
    ) -> AsyncGenerator[AudioChunk, None]:
        conn = await self._connection()
        turn = request.meta.get("turn_id") or request.request_id or uuid.uuid4().hex
        ctx = self._context(turn, settings)
        async with ctx.lock:
            ctx.flushes += 1
            finished = False
            message: dict[str, Any] = {
                "context_id": ctx.id, "model_id": settings.model_id, "transcript": request.text.strip() + " ",
                "voice": {"mode": "id", "id": settings.voice_id}, "output_format": OUTPUT_FORMAT,
                "language": settings.language, "continue": True, "flush": True,
            }
            if gen := self._generation_config(settings):
                message["generation_config"] = gen
            try:
                try:
                    await conn.send(message)  # type: ignore[arg-type]
                except (websockets.exceptions.WebSocketException, OSError) as exc:
                    self._drop(conn, f"send failed: {exc}")
                    raise TTSError(self.name, f"connection lost before audio: {exc}") from exc
                got = False
                while True:
                    try:  # asyncio.timeout: a barge-in's cancel must not be lost to an arriving chunk
                        async with asyncio.timeout(self.timeout_s):
                            event = await ctx.queue.get()
                    except TimeoutError as exc:
                        raise TTSError(self.name, f"no audio for {self.timeout_s:.1f} s") from exc
                    if isinstance(event, _Closed):
                        finished = True  # the context died with the socket
                        raise TTSError(self.name, f"connection lost {'mid-sentence' if got else 'before audio'}: "
                                                  f"{event.reason}")
                    kind = getattr(event, "type", None)
                    if kind == "chunk":
                        audio = event.audio
                        if audio:
                            got = True
                            yield AudioChunk(audio, TWILIO_FORMAT)
                    elif kind == "flush_done":
                        finished = True
                        return
                    elif kind == "done":
                        finished = True
                        self._retire(ctx)
                        return
                    elif kind == "error":
                        finished = True
                        self._retire(ctx)
                        status = int(getattr(event, "status_code", 0) or 0)
                        detail = str(getattr(event, "message", None) or getattr(event, "title", None) or "")
                        code = getattr(event, "error_code", None)
                        raise TTSError(self.name, status_reason(status, detail) if status else
                                       f"error{f' {code}' if code else ''}: {detail}")
                    # timestamps / phoneme_timestamps: not requested, ignored
            finally:
                ctx.last_used = time.monotonic()
                if not finished:  # cancelled (barge-in, lost hedge) or failed: stop generation server-side
                    await self._cancel(conn, ctx)

    # ---- contexts ------------------------------------------------------------
    def _context(self, turn: str, settings: CartesiaVoice) -> _Context:
        key = (settings.model_id, settings.voice_id, settings.language, settings.speed)
        now = time.monotonic()
        ctx = self._by_turn.get(turn)
        if ctx is not None and (ctx.key != key or (now - ctx.last_used > self.context_idle_s
                                                   and not ctx.lock.locked())):
            self._retire(ctx)
            ctx = None
        if ctx is None:
            ctx = _Context(id=f"{turn[:48]}-{uuid.uuid4().hex[:8]}", turn=turn, key=key)
            self._by_turn[turn] = ctx
            self._by_id[ctx.id] = ctx
            while len(self._by_turn) > self.max_contexts:
                oldest = next(iter(self._by_turn.values()))
                self._retire(oldest)
        self._by_turn.move_to_end(turn)
        return ctx

    def _retire(self, ctx: _Context) -> None:
        if self._by_turn.get(ctx.turn) is ctx:
            del self._by_turn[ctx.turn]
        self._by_id.pop(ctx.id, None)

    async def _cancel(self, conn: AsyncTTSResourceConnection, ctx: _Context) -> None:
        self._retire(ctx)
        if conn is not self._conn:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.send({"cancel": True, "context_id": ctx.id}), 1.0)

    # ---- the shared socket -----------------------------------------------------
    async def _connection(self) -> AsyncTTSResourceConnection:
        async with self._connect_lock:
            if self._conn is not None:
                return self._conn
            manager = self.client.tts.websocket_connect()
            try:
                conn = await asyncio.wait_for(manager.enter(), self.connect_timeout_s)
            except websockets.exceptions.InvalidStatus as exc:
                raise TTSError(self.name, f"websocket refused: {status_reason(exc.response.status_code)}") from exc
            except TimeoutError as exc:
                raise TTSError(self.name, f"websocket connect timeout ({self.connect_timeout_s:.1f} s)") from exc
            except (OSError, websockets.exceptions.WebSocketException) as exc:
                raise TTSError(self.name, f"websocket connect failed: {exc}") from exc
            self._conn = conn
            self._reader = asyncio.create_task(self._read(conn), name="cartesia-ws-reader")
            log.info("cartesia: websocket connected")
            return conn

    async def _read(self, conn: AsyncTTSResourceConnection) -> None:
        reason = "closed"
        try:
            while True:
                raw = await conn.recv_bytes()
                event = conn.parse_event(raw)
                ctx = self._by_id.get(str(getattr(event, "context_id", "") or ""))
                if ctx is not None:
                    ctx.queue.put_nowait(event)
        except websockets.exceptions.ConnectionClosed as exc:
            reason = f"websocket closed ({exc.rcvd.code if exc.rcvd else 1006})"
        except asyncio.CancelledError:
            reason = "engine closed"
            raise
        except Exception as exc:  # a malformed message: drop the socket rather than guess
            reason = f"bad message: {exc!r}"
        finally:
            self._drop(conn, reason)

    def _drop(self, conn: AsyncTTSResourceConnection, reason: str) -> None:
        """Forget a dead socket; every sentence in flight on it fails now."""
        if self._conn is not conn:
            return
        self._conn = None
        log.warning("cartesia: %s; reconnecting on the next sentence", reason)
        for ctx in list(self._by_id.values()):
            ctx.queue.put_nowait(_Closed(reason))
        self._by_id.clear()
        self._by_turn.clear()

    async def aclose(self) -> None:
        self._closed = True
        conn, reader = self._conn, self._reader
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
        await self.client.close()
